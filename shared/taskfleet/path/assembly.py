"""How a consumer's path is put together: the settler, and the processor that takes a delivery
through its claim, its run (path.runner) and its commit (path.commit)."""

from typing import TYPE_CHECKING

from taskfleet.core.constants import dlq_name
from taskfleet.core.faults import Faults
from taskfleet.path import levels
from taskfleet.path.commit import Committer
from taskfleet.path.delivery import Processor
from taskfleet.path.policy import backoff
from taskfleet.path.runner import Runner
from taskfleet.path.settle import Settler
from taskfleet.security.fields import Sealer

if TYPE_CHECKING:
    from taskfleet.path.consumer import Consumer


def assemble(consumer: "Consumer") -> tuple[Settler, Processor]:
    """The settler and the processor of `consumer`'s queue, with its settings' faults."""
    settings, spec = consumer.settings, consumer.spec
    faults = Faults.parse(settings.faults)
    queues = levels.level_queues(settings, spec.name)
    dead_letters = {level: dlq_name(name) for level, name in queues.items()}
    settler = Settler(consumer.broker, spec.name, dead_letters, faults)
    committer = Committer(
        consumer.store,
        spec.name,
        backoff(settings, spec),
        settings.outbox_grace_s,
        consumer.database_away,
    )
    runner = Runner(
        consumer,
        spec.name,
        consumer.handler,
        committer,
        faults,
        consumer.deadline_s,
        consumer.inflight,
        Sealer.from_settings(settings),
    )
    processor = Processor(
        spec,
        consumer.store,
        consumer.broker,
        runner,
        consumer.policy,
        lambda: consumer.stopping,
        consumer.database_away,
    )
    return settler, processor
