"""A consumer's watchdog: a connection that is up but whose consumer is gone is reconnected.

A consumer is also gone for a moment on purpose: a resize of its slots cancels it and
subscribes it again (RabbitMQ applies a prefetch only to consumers made after it), and a
resume subscribes it again. Seen in that moment, the watchdog took the whole connection
down: every unacknowledged delivery went back to the queue, and the live events waiting to
be sent were lost. Under load, with the governor resizing every second or so and each round
trip slower, it happened within 15-second runs at 1,150 arrivals a second (docs/benchmarks.md,
"Where the missing events went").
So whatever cancels and subscribes again holds `resubscribing`, and the watchdog looks only
while it is free; a resubscription stuck for longer than STUCK_S counts as a lost consumer.
"""

import asyncio
from collections.abc import Callable

from taskfleet.broker.connection import Broker

PERIOD_S = 5.0
STUCK_S = 5.0  # a resubscription takes a few round trips to the broker


async def watch(
    broker: Broker,
    lost: Callable[[], bool],
    resubscribing: asyncio.Lock,
    period_s: float = PERIOD_S,
    stuck_s: float = STUCK_S,
) -> None:
    """Every `period_s`, reconnect `broker` if `lost()` says the consumer is gone (run it
    supervised)."""
    while True:
        await asyncio.sleep(period_s)
        try:
            async with asyncio.timeout(stuck_s), resubscribing:
                gone = lost()
        except TimeoutError:  # stuck subscribing: its channel is as good as lost
            gone = True
        if gone:
            broker.reconnect("consumer lost")
