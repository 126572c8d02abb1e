"""Frame analysis with Pillow and numpy: pure functions, run off the event loop by the handler.

Every image is untrusted input. Only the JPEG and PNG decoders are ever tried, the pixel count
is checked from the header before anything is decoded (a decompression bomb costs nothing),
and a truncated or corrupt file is an error, never a half-decoded picture.
"""

import io
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from taskfleet.handler import PermanentError

FORMATS = ("JPEG", "PNG")

# Motion is measured on a small grey copy of each frame: cheap to keep per frame, and the
# averaging over each cell drowns sensor noise and JPEG artefacts.
SIGNATURE_SIDE = 64
# A cell whose grey level moved by less than this (of 255) is noise or compression, not motion.
PIXEL_DELTA = 25.0
# Sharpness is measured at most at this size, so its cost is bounded whatever the resolution.
SHARPNESS_SIDE = 1024
THUMBNAIL_QUALITY = 70

DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


class InvalidImage(PermanentError):
    """Not a decodable JPEG or PNG (truncated, corrupt, another format): it will not improve."""

    code = "invalid_image"


class DecompressionBomb(PermanentError):
    """More pixels than CAMERA_MAX_PIXELS: refused before decoding."""

    code = "decompression_bomb"


@dataclass(frozen=True, slots=True)
class FrameAnalysis:
    width: int
    height: int
    format: str
    brightness: float  # mean grey level, 0 (black) .. 1 (white)
    sharpness: float  # variance of the Laplacian of the grey image; higher is sharper
    signature: bytes  # SIGNATURE_SIDE² grey levels, compared by motion_score
    thumbnail: bytes  # JPEG, longest side at most thumbnail_px


def decode(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode a JPEG or PNG fully, or raise InvalidImage / DecompressionBomb."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        width, height = image.size
        # Our own check, not only Pillow's global MAX_IMAGE_PIXELS: it only warns between 1x
        # and 2x its limit, and warning filters are process-wide, not per thread.
        if width * height > max_pixels:
            raise DecompressionBomb(
                f"{width}x{height} is {width * height} pixels, more than the {max_pixels} allowed"
            )
        image.load()  # a truncated file raises here (ImageFile.LOAD_TRUNCATED_IMAGES is off)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecompressionBomb(str(exc)) from None
    except UnidentifiedImageError:
        raise InvalidImage("not a JPEG or PNG image") from None
    except DECODE_ERRORS as exc:
        raise InvalidImage(f"not a decodable JPEG or PNG: {exc}") from None
    return image


def analyse(data: bytes, *, max_pixels: int, thumbnail_px: int) -> FrameAnalysis:
    """Brightness, sharpness, the motion signature and a thumbnail of one frame. CPU-bound."""
    image = decode(data, max_pixels=max_pixels)
    fmt = image.format or "unknown"
    gray = image.convert("L")
    brightness = float(np.asarray(gray, dtype=np.float32).mean()) / 255.0
    signature = gray.resize((SIGNATURE_SIDE, SIGNATURE_SIDE), Image.Resampling.BOX).tobytes()
    return FrameAnalysis(
        width=image.width,
        height=image.height,
        format=fmt,
        brightness=brightness,
        sharpness=sharpness(gray),
        signature=signature,
        thumbnail=thumbnail(image, thumbnail_px),
    )


def sharpness(gray: Image.Image) -> float:
    """Variance of the 4-neighbour Laplacian: edges make it large, blur makes it small."""
    if max(gray.size) > SHARPNESS_SIDE:
        gray = gray.copy()
        gray.thumbnail((SHARPNESS_SIDE, SHARPNESS_SIDE), Image.Resampling.BILINEAR)
    a: npt.NDArray[np.float32] = np.asarray(gray, dtype=np.float32)
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    lap = a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] - 4.0 * a[1:-1, 1:-1]
    return float(lap.var())


def thumbnail(image: Image.Image, side: int) -> bytes:
    """The frame as a JPEG, its longest side at most `side` px (never enlarged): what is kept
    of it once analysed."""
    small = image.convert("RGB")  # PNG may be palette, grey, 16-bit or have alpha
    small.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return out.getvalue()


def motion_score(previous: bytes, current: bytes) -> float | None:
    """The fraction (0..1) of the frame that changed since `previous`; None if incomparable.

    Each signature is centred on its own mean first, so that a change of the whole scene's
    brightness (auto-exposure, a cloud) is not taken for motion.
    """
    if len(previous) != len(current) or not current:
        return None
    a = np.frombuffer(previous, dtype=np.uint8).astype(np.float32)
    b = np.frombuffer(current, dtype=np.uint8).astype(np.float32)
    changed = np.abs((b - b.mean()) - (a - a.mean())) > PIXEL_DELTA
    return float(changed.mean())
