"""What every route that creates a task shares (docs/contract.md, "Submitting"): the
`Idempotency-Key` (the same key, per user, gives the same task; with another request, 409),
the digest of the request a key is checked against, the `metadata` of the task, its
`callback_url`, and the 202 that names the task in `Location`."""

import hashlib
import json
import re
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from fleet_api.errors import ApiError, json_response
from fleet_api.settings import ApiSettings
from taskfleet.client.models import IDEMPOTENCY_KEY_MAX_CHARS, CallbackAccepted, Metadata
from taskfleet.core.constants import Priority
from taskfleet.data import webhooks
from taskfleet.security.auth import Principal
from taskfleet.security.crypto import Keyring
from taskfleet.security.targets import AllowedHosts, TargetRefused, check_target
from taskfleet.store.records import Callback
from taskfleet.store.tenancy import Db

HEADER = "Idempotency-Key"
# Printable ASCII, no space at either end (HTTP strips it): what a header carries intact.
KEY_PATTERN = rf"^[!-~](?:[ -~]{{0,{IDEMPOTENCY_KEY_MAX_CHARS - 2}}}[!-~])?$"
METADATA_PREFIX = "metadata."
_METADATA: TypeAdapter[dict[str, str]] = TypeAdapter(Metadata)


def idempotency_key(request: web.Request, in_body: str | None = None) -> str | None:
    """The request's key: the header, or the chat body's `idempotency_key` (the same one if
    both are given, else 422)."""
    header = request.headers.get(HEADER)
    if header is None:
        return in_body
    if not re.fullmatch(KEY_PATTERN, header):
        raise ApiError(
            422,
            "invalid_idempotency_key",
            f"{HEADER} must be 1 to {IDEMPOTENCY_KEY_MAX_CHARS} printable ASCII characters",
        )
    if in_body is not None and in_body != header:
        raise ApiError(
            409,
            "idempotency_conflict",
            f"the {HEADER} header and the body's idempotency_key differ",
        )
    return header


def priority_of(settings: ApiSettings, who: Principal, asked: str | None) -> Priority:
    """A submission's priority: its own `priority`, else what the token's `tier` claim maps to
    in PRIORITY_TIERS, else normal (docs/priorities.md)."""
    return Priority(asked) if asked is not None else settings.tier_priority(who.tier)


def request_digest(route: str, **request: Any) -> str:
    """What a submission asked for, as a digest: a key sent again must come with the same."""
    canonical = json.dumps({"route": route, **request}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def callback_for(
    settings: ApiSettings, keyring: Keyring, url: str | None
) -> tuple[Callback, str] | None:
    """The webhook endpoint a `callback_url` makes with its task or batch, and its secret;
    None without one; 422 for a URL the fleet will not send to, as for POST /api/webhooks
    (a private or loopback address not in WEBHOOK_ALLOWED_HOSTS): nothing is created then."""
    if url is None:
        return None
    try:
        await check_target(url, AllowedHosts.parse(settings.webhook_allowed_hosts))
    except TargetRefused as exc:
        raise ApiError(422, "callback_url_refused", str(exc)) from None
    return webhooks.new_callback(keyring, url)


def callback_digest(url: str | None) -> dict[str, str]:
    """The `callback_url` as a request digest holds it: only when given, so that the keys of
    requests made before callbacks existed still match theirs."""
    return {"callback_url": url} if url is not None else {}


def callback_answer(callback: tuple[Callback, str] | None) -> dict[str, Any]:
    """The 202's `callback_id` and `callback_secret` for a new task's callback."""
    return {"callback_id": callback[0].id, "callback_secret": callback[1]} if callback else {}


async def repeat_callback(
    db: Db, keyring: Keyring, *, task_id: UUID | None = None, batch_id: UUID | None = None
) -> dict[str, Any]:
    """The same for an idempotent repeat: the callback the first request made, if any."""
    found = await webhooks.callback_of(db, keyring, task_id=task_id, batch_id=batch_id)
    return {"callback_id": found[0], "callback_secret": found[1]} if found else {}


def check_repeat(stored: str | None, digest: str) -> None:
    """409 when the key's task was made by another request (a task made before keys were
    checked, with no digest, is taken as the same)."""
    if stored is not None and stored != digest:
        raise ApiError(
            409,
            "idempotency_conflict",
            f"this {HEADER} was used for another request: a key names one submission;"
            " use a new key for a new one",
        )


def how_to_check_after_loss(key: str | None, where: str) -> str:
    """What `outcome_unknown` tells a client: send it again with its key, or look first."""
    if key is not None:
        return f"send it again with the same {HEADER}: that gives the same task, never two"
    return f"look for it in {where} before sending it again (with an {HEADER}, it is safe)"


def metadata_of(text: str | None) -> dict[str, str]:
    """A `metadata` sent as JSON text (a form field, a query parameter); 422 if it is not
    an object of at most 16 string values of up to 200 characters."""
    if text is None:
        return {}
    try:
        return _METADATA.validate_json(text, strict=True)
    except ValidationError as exc:
        details = exc.errors(include_url=False, include_context=False, include_input=False)
        raise ApiError(
            422,
            "invalid_metadata",
            "metadata must be a JSON object of at most 16 string values (keys of up to 40"
            " letters, digits, _ or -; values of up to 200 characters)",
            details,
        ) from None


def query_metadata(request: web.Request) -> dict[str, str]:
    """The `metadata.<key>=<value>` query parameters as one metadata object (422 as above)."""
    pairs = {
        k.removeprefix(METADATA_PREFIX): v
        for k, v in request.query.items()
        if k.startswith(METADATA_PREFIX)
    }
    return metadata_of(json.dumps(pairs)) if pairs else {}


def accepted_body(answer: CallbackAccepted) -> dict[str, Any]:
    """A submission's 202 body: without `callback_id` and `callback_secret` when it has no
    callback, as it was before callbacks existed."""
    none = {"callback_id", "callback_secret"} if answer.callback_id is None else None
    return answer.model_dump(mode="json", exclude=none)


def accepted(body: dict[str, Any], task_id: UUID) -> web.Response:
    """The 202 of a submission (or of a cancel, a retry): `Location` names the task to poll."""
    return json_response(body, status=202, headers=accepted_headers(body, f"/api/tasks/{task_id}"))


def accepted_headers(body: dict[str, Any], location: str) -> dict[str, str]:
    """A 202's headers: `Location`, and no caching of an answer that holds a secret."""
    headers = {"Location": location}
    if body.get("callback_secret") is not None:
        headers["Cache-Control"] = "no-store"
    return headers
