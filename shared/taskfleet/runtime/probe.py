"""`python -m taskfleet.runtime.probe`: the HEALTHCHECK of the one image (deploy/Dockerfile).

The image runs every service, chosen by its command. The probe reads that command from PID 1
(`taskfleet api ...` or `taskfleet worker NAME ...`, behind tini or not), finds the port on
which that process serves `/healthz` the way the process itself does (`--port`, else
API_PORT; METRICS_PORT, else the worker's default), and exits 0 when it answers 200. A
one-shot command (migrate, cleanup) has nothing to serve and is healthy while it runs.
"""

import sys
import urllib.request
from pathlib import Path

from taskfleet.core.constants import QUEUE_BY_WORKER
from taskfleet.core.settings import Settings, load_settings

TIMEOUT_S = 3.0


def command_of(argv: list[str]) -> list[str]:
    """The taskfleet arguments in a command line (`taskfleet ARGS` or `python -m taskfleet_cli
    ARGS`, after tini)."""
    for i, token in enumerate(argv):
        if Path(token).name in ("taskfleet", "taskfleet_cli"):
            return argv[i + 1 :]
    return []


def health_port(args: list[str], settings: Settings) -> int | None:
    """The port of `/healthz` for `taskfleet ARGS`; None when the command serves none."""
    if args[:1] == ["api"]:
        for i, arg in enumerate(args):
            if arg == "--port" and i + 1 < len(args):
                return int(args[i + 1])
            if arg.startswith("--port="):
                return int(arg.split("=", 1)[1])
        return settings.api_port
    if args[:1] == ["worker"] and len(args) > 1 and args[1] in QUEUE_BY_WORKER:
        if settings.metrics_port is not None:
            return settings.metrics_port
        return QUEUE_BY_WORKER[args[1]].metrics_port
    return None


def main(cmdline: Path = Path("/proc/1/cmdline")) -> int:
    """Exit status of the healthcheck for the command in `cmdline` (PID 1's by default)."""
    argv = cmdline.read_bytes().decode().split("\0")
    port = health_port(command_of(argv), load_settings())
    if port is None:
        return 0
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT_S) as r:
            return 0 if r.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: http://127.0.0.1:{port}/healthz: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
