"""Real faults of the real services: RabbitMQ and PostgreSQL commands, and a TCP proxy."""

import asyncio
import contextlib
import os
import subprocess
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit


def rabbitmqctl(*args: str, timeout_s: float = 60) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, timeout=timeout_s, capture_output=True)


def port_of(url: str) -> int:
    """The port a DATABASE_URL or AMQP_URL names (its scheme's default when it names none)."""
    parts = urlsplit(url)
    return parts.port or {"amqp": 5672, "amqps": 5671}.get(parts.scheme, 5432)


def via_port(url: str, port: int) -> str:
    """The same URL on 127.0.0.1:`port`: where a proxy in front of that service listens."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(
        parts._replace(netloc=f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}")
    )


def cluster_of(database_url: str) -> tuple[str, str]:
    """(version, name) of the local cluster that serves `database_url`'s port: the suite may
    run on a cluster of its own (e.g. `pg_createcluster 15 chaos -p 5433`), so that stopping
    it disturbs nobody else's database."""
    port = str(urlsplit(database_url).port or 5432)
    listed = subprocess.run(
        ["pg_lsclusters", "--no-header"], check=True, capture_output=True, text=True
    ).stdout
    for line in listed.splitlines():
        version, name, cluster_port, *_ = line.split()
        if cluster_port == port:
            return version, name
    raise LookupError(f"no local PostgreSQL cluster on port {port}")


def postgres_restart(database_url: str, mode: str) -> None:
    """`pg_ctlcluster <version> <name> restart -m fast|immediate` (immediate: a crash)."""
    version, name = cluster_of(database_url)
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart", "-m", mode],
        check=True,
        timeout=120,
        capture_output=True,
    )


def postgres(database_url: str, action: str) -> None:
    """`pg_ctlcluster <version> <name> stop|start` (stop: fast, as an operator or a failover)."""
    version, name = cluster_of(database_url)
    args = ["-m", "fast"] if action == "stop" else []
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action, *args],
        check=True,
        timeout=120,
        capture_output=True,
    )


def can_operate_services() -> str | None:
    """Why these faults cannot be made here, or None when they can."""
    if subprocess.run(["which", "rabbitmqctl"], capture_output=True).returncode != 0:
        return "rabbitmqctl is not installed"
    if not os.path.isdir("/etc/postgresql"):
        return "no local PostgreSQL cluster to restart"
    return None


@dataclass
class SilentProxy:
    """A TCP proxy that can go silent: existing links stop passing bytes either way but
    stay open (a half-open link, as when a NAT drops state); new links pass normally. Or it
    can be cut: every link is closed and new ones are closed at once (the server is away),
    until it is mended."""

    target_port: int
    port: int = 0
    silent: bool = False
    cut_off: bool = False
    _links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _pumps: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def go_silent(self) -> None:
        """Existing links go quiet; links made from now on work."""
        self.silent = True
        self._frozen = set(id(w) for pair in self._links for w in pair)

    def cut(self) -> None:
        """Close every link; refuse new ones until mend()."""
        self.cut_off = True
        for a, b in self._links:
            for w in (a, b):
                with contextlib.suppress(Exception):
                    w.close()
        self._links.clear()

    def mend(self) -> None:
        self.cut_off = False

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        for a, b in self._links:
            for w in (a, b):
                with contextlib.suppress(Exception):
                    w.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._links.append((writer, up_writer))
        # The proxy owns its pumps and cancels them in close().
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            pump = asyncio.get_running_loop().create_task(self._pump(src, dst))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await self._pass(src, dst)
        with contextlib.suppress(Exception):
            dst.close()

    async def _pass(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            if self.silent and id(dst) in getattr(self, "_frozen", set()):
                continue  # swallowed: the link is half-open now
            dst.write(data)
            await dst.drain()
