"""The error hierarchy. Handlers raise these; the runner maps each class to one action."""

from typing import Any


class TaskfleetError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(TaskfleetError):
    """A setting is missing or invalid; the message is one line naming the variable."""


class MemoryExhausted(Exception):
    """A worker passed MEMORY_HARD_LIMIT_MB and stopped cleanly, to be started afresh."""


class StartupError(TaskfleetError):
    """A dependency cannot be reached at start; the message is one line naming it."""


class TaskError(TaskfleetError):
    """A handler failed. `code` is the stable machine-readable name stored in task.error."""

    code = "task_error"
    retryable = True

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    def as_dict(self) -> dict[str, Any]:
        """The form stored in task.error and sent in events; a NUL in the message is escaped."""
        # NUL cannot be stored (jsonb): an error quoting a payload that holds one must still be.
        message = str(self).replace("\x00", "\\u0000")
        return {"code": self.code, "message": message, "retryable": self.retryable}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={str(self)!r})"


class RetryableError(TaskError):
    """Worth another attempt: network, 429/5xx, a dependency's timeout."""

    code = "retryable"

    def __init__(self, message: str, *, code: str | None = None, delay_s: float | None = None):
        super().__init__(message, code=code)
        self.delay_s = delay_s


class TaskTimeout(RetryableError):
    code = "deadline_exceeded"


class PermanentError(TaskError):
    """Will fail again whatever we do: bad input, unknown tool."""

    code = "permanent"
    retryable = False


class InvalidPayload(PermanentError):
    code = "invalid_payload"


class UnsupportedTask(PermanentError):
    code = "unsupported_task"


class TaskCancelled(TaskfleetError):
    """The user cancelled the task; a handler may raise it too after saving partial output."""


class StaleClaim(TaskfleetError):
    """A write carried a fencing token older than the task's: another attempt owns it now."""


class PublishFailed(TaskfleetError):
    """A message was not confirmed by the broker (nack, unroutable, timeout, disconnected)."""


def unexpected(exc: BaseException) -> TaskError:
    """Wrap an exception no handler planned for: retryable until max_attempts."""
    err = RetryableError(f"{type(exc).__name__}: {exc}", code="unexpected")
    err.__cause__ = exc
    return err
