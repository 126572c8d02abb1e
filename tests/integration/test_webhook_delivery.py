"""Webhook delivery at least once: a receiver that fails three times gets the event on the
fourth attempt, one that is down gets it when back within the deadline; past the deadline it
is `failed` in the log, and sent again on request; a deliverer stopped mid-POST loses
nothing: the claimed row goes again after its lease, with the same `webhook-id`."""

from typing import Any

from prometheus_client import REGISTRY

from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.api_client import auth, new_user
from tests.integration.webhook_helpers import (
    add_webhook,
    cancelled_task,
    deliveries,
    hooks_api,
    wait_delivery,
)
from tests.webhook_receiver import Receiver


def _count(outcome: str) -> float:
    value = REGISTRY.get_sample_value("taskfleet_webhook_deliveries_total", {"outcome": outcome})
    return value or 0.0


async def test_a_receiver_answering_500_three_times_gets_it_on_the_fourth(kernel: Kernel) -> None:
    receiver = Receiver(failures=[500, 500, 503])
    await receiver.start()
    retried, delivered = _count("retried"), _count("delivered")
    user = new_user()
    try:
        async with hooks_api(kernel) as client:
            hook = await add_webhook(client, user, receiver.url, "task.cancelled")
            task_id = await cancelled_task(client, user)
            delivery = await wait_delivery(client, user, hook["id"], "delivered")
    finally:
        await receiver.stop()
    assert [r.answered for r in receiver.got] == [500, 500, 503, 200]
    assert {r.webhook_id for r in receiver.got} == {delivery["id"]}  # one event, one id
    for r in receiver.got:  # every attempt signed afresh, and verified
        assert r.verified(hook["secret"])["data"]["task_id"] == task_id
    assert (delivery["attempts"], delivery["response_status"]) == (4, 200)
    assert delivery["last_error"] is None
    assert _count("retried") - retried >= 3
    assert _count("delivered") - delivered >= 1


async def test_a_receiver_down_for_a_while_gets_it_when_back_within_the_deadline(
    kernel: Kernel,
) -> None:
    receiver = Receiver()  # not listening yet
    user = new_user()
    async with hooks_api(kernel, WEBHOOK_DEADLINE_S=60) as client:
        hook = await add_webhook(client, user, receiver.url, "task.cancelled")
        await cancelled_task(client, user)

        async def tried_twice() -> dict[str, Any] | None:
            found = await deliveries(client, user, hook["id"])
            return found[0] if found and found[0]["attempts"] >= 2 else None

        pending = await wait_for(tried_twice, what="two failed attempts")
        assert pending["status"] == "pending"
        assert pending["response_status"] is None
        assert "Connect" in pending["last_error"]
        assert pending["next_attempt_at"] is not None
        await receiver.start()
        try:
            delivery = await wait_delivery(client, user, hook["id"], "delivered")
        finally:
            await receiver.stop()
    assert len(receiver.got) == 1
    assert receiver.got[0].webhook_id == delivery["id"]
    assert delivery["attempts"] >= 3


async def test_past_the_deadline_it_fails_visibly_and_redeliver_sends_it_again(
    kernel: Kernel,
) -> None:
    receiver = Receiver(failures=[500] * 1000)
    await receiver.start()
    failed = _count("failed")
    user = new_user()
    try:
        async with hooks_api(kernel, WEBHOOK_DEADLINE_S=0.8) as client:
            hook = await add_webhook(client, user, receiver.url, "task.cancelled")
            await cancelled_task(client, user)
            delivery = await wait_delivery(client, user, hook["id"], "failed")
            assert (delivery["response_status"], delivery["last_error"]) == (500, "HTTP 500")
            assert delivery["next_attempt_at"] is None
            assert delivery["attempts"] == len(receiver.got) >= 2
            assert _count("failed") - failed >= 1
            only_failed = await client.get(
                f"/api/webhooks/{hook['id']}/deliveries?status=failed", headers=auth(user)
            )
            assert [d["id"] for d in (await only_failed.json())["deliveries"]] == [delivery["id"]]

            receiver.failures.clear()  # the receiver is fixed: send it again
            path = f"/api/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver"
            resp = await client.post(path, headers=auth(user))
            assert resp.status == 202, await resp.text()
            again = await wait_delivery(client, user, hook["id"], "delivered")
            assert again["id"] == delivery["id"] == receiver.got[-1].webhook_id
            assert again["enqueued_at"] > delivery["enqueued_at"]
            other = new_user()
            assert (await client.post(path, headers=auth(other))).status == 404
            missing = path.replace(delivery["id"], hook["id"])
            assert (await client.post(missing, headers=auth(user))).status == 404
    finally:
        await receiver.stop()


async def test_a_delivery_claimed_by_a_deliverer_that_stopped_mid_post_goes_again(
    kernel: Kernel,
) -> None:
    receiver = Receiver(hold=True)  # takes the first POST and never answers it
    await receiver.start()
    user = new_user()
    try:
        async with hooks_api(kernel, WEBHOOK_TIMEOUT_S=1) as client:
            hook = await add_webhook(client, user, receiver.url, "task.cancelled")
            await cancelled_task(client, user)
            await receiver.wait_for(1)
        # That API (and its deliverer) stopped with the POST unanswered: nothing recorded.
        row = await kernel.pool.fetchrow(
            "SELECT status, attempts, next_attempt_at > now() AS leased FROM webhook_deliveries"
            " WHERE endpoint_id = $1",
            hook["id"],
        )
        assert (row["status"], row["attempts"], row["leased"]) == ("pending", 1, True)
        receiver.hold = False
        async with hooks_api(kernel, WEBHOOK_TIMEOUT_S=1) as client:
            # A pending delivery is being sent: it cannot be sent again on request.
            path = f"/api/webhooks/{hook['id']}/deliveries/{receiver.got[0].webhook_id}/redeliver"
            assert (await client.post(path, headers=auth(user))).status == 409
            delivery = await wait_delivery(client, user, hook["id"], "delivered", timeout_s=30)
    finally:
        await receiver.stop()
    assert delivery["attempts"] == 2
    assert [r.webhook_id for r in receiver.got] == [delivery["id"]] * 2  # a duplicate, same id


async def test_a_receiver_that_does_not_answer_holds_up_no_other_delivery(kernel: Kernel) -> None:
    slow, fast = Receiver(hold=True), Receiver()
    await slow.start()
    await fast.start()
    patient, other = new_user(), new_user()
    try:
        async with hooks_api(kernel, WEBHOOK_TIMEOUT_S=15) as client:
            slow_hook = await add_webhook(client, patient, slow.url, "task.cancelled")
            await add_webhook(client, other, fast.url, "task.cancelled")
            await cancelled_task(client, patient)
            await slow.wait_for(1)  # its POST is in flight, unanswered
            await cancelled_task(client, other)
            await fast.wait_for(1)
            # ...and the slow one's first attempt has not ended: nothing waited for it.
            [held] = await deliveries(client, patient, slow_hook["id"])
            assert (held["status"], held["attempts"], held["last_error"]) == ("pending", 1, None)
    finally:
        await slow.stop()
        await fast.stop()
