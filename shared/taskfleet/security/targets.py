"""Where the fleet may send a webhook (docs/integrating.md#webhooks): an http(s) URL whose
host is a public address, so that a user cannot aim the fleet at what only the fleet reaches
(its database, a cloud's metadata service, localhost). Private, loopback, link-local and other
non-global addresses are refused unless WEBHOOK_ALLOWED_HOSTS lists the host by name or an
address range holding them (`receiver.internal,10.0.0.0/8,127.0.0.1`).

A name is checked by the addresses it resolves to, all of them: when the endpoint is created
(check_target), and again by the sender's resolver at every delivery, so that a name that
later resolves to a private address is refused then (taskfleet.data.webhook_sender).
"""

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_HOST = re.compile(r"^[A-Za-z0-9.\-]{1,253}$")
RESOLVE_TIMEOUT_S = 5.0


class TargetRefused(ValueError):
    """A URL the fleet will not send to; the message says why (shown to the user)."""


@dataclass(frozen=True)
class AllowedHosts:
    """WEBHOOK_ALLOWED_HOSTS: host names, and address ranges (a lone address is a range)."""

    names: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "AllowedHosts":
        """Comma-separated names and CIDRs; ValueError for an entry that is neither."""
        names: set[str] = set()
        networks: list[Network] = []
        for entry in (e.strip() for e in text.split(",") if e.strip()):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if not _HOST.fullmatch(entry) or "/" in entry:
                    raise ValueError(f"{entry!r} is neither a host name nor a CIDR") from None
                names.add(_name(entry))
        return cls(frozenset(names), tuple(networks))

    def allows_name(self, host: str) -> bool:
        """Whether the host is listed by name (then its addresses are not looked at)."""
        return _name(host) in self.names

    def allows_address(self, text: str) -> bool:
        """Whether the fleet may connect to this address: a global one, or one listed."""
        address = _address(text)
        if address is None:
            return False
        forms = {address, ipaddress.ip_address(text.split("%", 1)[0])}  # ::ffff:a.b.c.d too
        return (address.is_global and not address.is_multicast) or any(
            a in n for a in forms for n in self.networks
        )


def _name(host: str) -> str:
    return host.lower().rstrip(".")


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def split_target(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL; TargetRefused for any other, or one with credentials."""
    try:
        url.encode()  # a lone surrogate (JSON lets one through) is no text to send or store
        parts = urlsplit(url)
        port = parts.port
        if parts.hostname:
            parts.hostname.encode("idna")
    except (ValueError, UnicodeError) as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise TargetRefused("the URL must be http:// or https:// with a host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL must not hold credentials")
    return parts.hostname, port or (443 if parts.scheme.lower() == "https" else 80)


def check_literal(url: str, allowed: AllowedHosts) -> str | None:
    """The URL's host if it is a name still to be resolved; None if it is an address the
    fleet may reach. TargetRefused for an address it may not, or a URL it never sends to."""
    host, _port = split_target(url)
    if allowed.allows_name(host):
        return None
    if _address(host) is None:
        return host
    if not allowed.allows_address(host):
        raise TargetRefused(
            f"{host} is a private, loopback or reserved address (WEBHOOK_ALLOWED_HOSTS)"
        )
    return None


async def check_target(url: str, allowed: AllowedHosts) -> None:
    """TargetRefused unless every address the URL's host resolves to may be reached."""
    host = check_literal(url, allowed)
    if host is None:
        return
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        raise TargetRefused(f"{host} does not resolve") from None
    refused = sorted({str(i[4][0]) for i in infos if not allowed.allows_address(str(i[4][0]))})
    if refused or not infos:
        raise TargetRefused(
            f"{host} resolves to a private, loopback or reserved address"
            f" ({', '.join(refused)}; WEBHOOK_ALLOWED_HOSTS)"
        )
