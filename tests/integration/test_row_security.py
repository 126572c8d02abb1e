"""Tenant isolation held by PostgreSQL (migrations/0012, taskfleet.store.tenancy): a user's
transaction sees and changes that user's rows only, even with SQL that forgets the filter."""

from uuid import UUID, uuid4

import asyncpg
import pytest

from taskfleet.broker.publisher import new_task
from taskfleet.core.constants import TaskType
from taskfleet.runtime.kernel import Kernel
from taskfleet.store.pool import create_pool
from taskfleet.store.quotas import Limits
from taskfleet.store.tasks import TaskStore
from taskfleet.store.tenancy import APP_ROLE, audited, for_user
from tests.integration.api_client import api, auth, new_user, submit

# Every table that holds a user's data, and how to find one user's rows in it.
USER_TABLES = {
    "tasks": "user_id = $1",
    "messages": "user_id = $1",
    "outbox": "task_id IN (SELECT id FROM tasks WHERE user_id = $1)",
    "documents": "user_id = $1",
    "document_blobs": "split_part(key, '/', 2) = $1",
    "document_chunks": "user_id = $1",
    "cameras": "user_id = $1",
    "camera_frames": "user_id = $1",
    "camera_analyses": "user_id = $1",
    "tool_calls": "task_id IN (SELECT id FROM tasks WHERE user_id = $1)",
    "memories": "user_id = $1",
    "submission_counts": "user_id = $1",
    "webhook_endpoints": "user_id = $1",
    "webhook_deliveries": "user_id = $1",
}


async def seed(kernel: Kernel, user: str) -> UUID:
    """One row of `user` in every user-owned table (as the kernel). Returns the task id."""
    task, doc, frame = uuid4(), uuid4(), uuid4()
    async with kernel.pool.acquire() as c, c.transaction():
        await c.execute(
            "INSERT INTO tasks (id, type, user_id, chat_id, input, max_attempts)"
            " VALUES ($1, 'chat_message', $2, 'c', '{}', 3)",
            task,
            user,
        )
        await c.execute(
            "INSERT INTO messages (id, chat_id, user_id, role, content, status, task_id)"
            " VALUES ($1, 'c', $2, 'user', 'hello', 'completed', $3)",
            uuid4(),
            user,
            task,
        )
        # Not due for an hour: no relay publishes it during the test.
        await c.execute(
            "INSERT INTO outbox (task_id, queue, attempt, kind, available_at)"
            " VALUES ($1, 'chat_tasks', 1, 'task', now() + interval '1 hour')",
            task,
        )
        await c.execute(
            "INSERT INTO documents (id, user_id, title, media_type, size_bytes, sha256,"
            " blob_key) VALUES ($1, $2, 't', 'text/plain', 5, 'x', $3)",
            doc,
            user,
            f"documents/{user}/{doc}",
        )
        await c.execute(
            "INSERT INTO document_blobs (key, data) VALUES ($1, 'hello')", f"documents/{user}/{doc}"
        )
        await c.execute(
            "INSERT INTO document_chunks (document_id, page, chunk_index, user_id, content)"
            " VALUES ($1, 1, 0, $2, 'hello')",
            doc,
            user,
        )
        await c.execute("INSERT INTO cameras (user_id, camera_id) VALUES ($1, 'cam')", user)
        await c.execute(
            "INSERT INTO camera_frames (id, user_id, camera_id, task_id, source)"
            " VALUES ($1, $2, 'cam', $3, 'upload')",
            frame,
            user,
            task,
        )
        await c.execute(
            "INSERT INTO camera_analyses (frame_id, task_id, user_id, camera_id, frame_seq,"
            " width, height, format, brightness, sharpness, motion_detected, signature,"
            " thumbnail) VALUES ($1, $2, $3, 'cam', 1, 1, 1, 'JPEG', 0, 0, false, '', '')",
            frame,
            task,
            user,
        )
        await c.execute(
            "INSERT INTO tool_calls (task_id, call_id, tool, state)"
            " VALUES ($1, 'call', 'calculator', 'started')",
            task,
        )
        await c.execute(
            "INSERT INTO memories (id, user_id, fact, fact_key) VALUES ($1, $2, 'f', 'f')",
            uuid4(),
            user,
        )
        await c.execute(
            "INSERT INTO submission_counts (user_id, window_start, submissions)"
            " VALUES ($1, now(), 1)",
            user,
        )
        hook = uuid4()
        await c.execute(
            "INSERT INTO webhook_endpoints (id, user_id, url, events, secret)"
            " VALUES ($1, $2, 'https://example.com/h', '{task.failed}', '{}')",
            hook,
            user,
        )
        # Delivered already: no deliverer sends it during the test.
        await c.execute(
            "INSERT INTO webhook_deliveries (id, endpoint_id, user_id, task_id, event, payload,"
            " status) VALUES ($1, $2, $3, $4, 'task.failed', '{}', 'delivered')",
            uuid4(),
            hook,
            user,
            task,
        )
    return task


async def test_a_user_sees_none_of_another_users_rows_even_without_a_filter(
    kernel: Kernel,
) -> None:
    alice, bob = new_user(), new_user()
    await seed(kernel, alice)
    await seed(kernel, bob)
    as_alice = for_user(kernel.pool, alice)
    for table, mine in USER_TABLES.items():
        # The kernel sees both users' rows...
        for user in (alice, bob):
            assert await kernel.pool.fetchval(f"SELECT count(*) FROM {table} WHERE {mine}", user)
        # ...alice's transaction, asking for every row of the table, gets only hers.
        everything = await as_alice.fetchval(f"SELECT count(*) FROM {table}")
        hers = await kernel.pool.fetchval(f"SELECT count(*) FROM {table} WHERE {mine}", alice)
        assert everything == hers, table
        assert await as_alice.fetchval(f"SELECT count(*) FROM {table} WHERE {mine}", bob) == 0


async def test_a_user_cannot_change_or_create_another_users_rows(kernel: Kernel) -> None:
    alice, bob = new_user(), new_user()
    await seed(kernel, alice)
    bobs_task = await seed(kernel, bob)
    as_alice = for_user(kernel.pool, alice)
    assert await as_alice.execute("UPDATE tasks SET stage = 'x' WHERE id = $1", bobs_task) == (
        "UPDATE 0"
    )
    await as_alice.execute("DELETE FROM memories")  # no WHERE: a handler bug
    assert await kernel.pool.fetchval("SELECT count(*) FROM memories WHERE user_id = $1", bob)
    assert not await kernel.pool.fetchval("SELECT count(*) FROM memories WHERE user_id = $1", alice)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await as_alice.execute(
            "INSERT INTO tasks (id, type, user_id, input, max_attempts)"
            " VALUES ($1, 'chat_message', $2, '{}', 3)",
            uuid4(),
            bob,
        )
    task = await kernel.pool.fetchrow("SELECT stage FROM tasks WHERE id = $1", bobs_task)
    assert task["stage"] is None


async def test_without_a_user_the_application_role_sees_nothing(kernel: Kernel) -> None:
    await seed(kernel, new_user())
    async with kernel.pool.acquire() as c, c.transaction():
        await c.execute(f"SET LOCAL ROLE {APP_ROLE}")
        assert await c.fetchval("SELECT count(*) FROM tasks") == 0
        for table in ("workers", "revoked_tokens", "admin_audit"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with c.transaction():  # a savepoint: the error does not end the test's
                    await c.fetch(f"SELECT * FROM {table}")


async def test_the_application_role_neither_owns_nor_bypasses_and_every_table_forces(
    kernel: Kernel,
) -> None:
    role = await kernel.pool.fetchrow(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", APP_ROLE
    )
    assert (role["rolsuper"], role["rolbypassrls"]) == (False, False)
    rows = await kernel.pool.fetch(
        "SELECT relname, relrowsecurity, relforcerowsecurity, pg_get_userbyid(relowner) AS owner"
        " FROM pg_class WHERE relname = ANY($1::text[]) AND relkind = 'r'",
        list(USER_TABLES),
    )
    assert {r["relname"] for r in rows} == set(USER_TABLES)
    for r in rows:
        assert (r["relrowsecurity"], r["relforcerowsecurity"]) == (True, True), r["relname"]
        assert r["owner"] != APP_ROLE


async def test_an_operator_reads_across_users_only_with_an_audit_row(kernel: Kernel) -> None:
    alice, bob = new_user(), new_user()
    ids = [await seed(kernel, alice), await seed(kernel, bob)]
    count = "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[])"
    async with kernel.pool.acquire() as c, c.transaction():
        await c.execute("SET LOCAL ROLE taskfleet_admin")  # not through `audited`
        assert await c.fetchval(count, ids) == 0
    actor = f"ops-{uuid4().hex[:8]}"
    assert await audited(kernel.pool, actor, "investigate", ticket=42).fetchval(count, ids) == 2
    audit = await kernel.pool.fetch(
        "SELECT action, detail FROM admin_audit WHERE actor = $1", actor
    )
    assert [(a["action"], a["detail"]) for a in audit] == [("investigate", {"ticket": 42})]


async def test_a_quote_in_an_audit_detail_is_data_not_sql(kernel: Kernel) -> None:
    actor = "o'brien"
    db = audited(kernel.pool, actor, "x'); DROP TABLE tasks; --", note="it's")
    assert await db.fetchval("SELECT 1") == 1
    row = await kernel.pool.fetchrow(
        "SELECT action, detail FROM admin_audit WHERE actor = $1", actor
    )
    assert row["action"] == "x'); DROP TABLE tasks; --"
    assert row["detail"] == {"note": "it's"}
    assert await kernel.pool.fetchval("SELECT to_regclass('tasks') IS NOT NULL")


def test_a_user_id_that_could_escape_the_literal_is_refused(kernel: Kernel) -> None:
    with pytest.raises(ValueError, match="not a user id"):
        for_user(kernel.pool, "x'; RESET ROLE; --")


async def test_an_admin_token_reading_a_users_task_leaves_an_audit_row(kernel: Kernel) -> None:
    user, admin = new_user(), new_user("ops")
    async with api(kernel) as client:
        accepted = await submit(client, user)
        path = f"/api/tasks/{accepted['task_id']}"
        # The user's own read is not an operator's: no audit row.
        assert (await client.get(path, headers=auth(user))).status == 200
        resp = await client.get(path, headers=auth(admin, "admin"))
        assert resp.status == 200
        assert (await resp.json())["user_id"] == user
    rows = await kernel.pool.fetch("SELECT actor, action FROM admin_audit WHERE actor = $1", admin)
    assert [(r["actor"], r["action"]) for r in rows] == [(admin, f"GET {path}")]


async def test_a_chat_submission_scopes_itself_and_leaves_the_connection_as_it_was(
    kernel: Kernel,
) -> None:
    """tf_submit_chat takes the user's role and user for its own transaction only."""
    pool = await create_pool(kernel.settings.database_url, size=1)  # one connection to look at
    try:
        user = new_user()
        new = new_task(
            kernel.settings, type=TaskType.CHAT, user_id=user, chat_id="c", input={"content": "hi"}
        )
        limits = Limits.from_settings(kernel.settings)
        submitted = await TaskStore(pool).submit_chat(
            for_user(pool, user), new, content="hi", relay_grace_s=3600, limits=limits
        )
        assert submitted.created
        session = await pool.fetchrow(
            "SELECT current_user AS role, current_setting('taskfleet.user_id', true) AS user_id"
        )
        assert session["role"] == "taskfleet_service"
        assert session["user_id"] in ("", None)  # '' once a transaction set it and ended
        owners = await pool.fetch("SELECT user_id FROM messages WHERE task_id = $1", new.task_id)
        assert [r["user_id"] for r in owners] == [user, user]
        with pytest.raises(ValueError, match="in a transaction of"):
            await TaskStore(pool).submit_chat(
                for_user(pool, new_user()), new, content="hi", relay_grace_s=3600, limits=limits
            )
    finally:
        await pool.close()


async def test_a_users_transaction_cannot_submit_in_another_users_name(kernel: Kernel) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await for_user(kernel.pool, new_user()).fetchrow(
            "SELECT * FROM tf_submit_chat($1, 'chat_message', $2, 'c', NULL, '{}', 3, NULL,"
            " 'chat_tasks', 60, 'hi', $3, 100, 100)",
            uuid4(),
            new_user(),
            uuid4(),
        )
