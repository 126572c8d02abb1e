"""Bootstrap of camera-worker: the frame handler, and the capture scheduler beside it."""

import warnings
from functools import partial

from PIL import Image

from camera_worker.handlers import handle_frame
from camera_worker.scheduler import CaptureScheduler
from camera_worker.settings import CameraWorkerSettings
from taskfleet.core.supervisor import CoroFactory
from taskfleet.handler import QUEUES, Handler, Kernel, TaskType, run_worker
from taskfleet.path.slots import SlotRange

SPEC = QUEUES[TaskType.CAMERA]


def make_handler(kernel: Kernel) -> Handler:
    """The frame handler; it first sets Pillow's process-wide pixel limit to CAMERA_MAX_PIXELS."""
    # Pillow's own guard agrees with ours, and its warning (between 1x and 2x the limit) is
    # an error too; analysis.decode checks the pixel count itself as well.
    Image.MAX_IMAGE_PIXELS = CameraWorkerSettings.of(kernel.settings).camera_max_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    return partial(handle_frame, kernel=kernel)


def background(kernel: Kernel) -> list[tuple[str, CoroFactory]]:
    """The capture scheduler, run by the kernel's supervisor beside the handlers."""
    # Every replica runs the loop; the advisory lock lets exactly one of them schedule.
    return [("camera-scheduler", CaptureScheduler(kernel).run)]


async def main(settings: CameraWorkerSettings, slots: SlotRange) -> None:
    """Run camera-worker (`taskfleet worker camera`) until SIGTERM/SIGINT."""
    await run_worker(settings, SPEC, make_handler, slots=slots, background=background)
