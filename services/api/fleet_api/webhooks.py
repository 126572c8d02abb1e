"""Webhook routes (docs/integrating.md#webhooks): a user's endpoints, their delivery log, a
delivery sent again, a secret rotated. Nothing here sends: the deliveries are written by the
database with their events, and sent by the deliverer (taskfleet.data.webhook_sender), which
this module also starts and stops with the app."""

from collections.abc import AsyncIterator
from uuid import UUID

from aiohttp import web

from fleet_api.auth import acting_for, principal
from fleet_api.errors import ApiError, json_response, not_found
from fleet_api.openapi import UUID_PATTERN, Operation, PathParam
from fleet_api.routes import KERNEL, OPENAPI, SETTINGS, parse_body, parse_query, user_db
from fleet_api.settings import ApiSettings
from fleet_api.webhook_models import (
    Delivery,
    DeliveryList,
    DeliveryQuery,
    RotateQuery,
    Webhook,
    WebhookCreated,
    WebhookList,
    WebhookListQuery,
    WebhookRequest,
    WebhookSecret,
)
from taskfleet.data import webhooks
from taskfleet.data.operations import BadCursor
from taskfleet.data.webhook_sender import DeliveryPolicy, WebhookSender, policy_of
from taskfleet.security.targets import AllowedHosts, TargetRefused, check_target
from taskfleet.store.tenancy import Db

PATHS = {
    "webhook_id": PathParam({"type": "string", "format": "uuid"}, UUID_PATTERN, "webhook"),
    "delivery_id": PathParam({"type": "string", "format": "uuid"}, UUID_PATTERN, "delivery"),
}


def delivery_policy(settings: ApiSettings) -> DeliveryPolicy:
    """The deliverer's policy from the API's WEBHOOK_* settings."""
    return policy_of(
        allowed_hosts=settings.webhook_allowed_hosts,
        deadline_s=settings.webhook_deadline_s,
        backoff_s=settings.webhook_backoff_s,
        backoff_max_s=settings.webhook_backoff_max_s,
        timeout_s=settings.webhook_timeout_s,
        poll_s=settings.webhook_poll_s,
    )


async def create_webhook(request: web.Request) -> web.Response:
    """A new endpoint: 201 with its secret, shown this once; 422 for a URL the fleet will not
    send to (a private or loopback address not in WEBHOOK_ALLOWED_HOSTS)."""
    body = await parse_body(request, WebhookRequest)
    user_id = acting_for(request, body.user_id, reading=False, what="webhook")
    allowed = AllowedHosts.parse(request.app[SETTINGS].webhook_allowed_hosts)
    try:
        await check_target(body.url, allowed)
    except TargetRefused as exc:
        raise ApiError(422, "webhook_url_refused", str(exc)) from None
    try:
        created = await webhooks.create_endpoint(
            user_db(request, user_id), request.app[KERNEL].keyring, user_id=user_id,
            url=body.url, events=list(dict.fromkeys(body.events)),
        )  # fmt: skip
    except webhooks.TooManyEndpoints as exc:
        raise ApiError(409, "too_many_webhooks", str(exc)) from None
    answer = WebhookCreated(**created.endpoint, secret=created.secret)
    headers = {"Location": f"/api/webhooks/{answer.id}", "Cache-Control": "no-store"}
    return json_response(answer.model_dump(mode="json"), status=201, headers=headers)


async def list_webhooks(request: web.Request) -> web.Response:
    """The caller's endpoints (or `?user_id=`'s, for a service token), newest first."""
    query = parse_query(request, WebhookListQuery)
    user_id = acting_for(request, query.user_id, reading=True, what="user")
    rows = await webhooks.list_endpoints(user_db(request, user_id), user_id)
    answer = WebhookList(webhooks=[Webhook.model_validate(r) for r in rows])
    return json_response(answer.model_dump(mode="json"))


async def _endpoint_db(request: web.Request) -> tuple[Db, UUID]:
    """The statements that may see the endpoint in the path: its owner's; 404 otherwise."""
    endpoint_id = UUID(request.match_info["webhook_id"])  # checked by its PathParam
    who = principal(request)
    owner: str | None = who.user_id
    if who.scope != "user":
        owner = await webhooks.endpoint_owner(request.app[KERNEL].pool, endpoint_id)
    if owner is None or not who.may_act_for(owner):
        raise not_found("webhook not found")
    return user_db(request, owner), endpoint_id


async def get_webhook(request: web.Request) -> web.Response:
    """One endpoint (never its secret)."""
    db, endpoint_id = await _endpoint_db(request)
    row = await webhooks.get_endpoint(db, endpoint_id)
    if row is None:
        raise not_found("webhook not found")
    return json_response(Webhook.model_validate(row).model_dump(mode="json"))


async def delete_webhook(request: web.Request) -> web.Response:
    """Delete the endpoint and its delivery log: 204."""
    db, endpoint_id = await _endpoint_db(request)
    if not await webhooks.delete_endpoint(db, endpoint_id):
        raise not_found("webhook not found")
    return web.Response(status=204)


async def rotate_webhook_secret(request: web.Request) -> web.Response:
    """A new secret, shown this once, signing every attempt from now on; the one it replaces
    signs beside it for `previous_for_s` (a day), so the receiver can switch without a gap."""
    db, endpoint_id = await _endpoint_db(request)
    query = parse_query(request, RotateQuery)
    rotated = await webhooks.rotate_secret(
        db, request.app[KERNEL].keyring, endpoint_id, previous_for_s=query.previous_for_s
    )
    if rotated is None:
        raise not_found("webhook not found")
    answer = WebhookSecret(id=endpoint_id, secret=rotated[0], previous_valid_until=rotated[1])
    return json_response(answer.model_dump(mode="json"), headers={"Cache-Control": "no-store"})


async def list_deliveries(request: web.Request) -> web.Response:
    """The endpoint's delivery log, newest first: each event, its status and last attempt."""
    db, endpoint_id = await _endpoint_db(request)
    query = parse_query(request, DeliveryQuery)
    if await webhooks.get_endpoint(db, endpoint_id) is None:
        raise not_found("webhook not found")
    try:
        rows, cursor = await webhooks.list_deliveries(
            db, endpoint_id, limit=query.limit, cursor=query.cursor, status=query.status
        )
    except BadCursor as exc:
        raise ApiError(400, "bad_cursor", str(exc)) from None
    answer = DeliveryList(deliveries=[Delivery.model_validate(r) for r in rows], next_cursor=cursor)
    return json_response(answer.model_dump(mode="json"))


async def redeliver(request: web.Request) -> web.Response:
    """Send a delivered or failed delivery again (same `webhook-id`, a fresh deadline): 202;
    409 while it is still pending."""
    db, endpoint_id = await _endpoint_db(request)
    delivery_id = UUID(request.match_info["delivery_id"])
    row = await webhooks.redeliver(db, endpoint_id, delivery_id)
    if row is None:
        if await webhooks.get_delivery(db, endpoint_id, delivery_id) is None:
            raise not_found("delivery not found")
        raise ApiError(409, "conflict", "the delivery is still pending: it is being sent")
    answer = Delivery.model_validate(row).model_dump(mode="json")
    location = {"Location": f"/api/webhooks/{endpoint_id}/deliveries"}
    return json_response(answer, status=202, headers=location)


async def run_deliverer(app: web.Application) -> AsyncIterator[None]:
    """The deliverer runs as long as the app, one per API replica (cleanup context)."""
    kernel = app[KERNEL]
    sender = WebhookSender(kernel.pool, kernel.keyring, delivery_policy(app[SETTINGS]))
    names = sender.start(kernel.supervisor, f"webhook-sender-{id(app):x}")
    yield
    for name in names:
        await kernel.supervisor.stop(name)
    await sender.aclose()


def add_webhook_routes(app: web.Application) -> None:
    """Declare the webhook routes, and run the deliverer with the app."""
    api, tags = app[OPENAPI], ("webhooks",)
    ops = [
        Operation("POST", "/api/webhooks", create_webhook, "Add a webhook endpoint",
                  WebhookCreated, 201, body=WebhookRequest,
                  errors=(400, 401, 403, 409, 413, 422, 503), tags=tags),
        Operation("GET", "/api/webhooks", list_webhooks, "Your webhook endpoints", WebhookList,
                  query=WebhookListQuery, tags=tags),
        Operation("GET", "/api/webhooks/{webhook_id}", get_webhook, "A webhook endpoint",
                  Webhook, errors=(401, 404, 503), tags=tags, path_params=PATHS),
        Operation("DELETE", "/api/webhooks/{webhook_id}", delete_webhook,
                  "Delete a webhook endpoint and its log", None, 204, errors=(401, 404, 503),
                  tags=tags, path_params=PATHS),
        Operation("POST", "/api/webhooks/{webhook_id}/rotate", rotate_webhook_secret,
                  "Rotate a webhook's signing secret", WebhookSecret, query=RotateQuery,
                  errors=(401, 404, 422, 503), tags=tags, path_params=PATHS),
        Operation("GET", "/api/webhooks/{webhook_id}/deliveries", list_deliveries,
                  "A webhook's delivery log", DeliveryList, query=DeliveryQuery, tags=tags,
                  path_params=PATHS),
        Operation("POST", "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
                  redeliver, "Send a delivery again", Delivery, 202,
                  errors=(401, 404, 409, 503), tags=tags, path_params=PATHS),
    ]  # fmt: skip
    for op in ops:
        api.add(app, op)
    app.cleanup_ctx.append(run_deliverer)
