"""Several broker addresses in one `AMQP_URL`, for a RabbitMQ cluster (docs/operations.md).

`amqp://u:p@a:5672/vh,amqp://u:p@b:5672/vh` names each node in full; `amqp://u:p@a,b:5673/vh`
(libpq's way) lists the hosts, which share the scheme, credentials, vhost and query. A
process connects to the first that answers and, when its node goes away, to the next
(taskfleet.broker.connection).
"""

import re
from typing import Annotated

from pydantic import AfterValidator
from yarl import URL

# scheme://[userinfo@]host[:port],host[:port]...[/vhost][?query]: one URL, several hosts.
_HOST_LIST = re.compile(
    r"^(?P<scheme>amqps?)://(?P<userinfo>[^@/]*@)?(?P<hosts>[^/?#@]*,[^/?#@]*)(?P<rest>[/?#].*)?$"
)


def amqp_addresses(text: str) -> list[str]:
    """Each node's full URL, in the order given; ValueError (without the passwords) for an
    address that is not amqp:// or amqps:// with a host."""
    text = text.strip()
    listed = _HOST_LIST.match(text)
    if listed:
        prefix = f"{listed['scheme']}://{listed['userinfo'] or ''}"
        parts = [
            prefix + host.strip() + (listed["rest"] or "") for host in listed["hosts"].split(",")
        ]
    else:
        parts = [part.strip() for part in text.split(",")]
    return [_checked(part) for part in parts]


def checked_amqp_url(text: str) -> str:
    """AMQP_URL itself when each of its addresses is good; else ValueError (Settings' check)."""
    amqp_addresses(text)
    return text


def _checked(text: str) -> str:
    try:
        url = URL(text)
        ok = url.scheme in ("amqp", "amqps") and bool(url.host)
        url.port  # noqa: B018  (yarl checks the port only when asked for it)
    except ValueError:  # e.g. a port that is no number
        ok = False
    if not ok:
        raise ValueError(f"AMQP_URL's address {_without_password(text)!r} is not amqp(s)://host")
    return text


def _without_password(text: str) -> str:
    """The address as an error message may show it: no password, even in a broken URL."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", text)


# The type of the AMQP_URL setting: checked when the settings are read.
AmqpUrl = Annotated[str, AfterValidator(checked_amqp_url)]
