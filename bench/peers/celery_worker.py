"""Celery, the peer of `make bench-peers`: `celery -A celery_worker worker --pool prefork -c 2`.

acks_late (the ack after the task returns), publisher confirms, its default prefetch (4 a
process), a quorum queue as taskfleet's. Per task, in the process's own
psycopg connection (autocommit: each statement commits synchronously), the row inserted (its
attempt counted), the scripted reply, the row updated to completed. No result backend.

    PEER_DATABASE_URL=... PEER_AMQP_URL=... PEER_QUEUE=...
"""

import os
from typing import Any

import psycopg
from celery import Celery
from kombu import Queue

INSERT = (
    "INSERT INTO peer_tasks (id, user_id, chat_id, content, status) VALUES (%s, %s, %s, %s,"
    " 'running') ON CONFLICT (id) DO UPDATE SET attempts = peer_tasks.attempts + 1"
)
COMPLETE = (
    "UPDATE peer_tasks SET status = 'completed', reply = %s, completed_at = clock_timestamp()"
    " WHERE id = %s"
)
QUEUE = os.environ["PEER_QUEUE"]

app = Celery("peer", broker=os.environ["PEER_AMQP_URL"])
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    broker_transport_options={"confirm_publish": True},
    task_queues=[Queue(QUEUE, routing_key=QUEUE, queue_arguments={"x-queue-type": "quorum"})],
    task_default_queue=QUEUE,
    worker_enable_remote_control=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
_db: list[psycopg.Connection[Any]] = []


def db() -> psycopg.Connection[Any]:
    if not _db:  # one per prefork child, made in the child
        _db.append(psycopg.connect(os.environ["PEER_DATABASE_URL"], autocommit=True))
    return _db[0]


def reply(content: str) -> str:
    """The scripted model's answer: W1 measures the path around the model, not the model."""
    return f"echo: {content}"


@app.task(name="chat")  # type: ignore[untyped-decorator]
def chat(task_id: str, user_id: str, chat_id: str, content: str) -> None:
    connection = db()
    connection.execute(INSERT, (task_id, user_id, chat_id, content))
    connection.execute(COMPLETE, (reply(content), task_id))
