"""taskfleet.core.errors: the typed hierarchy the runner maps to actions."""

from taskfleet.core.errors import (
    InvalidPayload,
    PermanentError,
    RetryableError,
    TaskError,
    TaskTimeout,
    unexpected,
)


def test_unexpected_is_retryable_and_keeps_the_cause() -> None:
    cause = ZeroDivisionError("division by zero")
    err = unexpected(cause)
    assert isinstance(err, RetryableError)
    assert err.retryable is True
    assert err.code == "unexpected"
    assert err.__cause__ is cause
    assert str(err) == "ZeroDivisionError: division by zero"


def test_as_dict_shape() -> None:
    assert PermanentError("unknown tool", code="unknown_tool").as_dict() == {
        "code": "unknown_tool",
        "message": "unknown tool",
        "retryable": False,
    }
    assert unexpected(ValueError("x")).as_dict() == {
        "code": "unexpected",
        "message": "ValueError: x",
        "retryable": True,
    }


def test_class_defaults() -> None:
    assert (InvalidPayload("m").code, InvalidPayload("m").retryable) == ("invalid_payload", False)
    assert (TaskTimeout("m").code, TaskTimeout("m").retryable) == ("deadline_exceeded", True)
    assert isinstance(TaskTimeout("m"), RetryableError)
    assert TaskError("m").retryable is True


def test_code_override_is_per_instance() -> None:
    assert RetryableError("m", code="rate_limited").code == "rate_limited"
    assert RetryableError("m").code == "retryable"
