"""Dramatiq, the peer of `make bench-peers`: `dramatiq dramatiq_worker --processes 2 --threads 8`.

Its RabbitMQ broker with publisher confirms, on a quorum queue as taskfleet's (the queue
arguments are Dramatiq's own plus the type); Dramatiq acks after the actor returns. Per task,
in the thread's own psycopg connection (autocommit: each statement commits synchronously),
the row inserted (its attempt counted), the scripted reply, the row updated to completed.

    PEER_DATABASE_URL=... PEER_AMQP_URL=... PEER_QUEUE=...
"""

import os
import threading
from typing import Any

import dramatiq
import psycopg
from dramatiq.brokers.rabbitmq import RabbitmqBroker

INSERT = (
    "INSERT INTO peer_tasks (id, user_id, chat_id, content, status) VALUES (%s, %s, %s, %s,"
    " 'running') ON CONFLICT (id) DO UPDATE SET attempts = peer_tasks.attempts + 1"
)
COMPLETE = (
    "UPDATE peer_tasks SET status = 'completed', reply = %s, completed_at = clock_timestamp()"
    " WHERE id = %s"
)


class QuorumBroker(RabbitmqBroker):  # type: ignore[misc]
    """Dramatiq's broker, its work queues declared as quorum queues."""

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)
        return {**arguments, "x-queue-type": "quorum"}


dramatiq.set_broker(QuorumBroker(url=os.environ["PEER_AMQP_URL"], confirm_delivery=True))
_local = threading.local()


def _db() -> psycopg.Connection[Any]:
    if getattr(_local, "db", None) is None:
        _local.db = psycopg.connect(os.environ["PEER_DATABASE_URL"], autocommit=True)
    db: psycopg.Connection[Any] = _local.db
    return db


def reply(content: str) -> str:
    """The scripted model's answer: W1 measures the path around the model, not the model."""
    return f"echo: {content}"


@dramatiq.actor(queue_name=os.environ["PEER_QUEUE"], actor_name="chat", max_retries=3)  # type: ignore[untyped-decorator]
def chat(task_id: str, user_id: str, chat_id: str, content: str) -> None:
    db = _db()
    db.execute(INSERT, (task_id, user_id, chat_id, content))
    db.execute(COMPLETE, (reply(content), task_id))
