"""schemathesis against /openapi.json on a running API, once with each scope of token (user,
service, admin), with valid inputs and with invalid ones: no 5xx, every answer fits the
documented schema (status codes, content types, bodies), invalid input is refused with a 4xx.

FUZZ_EXAMPLES=300 make test-e2e runs more cases per operation (25 by default).
"""

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks, not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import positive_data_acceptance

from taskfleet.core.settings import Settings
from taskfleet.security.auth import Scope, issue_token
from tests.conftest import JWT_SECRET, free_port, process_env

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))

# Operations whose valid inputs a schema cannot tell from invalid ones: for these schemathesis'
# "schema-compliant data is accepted" check is off; every other check (no 5xx, documented
# statuses, bodies and content types) still runs on them.
NOT_POSITIVE: dict[str, str] = {
    "GET /api/tasks": "the cursor is opaque: only a cursor we handed out decodes (400 otherwise)",
    "GET /api/tasks/user/{user_id}": "the same opaque cursor",
    "POST /api/documents": "the body must be a real PDF or text file; a schema cannot say so",
    "PUT /api/cameras/{camera_id}": "cross-field rules (an interval needs a source URL)",
    "POST /api/webhooks": "the URL's host must resolve to public addresses; a schema cannot say so",
    # The same for a submission's `callback_url` (422 callback_url_refused).
    "POST /api/chat/stream": "a callback_url's host must resolve to public addresses",
    "POST /api/batches": "a callback_url's host must resolve to public addresses",
    "POST /api/cameras/{camera_id}/frames": "a callback_url's host must resolve to public"
    " addresses",
    "GET /api/webhooks/{webhook_id}/deliveries": "the same opaque cursor",
    "POST /api/schedules": "a cron expression and a time zone must exist, and exactly one of"
    " cron and interval_s be given (422 invalid_schedule)",
    "PATCH /api/schedules/{schedule_id}": "the same rules as POST /api/schedules",
    "PUT /api/admin/rate-limits/{key}": "exactly one of per_s and per_minute must be given",
    "GET /api/admin/tasks": "the same opaque cursor",
}


def _wait_ready(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"API at {url} not ready after {timeout_s}s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def api_url(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One API and one chat worker for the three scopes (module-wide: each start costs)."""
    port, logs = free_port(), tmp_path_factory.mktemp("fuzz")
    procs = []
    for args in (["api", "--port", str(port)], ["worker", "chat"]):
        log = (logs / f"{args[0]}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "taskfleet_cli", *args],
                env=process_env(settings),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url)
        yield url
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
        # The admin's fuzzing sets fleet-wide rate limits (any key, any rate): none may throttle
        # the tests after this module.
        asyncio.run(_execute(settings, "DELETE FROM rate_limits"))


async def _execute(settings: Settings, statement: str) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.mark.parametrize("scope", ["user", "service", "admin"])
def test_api_answers_within_its_schema_and_never_5xx(api_url: str, scope: Scope) -> None:
    token = issue_token(JWT_SECRET, f"fuzzer-{scope}", scope=scope, ttl_s=3600)
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    failures: dict[str, str] = {}
    tested = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the schema is not one schemathesis can read
        operation = result.ok()
        tested += 1
        for mode in _modes(operation):
            if (failure := _fuzz(operation, token, mode)) is not None:
                failures[f"{operation.label} ({mode.value})"] = failure
    assert tested >= 10
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


def _modes(operation: Any) -> list[GenerationMode]:
    """Valid inputs, and invalid ones where the operation takes any (without a parameter or
    a body there is nothing to break: the token is fixed)."""
    names = {p.name for p in operation.iter_parameters()} - {"Authorization"}
    takes_input = bool(names) or bool(operation.body)
    return list(GenerationMode) if takes_input else [GenerationMode.POSITIVE]


def _checks(operation: Any) -> list[Any]:
    """Every built-in check, named here so that none (above all not_a_server_error) is
    silently off; positive_data_acceptance only where a schema can say what is valid."""
    load_all_checks()
    checks = [c for c in CHECKS.get_all() if c is not positive_data_acceptance]
    if operation.label not in NOT_POSITIVE:
        checks.append(_accepted_unless_the_delay_is_refused)
    assert not_a_server_error in checks
    return checks


def _accepted_unless_the_delay_is_refused(ctx: Any, response: Any, case: Any) -> bool | None:
    """positive_data_acceptance, but for a 400 `invalid_delay`: `run_at` and `delay_s`
    exclude each other and must fall within MAX_DELAY_S of the server's clock, which no schema
    can say (docs/scheduling.md). Every other refusal of schema-valid data still fails."""
    if response.status_code == 400 and '"invalid_delay"' in response.text:
        return None
    return positive_data_acceptance(ctx, response, case)


def _fuzz(operation: Any, token: str, mode: GenerationMode) -> str | None:
    """EXAMPLES generated cases of one operation; the failure text, if any.

    Driven by hand rather than by schemathesis' pytest plugin, which this pytest rejects.
    """
    checks = _checks(operation)

    # The token as a fixed header: negative cases then never "drop" it, which the call
    # would put back, making a valid request that schemathesis expects to be refused.
    auth = {"Authorization": f"Bearer {token}"}

    @given(case=operation.as_strategy(generation_mode=mode, headers=auth))
    @hypothesis_settings(
        max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case: schemathesis.Case[Any]) -> None:
        # The token also as the call's own header, which makes it explicit to the auth check:
        # it then probes without it and with a bad one (401 expected), where a route with
        # header parameters of its own (Idempotency-Key) would have taken the fixed one for
        # generated, "likely invalid" auth.
        case.call_and_validate(checks=checks, headers=auth)

    try:
        check()
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is the latter
        return str(exc)[:3000]
    return None
