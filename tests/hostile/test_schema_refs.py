"""Issue #22 item 11: a task's JSON Schema with a `$ref` to a URL must never be fetched while scoring (a request
from the scorer, and a server that would decide schema_valid). Only references inside the schema resolve."""
from __future__ import annotations

import json

import pytest

from harness.metrics import schema_valid, score_sample
from hostile_kit import RecordingServer


@pytest.fixture
def server():
    srv = RecordingServer()
    yield srv
    srv.stop()


def test_a_remote_ref_is_never_fetched_and_decides_nothing(server):
    schema = {"type": "object", "properties": {"product": {"$ref": f"{server.url}/product.json"}}}
    values, details = score_sample('{"product": "alpha"}', "", [{"name": "schema_valid"}], schema=schema)
    assert server.requests == []  # nothing sent
    assert values == {"schema_valid": None}  # unscored, not passed or failed by whatever the URL says
    assert "never fetched" in details["schema_valid"]


def test_local_refs_still_resolve(server):
    schema = {"type": "object", "$defs": {"p": {"enum": ["alpha", "beta"]}},
              "properties": {"product": {"$ref": "#/$defs/p"}}, "required": ["product"]}
    assert schema_valid(json.dumps({"product": "alpha"}), schema=schema) == 1.0
    assert schema_valid(json.dumps({"product": "zeta"}), schema=schema) == 0.0
    assert server.requests == []
