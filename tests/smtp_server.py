"""A real SMTP server for the tests (aiosmtpd, in a thread): the send_email tool's client
talks to it as to any server, and the test reads what it accepted."""

from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import free_port


class Inbox:
    """Every message the server accepted, as bytes."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    # aiosmtpd calls its handler's hooks by these names.
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.content
        self.messages.append(content if isinstance(content, bytes) else str(content).encode())
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, str]]:
    """(the inbox, its smtp:// URL for SMTP_URL)."""
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, f"smtp://127.0.0.1:{port}"
    controller.stop()
