"""Task listings: pagination returns every task exactly once while tasks are added; filters, and
bad queries refused."""

from typing import Any

from taskfleet.data.operations import list_tasks
from taskfleet.runtime.kernel import Kernel
from tests.integration.api_client import api, auth, new_user, submit


class TestListings:
    async def test_pagination_returns_every_task_exactly_once_while_tasks_are_added(
        self, kernel: Kernel
    ) -> None:
        user = new_user()
        async with api(kernel) as client:
            original = {(await submit(client, user, f"m{i}"))["task_id"] for i in range(23)}
            seen: list[str] = []
            cursor, added = None, 0
            while True:
                url = "/api/tasks?limit=5" + (f"&cursor={cursor}" if cursor else "")
                page = await (await client.get(url, headers=auth(user))).json()
                seen += [t["id"] for t in page["tasks"]]
                await submit(client, user, f"new{added}")  # a task added between pages
                added += 1
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert len(seen) == len(set(seen))
            assert original <= set(seen)
            first = await (
                await client.get(f"/api/tasks/user/{user}?limit=200", headers=auth(user))
            ).json()
            assert len(first["tasks"]) == 23 + added

    async def test_filters_and_bad_queries(self, kernel: Kernel) -> None:
        user = new_user()
        async with api(kernel) as client:
            accepted = await submit(client, user)
            await client.post(f"/api/tasks/{accepted['task_id']}/cancel", headers=auth(user))
            await submit(client, user)
            cancelled = await (
                await client.get("/api/tasks?status=cancelled", headers=auth(user))
            ).json()
            assert [t["id"] for t in cancelled["tasks"]] == [accepted["task_id"]]
            chats = await (
                await client.get("/api/tasks?type=chat_message", headers=auth(user))
            ).json()
            assert len(chats["tasks"]) == 2
            for bad in ("status=nope", "limit=0", "limit=x", "type=pdf", "extra=1"):
                resp = await client.get(f"/api/tasks?{bad}", headers=auth(user))
                assert resp.status == 422, bad
            resp = await client.get("/api/tasks?cursor=not-ours", headers=auth(user))
            assert resp.status == 400

    async def test_status_takes_several_values_and_active(self, kernel: Kernel) -> None:
        user = new_user()
        async with api(kernel) as client:
            cancelled = (await submit(client, user, "a"))["task_id"]
            await client.post(f"/api/tasks/{cancelled}/cancel", headers=auth(user))
            queued = (await submit(client, user, "b"))["task_id"]
            resp = await client.post(
                "/api/chat/stream",
                json={"chat_id": "c1", "content": "later", "delay_s": 600},
                headers=auth(user),
            )
            scheduled = (await resp.json())["task_id"]

            async def ids(query: str) -> set[str]:
                resp = await client.get(f"/api/tasks?{query}", headers=auth(user))
                page = await resp.json()
                assert resp.status == 200, page
                return {t["id"] for t in page["tasks"]}

            both = {cancelled, queued}
            assert await ids("status=cancelled&status=queued") == both
            assert await ids("status=cancelled,queued") == both
            assert await ids("status=active") == {queued, scheduled}
            assert await ids("status=active,cancelled") == {*both, scheduled}
            assert await ids("status=scheduled,cancelled") == {scheduled, cancelled}
            assert await ids("status=completed,failed") == set()
            for bad in ("status=active,nope", "status=", "status=,", "status=queued&status=x"):
                resp = await client.get(f"/api/tasks?{bad}", headers=auth(user))
                assert resp.status == 422, bad
            for left in (queued, scheduled):  # nothing left for later tests' workers
                await client.post(f"/api/tasks/{left}/cancel", headers=auth(user))

    async def test_metadata_filters_the_listing(self, kernel: Kernel) -> None:
        user = new_user()
        async with api(kernel) as client:

            async def submitted(metadata: dict[str, str]) -> str:
                body = {"chat_id": "c", "content": "x", "metadata": metadata}
                resp = await client.post("/api/chat/stream", json=body, headers=auth(user))
                assert resp.status == 202
                return str((await resp.json())["task_id"])

            a = await submitted({"order": "o-1", "shop": "s1"})
            b = await submitted({"order": "o-2", "shop": "s1"})
            await submitted({})

            async def ids(query: str) -> list[str]:
                resp = await client.get(f"/api/tasks?{query}", headers=auth(user))
                page = await resp.json()
                assert resp.status == 200, page
                return [t["id"] for t in page["tasks"]]

            assert await ids("metadata.order=o-1") == [a]
            assert await ids("metadata.shop=s1") == [b, a]
            assert await ids("metadata.shop=s1&metadata.order=o-2") == [b]
            assert await ids("metadata.shop=s2") == []
            assert await ids("metadata.shop=s1&status=queued&limit=1") == [b]
            resp = await client.get("/api/tasks?metadata.bad%20key=1", headers=auth(user))
            assert resp.status == 422
            assert (await resp.json())["error"]["code"] == "invalid_metadata"


class PlanOf:
    """A Db that answers every fetch with the plan of its statement instead (EXPLAIN), with
    sequential scans discouraged so that an index the statement can use shows in it."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel, self.plan = kernel, ""

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        async with self.kernel.pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            self.plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {query}", *args))
        return []


class TestMetadataIndex:
    async def test_only_tasks_with_metadata_are_indexed_and_the_filter_uses_the_index(
        self, kernel: Kernel
    ) -> None:
        # Most tasks carry no metadata; each version of their rows (queued, processing,
        # completed) would otherwise write a GIN entry for an empty object.
        indexdef = await kernel.pool.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'tasks_metadata'"
        )
        assert "WHERE (metadata <> '{}'::jsonb)" in indexdef
        plan = PlanOf(kernel)
        await list_tasks(plan, user_id=None, metadata={"order": "o-1"})  # type: ignore[arg-type]
        assert "tasks_metadata" in plan.plan, plan.plan
