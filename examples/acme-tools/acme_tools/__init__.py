"""Acme's tools for the taskfleet agent: one that reads, one that acts.

`lookup_order` answers from a table of its own; `create_ticket` opens a ticket in Acme's CRM
(an HTTP service at ACME_CRM_URL) and is declared with a side effect, so that taskfleet runs it
at most once per call of the model, whatever worker dies when.
"""

import os
from typing import Any

import aiohttp
from pydantic import Field

from taskfleet.handler import CustomTool, PermanentError, ToolArgs, ToolCall

ORDERS = {"A-1001": "shipped", "A-1002": "packing", "A-1003": "delivered"}


class OrderArgs(ToolArgs):
    order_id: str = Field(pattern=r"^A-\d{4}$", description="An Acme order number, e.g. A-1001.")


class TicketArgs(ToolArgs):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field("", max_length=5000)


async def _lookup_order(args: OrderArgs, call: ToolCall) -> dict[str, Any]:
    status = ORDERS.get(args.order_id)
    if status is None:
        raise PermanentError(f"no order {args.order_id}", code="order_unknown")
    return {"order_id": args.order_id, "status": status}


async def _create_ticket(args: TicketArgs, call: ToolCall) -> dict[str, Any]:
    # The call's id travels as an idempotency key: a CRM that honours it never opens two
    # tickets, even for a call that taskfleet could not tell had run.
    headers = {"Idempotency-Key": call.call_id, "X-Acme-User": call.user_id}
    body = {"title": args.title, "body": args.body}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(os.environ["ACME_CRM_URL"], json=body, headers=headers) as resp,
    ):
        if resp.status >= 400:
            raise PermanentError(f"the CRM answered {resp.status}", code="crm_refused")
        answer = await resp.json()
    return {"ticket": answer["id"]}


lookup_order = CustomTool(
    name="lookup_order",
    description="The status of an Acme order by its number.",
    args=OrderArgs,
    fn=_lookup_order,
    timeout_s=5,
)

create_ticket = CustomTool(
    name="create_ticket",
    description="Open a support ticket in Acme's CRM. It is opened at most once per call.",
    args=TicketArgs,
    fn=_create_ticket,
    timeout_s=15,
    rate_per_s=1,
    rate_burst=5,
    side_effect=True,
)
