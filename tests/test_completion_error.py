"""harness.backends.errors.completion_error: the one reading of a failed completion (evaluation and the judge)."""
from __future__ import annotations

from harness.backends.base import Completion
from harness.backends.errors import completion_error
from harness.config import REDACTED

KEY = "sk-" + "a1B2c3D4e5F6g7H8i9J0k1L2"


def test_an_answer_is_no_error():
    assert completion_error(Completion(text="42")) is None


def test_the_backends_message_is_the_error():
    assert completion_error(Completion.failure("HTTP 503 after 3 retries")) == "HTTP 503 after 3 retries"


def test_an_error_finish_without_a_message_still_is_an_error():
    assert completion_error(Completion(text="", finish_reason="error")) == "backend error (no message)"


def test_a_secret_in_the_message_is_masked():
    err = completion_error(Completion.failure(f"401 for Authorization: Bearer {KEY} at https://u:pw@host/v1"))
    assert KEY not in err and "pw@" not in err and REDACTED in err


def test_the_message_is_cut_to_max_chars():
    assert completion_error(Completion.failure("x" * 1000), 300) == "x" * 300
