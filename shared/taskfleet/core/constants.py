"""Names that are contract (DESIGN.md §4, §5): task types, statuses, queues, exchanges."""

from dataclasses import dataclass
from enum import StrEnum


class TaskType(StrEnum):
    CHAT = "chat_message"
    TOOL = "tool_execution"
    DOCUMENT = "document_processing"
    CAMERA = "camera_analysis"


class Status(StrEnum):
    SCHEDULED = "scheduled"  # a delayed task before it is due (docs/scheduling.md)
    QUEUED = "queued"
    PROCESSING = "processing"
    RETRYING = "retrying"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
# What `?status=active` lists (DESIGN.md §13): every status but the terminal ones.
ACTIVE = tuple(s for s in Status if s not in TERMINAL)


def statuses(text: str) -> list[str]:
    """The statuses a `?status=` (or `taskfleet tasks --status`) names: one, several separated
    by commas, or `active` (every unfinished one); ValueError for an unknown name."""
    found: list[str] = []
    for name in (n.strip() for n in text.split(",")):
        found += [s.value for s in ACTIVE] if name == "active" else [Status(name).value]
    return found


EVENTS_EXCHANGE = "taskfleet.events"
CONTROL_EXCHANGE = "taskfleet.control"
DEAD_LETTER_EXCHANGE = "taskfleet.dlx"

# Only a backstop for a message that kills its worker every time: on RabbitMQ 3.10 every
# return counts, a killed worker's included, so a low limit would dead-letter healthy tasks.
DELIVERY_LIMIT = 20

REASON_HEADER = "x-taskfleet-reason"
ERROR_HEADER = "x-taskfleet-error"
# Every copy of a task message we publish carries an id of its own: a claim lets a copy take
# over a running task only when it is the very copy the holder lost (store/sql/tf_claim.sql).
COPY_HEADER = "x-taskfleet-copy"


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A work queue and the defaults of the tasks it carries."""

    name: str
    task_type: TaskType
    worker: str
    metrics_port: int
    deadline_s: float
    max_attempts: int
    retry_base_s: float
    retry_max_s: float
    # A worker's slots (handler loops) when neither --concurrency nor WORKER_CONCURRENCY says:
    # it starts at `concurrency` and adapts up to `max_concurrency` (taskfleet.path.slots).
    concurrency: int
    max_concurrency: int


# Slots by the work's kind. A chat task waits on the model (and the scripted one on nothing):
# 64 slots keep one process's event loop and the database's batches full: 1.1x the throughput
# of a fixed 32 (which did 1.3x of 8). A worker started at 32 adapts to as much when its CPU
# leaves room, but not with tracing on, where starting at 64 gave 1.07x (docs/benchmarks.md).
# Tools mostly wait on the network too. A document parse or a camera analysis is CPU-bound in
# a thread: more slots than the cores only add memory, so theirs do not adapt. A chat worker
# whose model keeps it waiting grows to 256 slots.
QUEUES: dict[TaskType, QueueSpec] = {
    TaskType.CHAT: QueueSpec("chat_tasks", TaskType.CHAT, "chat", 9101, 300, 5, 1.0, 60, 64, 256),
    TaskType.TOOL: QueueSpec(
        "tool_executions", TaskType.TOOL, "tool", 9102, 120, 5, 2.0, 300, 8, 64
    ),
    TaskType.DOCUMENT: QueueSpec(
        "document_processing", TaskType.DOCUMENT, "doc", 9103, 900, 3, 5.0, 300, 2, 2
    ),
    TaskType.CAMERA: QueueSpec(
        "camera_analysis", TaskType.CAMERA, "camera", 9104, 60, 3, 1.0, 30, 4, 4
    ),
}

QUEUE_BY_WORKER: dict[str, QueueSpec] = {spec.worker: spec for spec in QUEUES.values()}
QUEUE_BY_NAME: dict[str, QueueSpec] = {spec.name: spec for spec in QUEUES.values()}


def dlq_name(queue: str) -> str:
    """The dead-letter queue of a work queue: where its rejected and exhausted messages go."""
    return f"{queue}.dlq"


class Priority(StrEnum):
    """A task's priority (DESIGN.md §13): each level has a queue of its own (docs/priorities.md)."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


# Highest first: the order in which a worker prefers its queues (taskfleet.path.levels).
LEVELS = (Priority.HIGH, Priority.NORMAL, Priority.LOW)


def level_queue(queue: str, priority: Priority | str) -> str:
    """The queue of `queue`'s tasks at `priority`: `chat_tasks.high`, `chat_tasks` (normal keeps
    the queue's own name) or `chat_tasks.low`. A DLQ name gives that level's DLQ:
    `chat_tasks.dlq` -> `chat_tasks.high.dlq`."""
    level = Priority(priority)
    if level is Priority.NORMAL:
        return queue
    if queue.endswith(".dlq"):
        return f"{queue.removesuffix('.dlq')}.{level}.dlq"
    return f"{queue}.{level}"
