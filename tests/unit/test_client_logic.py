"""The client's own logic, below its HTTP: an error body becomes the right exception (429/503
retryable, with the server's Retry-After), the wait between two attempts is that Retry-After,
and the resume bookkeeping of `events()` yields each event once across reconnects."""

from uuid import uuid4

import aiohttp
from tenacity import RetryCallState, wait_fixed

from taskfleet.client.errors import RetryableError, TaskfleetError, error_of, retry_after_or
from taskfleet.client.events import Resume
from taskfleet.client.params import resend


def test_an_error_body_becomes_its_exception() -> None:
    body = b'{"error": {"code": "rate_limited", "message": "slow down", "details": null}}'
    limited = error_of(429, body, "7")
    assert isinstance(limited, RetryableError)
    assert (limited.code, limited.retry_after) == ("rate_limited", 7.0)
    conflict = error_of(409, b'{"error": {"code": "conflict", "message": "over"}}', None)
    assert type(conflict) is TaskfleetError
    assert conflict.code == "conflict"
    proxy = error_of(503, b"<html>bad gateway</html>", "soon")
    assert isinstance(proxy, RetryableError)
    assert (proxy.code, proxy.retry_after) == ("http_503", None)


def _state_after(error: BaseException) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.set_exception((type(error), error, None))
    return state


def test_the_wait_is_the_servers_retry_after_else_the_backoff() -> None:
    wait = retry_after_or(wait_fixed(0.5))
    assert wait(_state_after(RetryableError(503, "busy", "", None, 2.0))) == 2.0
    assert wait(_state_after(RetryableError(429, "rate_limited", "", None, 3600.0))) == 60.0
    assert wait(_state_after(RetryableError(503, "busy", "", None, None))) == 0.5
    assert wait(_state_after(ConnectionResetError())) == 0.5


def _updated(task_id: str, seq: int, status: str = "processing") -> dict[str, object]:
    return {"type": "task.updated", "task_id": task_id, "seq": seq,
            "task": {"id": task_id, "status": status, "seq": seq}}  # fmt: skip


def test_resume_yields_each_event_once_and_resumes_unfinished_tasks() -> None:
    a, b = str(uuid4()), str(uuid4())
    resume = Resume()
    first = resume.accept({"type": "snapshot", "tasks": [{"id": a, "seq": 10, "status": "queued"}]})
    assert [(str(e.task_id), e.seq) for e in first] == [(a, 10)]
    assert resume.accept(_updated(a, 20)) != []
    delta = {"type": "message.delta", "task_id": a, "seq": 21, "offset": 0, "delta": "hi"}
    assert resume.accept(delta) != []
    assert resume.since() == [f"{a}:21"]
    # After a reconnect: the snapshot again (a is resumed by since, so skipped there), the
    # replay of what was sent already, then what is new.
    tasks = [{"id": a, "seq": 20, "status": "processing"}, {"id": b, "seq": 5, "status": "queued"}]
    again = resume.accept({"type": "snapshot", "tasks": tasks})
    assert [str(e.task_id) for e in again] == [b]
    assert resume.accept(delta) == []
    assert resume.accept(_updated(a, 30, "completed")) != []
    snapshot = {"type": "message.snapshot", "task_id": a, "seq": 30, "content": "hi there"}
    assert [e.type for e in resume.accept(snapshot)] == ["message.snapshot"]
    assert resume.accept(snapshot) == []
    assert resume.since() == [f"{b}:5"]  # an ended task is not resumed


def test_resume_starts_from_the_callers_since() -> None:
    a = str(uuid4())
    resume = Resume({a: 40})
    assert resume.since() == [f"{a}:40"]
    assert resume.accept(_updated(a, 40)) == []
    assert resume.accept({"type": "message.snapshot", "task_id": a, "seq": 40}) == []
    assert resume.accept(_updated(a, 41)) != []


def test_what_is_sent_again() -> None:
    lost = RetryableError(503, "outcome_unknown", "", None, 2.0)
    busy = RetryableError(503, "busy", "", None, 2.0)
    assert resend(busy, safe=False)
    assert not resend(lost, safe=False)  # it may have been stored: only a keyed one again
    assert resend(lost, safe=True)
    assert not resend(aiohttp.ServerDisconnectedError(), safe=False)
    assert resend(aiohttp.ServerDisconnectedError(), safe=True)
    assert not resend(TaskfleetError(409, "conflict", ""), safe=True)
