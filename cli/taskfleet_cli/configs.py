"""Which settings class each process loads: the kernel's, or a service's own over it."""

import argparse

from camera_worker.settings import CameraWorkerSettings
from chat_worker.settings import ChatWorkerSettings
from doc_worker.settings import DocWorkerSettings
from fleet_api.settings import ApiSettings
from taskfleet.core.settings import Settings
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
