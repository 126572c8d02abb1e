"""What the API-input tests share: the users and the service of the tokens, and the error body of
a refusal."""

from typing import Any

from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET

ALICE = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'alice')}"}
BOB = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'bob')}"}
SERVICE = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'backend', scope='service')}"}


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    assert set(body) == {"error"}
    assert {"code", "message", "details"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]
