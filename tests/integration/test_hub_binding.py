"""An API replica receives the fleet's events only while a WebSocket listens to it (and for
IDLE_UNBIND_S after); unbound, its replay buffer is emptied, so it never vouches for a gap."""

from uuid import uuid4

import pytest

from fleet_api import hub as hub_module
from fleet_api.ws import HUB
from taskfleet.core import events, jsonx
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.api_client import api, new_user, token
from tests.integration.test_ws import next_json


def send(kernel: Kernel, user: str, seq: int = 1_000_000) -> str:
    task_id = str(uuid4())
    key, body = events.task_updated(
        task_id=task_id,
        task_type="chat_message",
        user_id=user,
        chat_id="c",
        status="processing",
        seq=seq,
    )
    kernel.broker.send_event(key, jsonx.dumps(body))
    return task_id


async def test_events_reach_a_replica_only_while_a_socket_listens(
    kernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "IDLE_UNBIND_S", 0.4)
    user = new_user("erin")
    async with api(kernel) as client:
        hub = client.app[HUB]

        async def consuming() -> bool:
            return hub.connected > 0

        await wait_for(consuming, what="the hub's consumer")
        assert not hub.bound
        unheard = send(kernel, user)  # nobody listens: not routed to this replica
        async with client.ws_connect(f"/ws/tasks?token={token(user)}") as ws:
            assert (await next_json(ws))["type"] == "snapshot"
            assert hub.bound
            heard = send(kernel, user)
            # One queue keeps the order: had the first event been routed here, it came first.
            assert (await next_json(ws))["task_id"] == heard
            assert hub.replay(unheard, 0) is None
            assert hub.replay(heard, 1_000_000) == []  # it holds everything after that seq

        async def unbound() -> bool:
            return not hub.bound

        await wait_for(unbound, what="the binding to go after the idle time")
        assert hub.replay(heard, 1_000_000) is None  # emptied: it may miss events from now on
