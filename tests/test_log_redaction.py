"""openai_backend.hide_in_logs: credentials are masked in the records of the loggers that can see them (ours,
the openai SDK's, httpx's), by a logging.Filter on those loggers, not by a process-wide record factory."""
from __future__ import annotations

import logging

from harness.backends.base import ServeSpec
from harness.backends.openai_backend import SECRET_LOGGERS, OpenAIBackend, hide_in_logs

SECRET = "sk-" + "Zq9Xw8Vu7Ts6Rp5On4Ml3Kj2"


def test_a_hidden_value_is_masked_in_every_client_logger(caplog):
    hide_in_logs(SECRET)
    caplog.set_level(logging.DEBUG)
    for name in SECRET_LOGGERS:
        logging.getLogger(name).debug("headers: Authorization: Bearer %s", SECRET)
    assert SECRET not in caplog.text
    assert caplog.text.count("Bearer ***") == len(SECRET_LOGGERS)


def test_a_backends_literal_key_is_masked_in_its_log_lines(caplog):
    key = "literal-" + "key-4f9a8b7c6d5e"
    OpenAIBackend(ServeSpec({"name": "m"}), base_url="http://127.0.0.1:9/v1", api_key=key)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("openai._base_client").debug("Request options: {'headers': {'api-key': '%s'}}", key)
    assert key not in caplog.text and "'api-key': '***'" in caplog.text


def test_the_process_record_factory_and_other_loggers_are_left_alone(caplog):
    before = logging.getLogRecordFactory()  # LogRecord, or another library's (ray installs one when imported)
    hide_in_logs("not-a-secret-elsewhere")
    OpenAIBackend(ServeSpec({"name": "m"}), base_url="http://127.0.0.1:9/v1", api_key="another-key-0123456789")
    assert logging.getLogRecordFactory() is before
    caplog.set_level(logging.INFO)
    logging.getLogger("someone.else").info("value not-a-secret-elsewhere")
    assert "value not-a-secret-elsewhere" in caplog.text


def test_a_client_package_logger_under_another_name_is_filtered_too(caplog):
    logging.getLogger("httpx9._client")  # a renamed HTTP stack (like the httpx2 the openai SDK may vendor)
    hide_in_logs(SECRET)
    caplog.set_level(logging.INFO)
    logging.getLogger("httpx9._client").info("HTTP Request: POST http://u:%s@127.0.0.1/v1", SECRET)
    assert SECRET not in caplog.text and "u:***@" in caplog.text
