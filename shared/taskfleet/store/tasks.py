"""The task-state store on PostgreSQL: every transition of the one message path, fenced.

`TaskStore` is one object per process over one pool, made of the store's parts:
transitions (taskfleet.store.transitions), submissions and outbox rows
(taskfleet.store.submissions) and reads (taskfleet.store.reads); what they take and answer
is in taskfleet.store.records.
"""

import asyncpg

from taskfleet.store.reads import Reads
from taskfleet.store.submissions import Submissions
from taskfleet.store.transitions import Transitions


class TaskStore(Transitions, Submissions, Reads):
    """asyncpg implementation of the task store. Construct with a pool; share it per process."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        Transitions.__init__(self, pool)
        Submissions.__init__(self, pool)
        Reads.__init__(self, pool)
