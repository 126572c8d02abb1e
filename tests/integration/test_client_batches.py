"""The client's batches against the API (in process, on the real servers): a batch submitted,
read and cancelled; the 202s name the batch in Location."""

from uuid import UUID

from taskfleet.client import Taskfleet
from taskfleet.runtime.kernel import Kernel
from tests.integration.api_client import api, auth, new_user, token


async def test_submit_read_and_cancel_a_batch(kernel: Kernel) -> None:
    user = new_user()
    async with api(kernel) as client, Taskfleet(str(client.make_url("")), token(user)) as tf:
        accepted = await tf.submit_batch([("c1", "one"), ("c2", "two"), ("c1", "three")])
        assert len(accepted.task_ids) == 3
        assert accepted.status == "queued"
        batch = await tf.batch(accepted.batch_id)
        assert (batch.id, batch.total, batch.status) == (accepted.batch_id, 3, "active")
        tasks = {t.id: t for t in [await tf.get(i) for i in accepted.task_ids]}
        assert {t.batch_id for t in tasks.values()} == {accepted.batch_id}
        cancelled = await tf.cancel_batch(accepted.batch_id)
        assert cancelled.counts == {"cancelled": 3}
        # The raw answers carry Location, as every 202 does.
        body = {"tasks": [{"chat_id": "c3", "content": "four"}]}
        resp = await client.post("/api/batches", json=body, headers=auth(user))
        batch_id = UUID((await resp.json())["batch_id"])
        assert resp.status == 202
        assert resp.headers["Location"] == f"/api/batches/{batch_id}"
        resp = await client.post(f"/api/batches/{batch_id}/cancel", headers=auth(user))
        assert resp.status == 202
        assert resp.headers["Location"] == f"/api/batches/{batch_id}"
