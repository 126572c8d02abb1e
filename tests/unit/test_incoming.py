"""taskfleet.path.incoming: a work queue's delivery as aiormq hands it, read and settled as the
path does (taskfleet.path.settle), and what the metrics' series cache gives back."""

from typing import Any, cast

from aiormq.abc import DeliveredMessage
from pamqp import commands
from pamqp.header import ContentHeader

from taskfleet.core.metrics import TASKS, Labelled
from taskfleet.path.incoming import Incoming


class Channel:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, bool]] = []
        self.is_closed = False

    async def basic_ack(self, tag: int) -> None:
        self.calls.append(("ack", tag, False))

    async def basic_nack(self, tag: int, requeue: bool = True) -> None:
        self.calls.append(("nack", tag, requeue))


def delivery(channel: Channel, headers: dict[str, Any] | None, redelivered: bool) -> Incoming:
    frame = commands.Basic.Deliver("ctag", 7, redelivered, "", "q")
    properties = commands.Basic.Properties(headers=headers, message_id="m1")
    header = ContentHeader(body_size=2, properties=properties)
    return Incoming(DeliveredMessage(frame, header, b"{}", cast(Any, channel)))


async def test_a_delivery_reads_as_the_path_reads_it_and_settles_on_its_channel() -> None:
    channel = Channel()
    message = delivery(channel, {"traceparent": b"00-x"}, redelivered=True)
    assert (message.body, message.message_id, message.redelivered) == (b"{}", "m1", True)
    assert message.headers == {"traceparent": b"00-x"}
    assert message.delivery_tag == 7
    assert not message.channel.is_closed
    await message.ack()
    await delivery(channel, None, redelivered=False).nack(requeue=True)
    assert channel.calls == [("ack", 7, False), ("nack", 7, True)]
    assert delivery(channel, None, redelivered=False).headers == {}


def test_a_labelled_series_is_the_metrics_own() -> None:
    series = Labelled(TASKS)
    assert series("chat_tasks", "completed") is TASKS.labels("chat_tasks", "completed")
    assert series("chat_tasks", "completed") is series("chat_tasks", "completed")
