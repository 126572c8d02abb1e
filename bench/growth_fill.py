"""The grown database of bench/growth.py: a month of finished chat tasks and their messages,
made once, settled as a database that old would be (vacuumed, analysed, checkpointed), then
copied for each fleet that runs on it (`CREATE DATABASE ... TEMPLATE`, a file copy), so that
every fleet starts from the same pages; and the plans of the claim and the completion on it.
"""

import re
import subprocess
import time
import uuid

import asyncpg

from taskfleet.store.pool import database_name, with_database

# Finished chat tasks and their user and assistant messages, each in one statement; the
# chats (`hist…`) and users (`u…`) are apart from W1's (`bench-…`).
FILL_TASKS = """
INSERT INTO tasks (id, type, user_id, chat_id, status, input, output, progress, attempts,
                   max_attempts, fence, created_at, started_at, updated_at, completed_at)
SELECT {id_at}, 'chat_message', 'u' || (g % 5000), 'hist' || (g % 100000),
       'completed', '{"content": "hello there"}', '{"reply": "You said: hello there"}', 1, 1, 5,
       1, at, at, at, at
FROM generate_series(1, $1) AS g,
     LATERAL (SELECT now() - make_interval(secs => g * (29 * 86400.0 / $1)) AS at) t
"""
FILL_MESSAGES = """
INSERT INTO messages (id, chat_id, user_id, role, content, status, task_id, created_at,
                      updated_at)
SELECT {id_created}, t.chat_id, t.user_id, r.role, r.content, 'completed', t.id,
       t.created_at, t.completed_at
FROM tasks t CROSS JOIN (VALUES ('user', 'hello there'),
                                ('assistant', 'You said: hello there')) AS r(role, content)
WHERE t.chat_id LIKE 'hist%'
ORDER BY t.created_at, r.role DESC
"""
# The history's ids: random (v4), as the code before 2026-12-06 made them, or time-ordered
# (v7, store/sql/tf_uuid7.sql) of the time the row was made.
V7_OF = """encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING
    substring(int8send(floor(extract(epoch FROM {at}) * 1000)::bigint) FROM 3) FROM 1 FOR 6),
    52, 1), 53, 1), 'hex')::uuid"""


def ids_of(kind: str, at: str) -> str:
    """The SQL expression of a history row's id, made at `at`."""
    return "gen_random_uuid()" if kind == "v4" else V7_OF.format(at=at)


# The claim as a chat worker makes it (store/transitions.py: tf_claim, and the chat context
# its statement preloads), then the completion, on a task of a user and chat with history.
PLANNED = """
SELECT c.verdict, c.fence, tf_chat_context(c.user_id, c.chat_id, $1, 20, 50) AS context
FROM tf_claim($1, 'chat_message', 'u1', 'hist1', '{"content": "plan"}', 1, false, 'chat_tasks',
              5, 4, 1.0, 'plan-copy', $2, 300) c
"""
# The outbox relay's pick of due rows and its delete of published ones (broker/outbox.py,
# store/submissions.py), and a chat submission as the API makes it (store/submissions.py).
RELAY = [
    """WITH due AS (SELECT id FROM outbox WHERE available_at <= now()
                   ORDER BY available_at LIMIT 100 FOR UPDATE SKIP LOCKED)
       SELECT o.id, t.id AS task_id, t.type, t.status FROM outbox o JOIN due USING (id)
       JOIN tasks t ON t.id = o.task_id""",
    """DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE id = ANY('{1,2}'::bigint[])
       FOR UPDATE SKIP LOCKED)""",
]
SUBMIT = """
SELECT * FROM tf_submit_chat($1, 'chat_message', 'u1', 'hist1', NULL, '{"content": "plan"}', 5,
                             NULL, 'chat_tasks', 5.0, 'plan', $2, 1000000, 1000000, '{}', NULL,
                             NULL, 'normal')
"""
LARGE = ("tasks", "messages", "outbox")


async def fill(dsn: str, tasks: int, ids: str = "v4") -> dict[str, float]:
    conn = await asyncpg.connect(dsn)  # the login role: no row security in the way
    try:
        started = time.monotonic()
        await conn.execute(FILL_TASKS.replace("{id_at}", ids_of(ids, "at")), tasks)
        filled_tasks = time.monotonic()
        await conn.execute(FILL_MESSAGES.replace("{id_created}", ids_of(ids, "t.created_at")))
        await conn.execute("ANALYZE tasks; ANALYZE messages")
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    done = time.monotonic()
    return {"tasks_s": round(filled_tasks - started, 1),
            "messages_s": round(done - filled_tasks, 1),
            "database_mib": round(size / 2**20)}  # fmt: skip


async def plans(dsn: str) -> list[str]:
    """The plans of a claim, a completion, the outbox relay's statements and a submission
    (rolled back), as auto_explain logs them."""
    conn = await asyncpg.connect(dsn)
    logged: list[str] = []
    conn.add_log_listener(lambda _c, message: logged.append(message.message))
    task, holder = uuid.uuid4(), uuid.uuid4()
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(
            "INSERT INTO workers (id, worker, queue, host, pid, version, concurrency,"
            " heartbeat_s) VALUES ($1, 'chat', 'chat_tasks', 'bench', 1, 'bench', 1, 3600)",
            holder,
        )
        await conn.execute(
            "INSERT INTO tasks (id, type, user_id, chat_id, status, input, max_attempts)"
            " VALUES ($1, 'chat_message', 'u1', 'hist1', 'queued', '{\"content\": \"plan\"}', 5)",
            task,
        )
        await conn.execute(
            "INSERT INTO messages (id, chat_id, user_id, role, content, status, task_id)"
            " VALUES (gen_random_uuid(), 'hist1', 'u1', 'user', 'plan', 'completed', $1)",
            task,
        )
        await conn.execute(
            "LOAD 'auto_explain'; SET LOCAL auto_explain.log_min_duration = 0;"
            " SET LOCAL auto_explain.log_nested_statements = on;"
            " SET LOCAL auto_explain.log_analyze = on; SET LOCAL auto_explain.log_buffers = on;"
            " SET LOCAL auto_explain.log_level = notice; SET LOCAL client_min_messages = notice"
        )
        logged.append("-- the claim, with the chat context it preloads")
        claimed = await conn.fetchrow(PLANNED, task, holder)
        assert claimed is not None
        assert claimed["verdict"] == "claimed", claimed
        logged.append("-- the completion")
        await conn.fetchval(
            "SELECT tf_complete($1, $2, '{\"reply\": \"plan\"}', 'plan')", task, claimed["fence"]
        )
        logged.append("-- the outbox relay: its pick of due rows, its delete of published ones")
        for statement in RELAY:
            await conn.execute(statement)
        # Last: it takes the user's role under row security for the rest of the transaction.
        logged.append("-- a chat submission through the API")
        await conn.fetch(SUBMIT, uuid.uuid4(), uuid.uuid4())
    finally:
        await tx.rollback()
        await conn.close()
    return logged


def seq_scans(logged: list[str]) -> list[str]:
    """Sequential scans of the large tables in the plans (there should be none)."""
    found = re.findall(r"Seq Scan on (\w+)", "\n".join(logged))
    return sorted({table for table in found if table in LARGE})


def migrate(env: dict[str, str], cli: list[str], dsn: str) -> None:
    """Make and migrate the database `dsn` with the code that `env` and `cli` run."""
    subprocess.run([*cli, "migrate"], env={**env, "DATABASE_URL": dsn}, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


async def settle(dsn: str) -> float:
    """VACUUM (ANALYZE) the filled tables and CHECKPOINT: a month-old database has been
    vacuumed, and a first vacuum of millions of rows running during the rounds would be
    counted as theirs. Seconds it took."""
    started = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        for table in ("tasks", "messages", "task_transitions"):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return round(time.monotonic() - started, 1)


async def copy(template: str, name: str) -> str:
    """A copy of the database `template` (which nobody may be connected to) named `name`."""
    conn = await asyncpg.connect(with_database(template, "postgres"))
    try:
        await conn.execute(
            f'CREATE DATABASE "{name}" TEMPLATE "{database_name(template)}" STRATEGY FILE_COPY'
        )
    finally:
        await conn.close()
    return with_database(template, name)
