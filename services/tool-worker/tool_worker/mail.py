"""`send_email`: one message through SMTP_URL (aiosmtplib; `deliver` also sends the email
notifications, tool_worker.notifier). A tool with side effects: it runs
at most once per call (tool_worker.effects), so its errors say whether anything was sent."""

from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib

from taskfleet.data.toolspecs import SendEmailArgs
from tool_worker.registry import ToolContext, ToolError, ToolUnavailable
from tool_worker.settings import ToolWorkerSettings

SMTP_TIMEOUT_S = 30.0
# No server took the message: nothing was sent, it may go again.
UNREACHABLE = (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPConnectTimeoutError)
# The server said no: sending it again would get the same answer.
REFUSED = (
    aiosmtplib.SMTPRecipientsRefused,
    aiosmtplib.SMTPSenderRefused,
    aiosmtplib.SMTPDataError,
    aiosmtplib.SMTPAuthenticationError,
)


async def deliver(settings: ToolWorkerSettings, message: EmailMessage) -> tuple[Any, str]:
    """Send `message` through SMTP_URL: (the recipients refused, the server's answer)."""
    url = urlsplit(settings.smtp_url)
    tls = url.scheme == "smtps"
    refused, response = await aiosmtplib.send(
        message,
        hostname=url.hostname or "localhost",
        port=url.port or (465 if tls else 25),
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
        use_tls=tls,
        timeout=SMTP_TIMEOUT_S,
    )
    return refused, response


async def send_email(args: SendEmailArgs, tctx: ToolContext) -> dict[str, Any]:
    """The `send_email` tool: one message from SMTP_FROM; `refused` lists the recipients the
    server turned down.

    ToolUnavailable when the server cannot be reached (nothing was sent: it may run again),
    ToolError when it refuses the message.
    """
    message = EmailMessage()
    message["From"] = tctx.settings.smtp_from
    message["To"] = ", ".join(args.to)
    message["Subject"] = args.subject
    message["Date"] = formatdate(localtime=False)
    # One id per call: a receiving system can recognise the message whatever happens.
    message["Message-ID"] = f"<{tctx.task_id}@taskfleet>"
    message.set_content(args.body)
    try:
        refused, response = await deliver(tctx.settings, message)
    except UNREACHABLE as exc:
        raise ToolUnavailable(f"SMTP server not reachable: {exc}") from None  # nothing was sent
    except REFUSED as exc:
        raise ToolError(f"the SMTP server refused the message: {exc}") from None
    return {
        "message_id": message["Message-ID"],
        "to": args.to,
        "refused": sorted(refused),
        "response": response,
    }
