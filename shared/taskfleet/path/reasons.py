"""The message path's named reasons: claim verdicts, interrupts, pauses, settlements, tallies.

Several of them cross the process's boundary (tf_claim's `verdict` column, the `outcome` label
of the tasks metric, the `x-taskfleet-reason` header, /readyz): a StrEnum keeps each one's
exact string there.
"""

from enum import StrEnum


class Verdict(StrEnum):
    """tf_claim's answer for one delivery (store/sql/tf_claim.sql)."""

    CLAIMED = "claimed"  # ours: run the handler
    DUPLICATE = "duplicate"  # another copy has it, or had it: this copy is settled
    CANCELLED = "cancelled"  # cancelled before it ran
    EXHAUSTED = "exhausted"  # no attempt left: the claim failed it
    THROTTLED = "throttled"  # over its user's limit or its rate limit: put back for later
    MISMATCH = "mismatch"  # task_id names a task of another user or type
    UNKNOWN = "unknown"  # no such task


class Interrupt(StrEnum):
    """Why a running handler is stopped from outside."""

    CANCEL = "cancel"  # the user asked
    SHUTDOWN = "shutdown"  # the stop's grace period ran out


class PauseCause(StrEnum):
    """What keeps a consumer from taking deliveries (the keys of /readyz's reasons)."""

    MEMORY = "memory"
    DATABASE = "database"


class RequeueWhy(StrEnum):
    """Why a delivery goes back to its queue unsettled."""

    NOT_TAKING = "not_taking"  # stopping or paused: prefetched, never started
    DATABASE_UNAVAILABLE = "database_unavailable"
    DEADLOCK = "deadlock"  # the claim lost a deadlock with another claim
    DEAD_LETTER_FAILED = "dead_letter_failed"  # its copy did not reach the DLQ
    BUG = "bug"  # the path raised: a bug of ours


class DeadLetterCause(StrEnum):
    """Why a delivery cannot be claimed at all, so goes to its queue's DLQ."""

    INVALID_PAYLOAD = "invalid_payload"
    WRONG_QUEUE = "wrong_queue"
    REJECTED_BY_DATABASE = "rejected_by_database"  # e.g. a NUL: it can never be stored
    MISMATCH = "mismatch"
    UNKNOWN_TASK = "unknown_task"


class Tally(StrEnum):
    """The `outcome` label of the tasks metric (TASKS)."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    RETRIED = "retried"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    DUPLICATE = "duplicate"
    THROTTLED = "throttled"  # put back by its claim: over its user's limit or its rate limit
