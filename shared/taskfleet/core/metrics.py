"""Prometheus metrics. Names and labels are contract (DESIGN.md §9): Grafana and alerts use them."""

from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# `_created` series double every counter for no dashboard we have.
disable_created_metrics()  # type: ignore[no-untyped-call]

TASKS = Counter(
    "taskfleet_tasks",
    "Task outcomes per queue: completed, failed, retried, cancelled, dead_lettered, duplicate.",
    ["queue", "outcome"],
)
TASK_DURATION = Histogram(
    "taskfleet_task_duration_seconds",
    "Claim to outcome.",
    ["queue"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
TASK_WAIT = Histogram(
    "taskfleet_task_wait_seconds",
    "Created to claimed.",
    ["queue"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
INFLIGHT = Gauge("taskfleet_inflight_tasks", "Tasks being handled by this process.", ["queue"])
RESIDENT_BYTES = Gauge("taskfleet_process_resident_bytes", "Resident memory of this process.")
MEMORY_PAUSED = Gauge(
    "taskfleet_memory_paused",
    "1 while the memory guard keeps this worker from taking deliveries.",
    ["queue"],
)
QUEUE_MESSAGES = Gauge(
    "taskfleet_queue_messages", "Messages ready in a queue, dead-letter queues included.", ["queue"]
)
BACKGROUND_FAILURES = Counter(
    "taskfleet_background_task_failures",
    "Background asyncio tasks that ended with an exception.",
    ["name"],
)
LLM_REQUESTS = Counter("taskfleet_llm_requests", "LLM calls by outcome.", ["outcome"])
LLM_JSON_REPAIRS = Counter("taskfleet_llm_json_repairs", "LLM JSON answers that needed repair.")
EVENTS_DROPPED = Counter(
    "taskfleet_events_dropped",
    "Live events dropped: the event publisher fell behind, or their connection went away.",
)
OUTBOX_PUBLISHED = Counter(
    "taskfleet_outbox_published", "Messages published by the outbox relay.", ["kind"]
)
PUBLISHER_WAITING = Gauge(
    "taskfleet_publisher_waiting",
    "First messages of committed tasks handed to this process's publisher, not yet confirmed.",
)
PUBLISHER_DEFERRED = Counter(
    "taskfleet_publisher_deferred",
    "First messages the publisher left to the outbox relay (no room in time, or no broker).",
)
BATCH_SIZE = Histogram(
    "taskfleet_statement_batch_size",
    "Calls sent to PostgreSQL as one statement (taskfleet.store.coalesce): claims, completions,"
    " chat submissions.",
    ["statement"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
RECONCILED = Counter(
    "taskfleet_reconciled",
    "Tasks the reconciler repaired: lost_message, children_done, holder_gone, not_held,"
    " past_deadline.",
    ["reason"],
)
CONSUMER_PAUSED = Gauge(
    "taskfleet_consumer_paused",
    "1 while a worker takes no deliveries because its database is unavailable.",
    ["queue"],
)
BROKER_CONNECTED = Gauge(
    "taskfleet_broker_connected",
    "1 while this process's RabbitMQ connection is up, its channels open and topology declared.",
)
HTTP_REQUESTS = Counter(
    "taskfleet_http_requests",
    "API requests answered, by route template (`unmatched` for no route), method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "taskfleet_http_request_duration_seconds",
    "API request to response, by route template and method (a WebSocket: its whole life).",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBSOCKETS_OPEN = Gauge("taskfleet_websockets_open", "WebSockets open on this API replica.")
DB_POOL_CONNECTIONS = Gauge(
    "taskfleet_db_pool_connections",
    "This process's PostgreSQL pool: connections in_use, idle, and its max.",
    ["state"],
)
WORKER_SLOTS = Gauge(
    "taskfleet_worker_slots",
    "Tasks this worker handles at once (--concurrency): utilisation = inflight / slots.",
    ["queue"],
)
LLM_DURATION = Histogram(
    "taskfleet_llm_request_duration_seconds",
    "A model call from its request to its last byte (retries included), by model and outcome.",
    ["model", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
LLM_FIRST_TOKEN = Histogram(
    "taskfleet_llm_time_to_first_token_seconds",
    "A model call from its request to the first text or tool call it streamed, by model.",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
)
LLM_TOKENS = Counter(
    "taskfleet_llm_tokens",
    "Tokens the model server reported (stream usage), by model and direction: input, output.",
    ["model", "direction"],
)
WEBHOOK_DELIVERIES = Counter(
    "taskfleet_webhook_deliveries",
    "Webhook attempts by outcome: delivered, retried (to be tried again), failed (for good).",
    ["outcome"],
)


M = TypeVar("M", Counter, Gauge, Histogram)


class Labelled(Generic[M]):
    """A metric's series by their label values, each looked up once: `labels()` takes the
    metric's lock and checks its arguments, on the message path every task. A series still
    appears only once used, as with `labels()`."""

    __slots__ = ("_metric", "_series")

    def __init__(self, metric: M) -> None:
        self._metric: M = metric
        self._series: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        """The series of these label values: `metric.labels(*values)`."""
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = self._metric.labels(*values)
        return series
