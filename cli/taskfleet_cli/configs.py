"""Which settings class each process loads (the kernel's, or a service's own over it), and
a worker's slots."""

import argparse

from camera_worker.settings import CameraWorkerSettings
from chat_worker.settings import ChatWorkerSettings
from doc_worker.settings import DocWorkerSettings
from fleet_api.settings import ApiSettings
from taskfleet.core.constants import QUEUE_BY_WORKER
from taskfleet.core.errors import ConfigError
from taskfleet.core.settings import Settings
from taskfleet.path.slots import SlotRange
from tool_worker.settings import ToolWorkerSettings

# Worker name (`taskfleet worker NAME`) -> its settings.
WORKER_SETTINGS: dict[str, type[Settings]] = {
    "chat": ChatWorkerSettings,
    "camera": CameraWorkerSettings,
    "doc": DocWorkerSettings,
    "tool": ToolWorkerSettings,
}

# Service -> its own settings class, after the kernel's (docs/configuration.md's order).
SERVICE_SETTINGS: dict[str, type[Settings]] = {
    "api": ApiSettings,
    **{f"{name}-worker": cls for name, cls in WORKER_SETTINGS.items()},
}


def settings_class(args: argparse.Namespace) -> type[Settings]:
    """A service reads its own variables too; every other command only the kernel's, so that a
    bad value of a service's variable stops only that service."""
    if args.command == "api":
        return ApiSettings
    if args.command == "worker":
        return WORKER_SETTINGS[args.name]
    return Settings


def worker_slots(settings: Settings, worker: str, flag: int | None) -> SlotRange:
    """A worker's slots: --concurrency, else WORKER_CONCURRENCY, fixed; else its queue's own,
    adapting at run time up to the queue's most (taskfleet.path.slots)."""
    if flag is not None and flag < 1:
        raise ConfigError(f"--concurrency: must be at least 1 (got {flag})")
    if fixed := flag or settings.worker_concurrency:
        return SlotRange.fixed(fixed)
    spec = QUEUE_BY_WORKER[worker]
    return SlotRange(spec.concurrency, spec.max_concurrency)
