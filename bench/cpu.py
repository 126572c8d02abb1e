"""CPU seconds of process trees, for benchmarks on a machine that others share: only the
processes of the contender and of the servers it uses are counted, found by their pids and
the ports of DATABASE_URL and AMQP_URL (other PostgreSQL clusters and RabbitMQ nodes on the
machine are not ours). The CPU a task is steadier than the throughput when the machine's load
moves: it does not depend on the share of the cores that the contender got."""

import threading
import time
from urllib.parse import urlsplit

import psutil


def tree_cpu_s(pid: int) -> float:
    """User + system CPU of a process and all its descendants, with the children it has
    reaped already (PostgreSQL's ended backends, a prefork pool's replaced children)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def listening_pid(port: int) -> int | None:
    """The process listening on this TCP port of this machine (a server's main process)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return conn.pid
    return None


def server_pids(database_url: str, amqp_url: str) -> dict[str, int]:
    """The main processes of the PostgreSQL and the RabbitMQ that these URLs name."""
    found = {}
    for name, url, default in (("postgresql", database_url, 5432), ("rabbitmq", amqp_url, 5672)):
        pid = listening_pid(urlsplit(url.split(",")[0]).port or default)
        if pid is not None:
            found[name] = pid
    return found


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named tree."""
    return {name: tree_cpu_s(pid) for name, pid in pids.items()}


def per_task_ms(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """CPU milliseconds a task of each tree between two `cpu_of` readings."""
    return {name: round((after[name] - before[name]) * 1000 / n, 3) for name in before}


class CoreSampler:
    """The machine's cores' use, read every 0.1 s on a thread while a round runs, so that the
    busy share of a window known only afterwards (the first submission to the last completion,
    as the round reports it) can be taken: issue 22 asks for the cores >= 90 % busy in a
    saturated run, and a round's wall time includes the client's start and its polling."""

    def __init__(self, every_s: float = 0.1) -> None:
        self.every_s = every_s
        self.samples: list[tuple[float, float, float]] = []  # (epoch s, busy s, total s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="core-sampler", daemon=True)

    def __enter__(self) -> "CoreSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            t = psutil.cpu_times()
            idle = t.idle + getattr(t, "iowait", 0.0)
            total = sum(t)
            self.samples.append((time.time(), total - idle, total))
            if self._stop.wait(self.every_s):
                return

    def busy_pct(self, window: tuple[float, float] | list[float] | None) -> float | None:
        """The share of all cores' time that was busy (any process, not only ours: on a
        quiet machine that is the contender and its servers) between the first sample at or
        after the window's start and the last at or before its end."""
        if not window:
            return None
        inside = [s for s in self.samples if window[0] <= s[0] <= window[1]]
        if len(inside) < 2 or inside[-1][2] <= inside[0][2]:
            return None
        busy = inside[-1][1] - inside[0][1]
        return round(100 * busy / (inside[-1][2] - inside[0][2]), 1)
