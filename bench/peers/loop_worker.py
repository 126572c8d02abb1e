"""The hand-written peer of `make bench-peers`: aio-pika and asyncpg, nothing else.

What a careful engineer writes in an afternoon: one process, one consumer with a prefetch,
one asyncio task per delivery; per task a row inserted (its attempt counted), the scripted
reply, the row updated to completed, each statement committed synchronously, then the ack.
No retries, no dead letters, no events: the floor that a framework's features cost against.

    PEER_DATABASE_URL=... PEER_AMQP_URL=... PEER_QUEUE=... python loop_worker.py
"""

import asyncio
import json
import os
import signal

import aio_pika
import asyncpg
from aio_pika.abc import AbstractIncomingMessage

PREFETCH = 64
POOL = 16
INSERT = (
    "INSERT INTO peer_tasks (id, user_id, chat_id, content, status) VALUES ($1, $2, $3, $4,"
    " 'running') ON CONFLICT (id) DO UPDATE SET attempts = peer_tasks.attempts + 1"
)
COMPLETE = (
    "UPDATE peer_tasks SET status = 'completed', reply = $2, completed_at = clock_timestamp()"
    " WHERE id = $1"
)


def reply(content: str) -> str:
    """The scripted model's answer: W1 measures the path around the model, not the model."""
    return f"echo: {content}"


async def main() -> None:
    pool = await asyncpg.create_pool(os.environ["PEER_DATABASE_URL"], min_size=POOL, max_size=POOL)
    connection = await aio_pika.connect_robust(os.environ["PEER_AMQP_URL"])
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    queue = await channel.declare_queue(
        os.environ["PEER_QUEUE"], durable=True, arguments={"x-queue-type": "quorum"}
    )
    running: set[asyncio.Task[None]] = set()

    async def handle(message: AbstractIncomingMessage) -> None:
        task = json.loads(message.body)
        async with pool.acquire() as db:
            await db.execute(
                INSERT, task["task_id"], task["user_id"], task["chat_id"], task["content"]
            )
            await db.execute(COMPLETE, task["task_id"], reply(task["content"]))
        await message.ack()

    async def on_message(message: AbstractIncomingMessage) -> None:
        # Held until done: the loop keeps only weak references to tasks.
        task = asyncio.create_task(handle(message))
        running.add(task)
        task.add_done_callback(running.discard)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await queue.consume(on_message)
    print("consuming", flush=True)
    await stop.wait()
    await connection.close()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
