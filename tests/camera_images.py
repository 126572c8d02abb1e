"""Images for the camera tests, made with Pillow: frames with a square, a bomb, a truncated JPEG."""

import io
import struct
import zlib

from PIL import Image, ImageDraw

SIZE = (320, 240)
BACKGROUND = 40
SQUARE = 60


def frame(square_x: int | None = 40, *, fmt: str = "JPEG", size: tuple[int, int] = SIZE) -> bytes:
    """A dark frame with a white square at (square_x, 90) (none if square_x is None)."""
    image = Image.new("RGB", size, (BACKGROUND, BACKGROUND, BACKGROUND))
    if square_x is not None:
        ImageDraw.Draw(image).rectangle(
            (square_x, 90, square_x + SQUARE, 90 + SQUARE), fill=(250, 250, 250)
        )
    out = io.BytesIO()
    options = {"quality": 90} if fmt == "JPEG" else {}
    image.save(out, format=fmt, **options)
    return out.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header announcing width x height pixels, with a few bytes of data.

    Decoding it would take width*height bytes of memory; a safe decoder refuses it from the
    header alone.
    """
    png = io.BytesIO()
    Image.new("L", (1, 1)).save(png, format="PNG")
    data = bytearray(png.getvalue())
    # The IHDR chunk follows the 8-byte signature: length(4) type(4) width(4) height(4) ...
    ihdr_at = 8
    assert data[ihdr_at + 4 : ihdr_at + 8] == b"IHDR"
    body = bytearray(data[ihdr_at + 4 : ihdr_at + 8 + 13])
    body[4:12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(body)) & 0xFFFFFFFF
    data[ihdr_at + 4 : ihdr_at + 8 + 13] = body
    data[ihdr_at + 8 + 13 : ihdr_at + 8 + 17] = struct.pack(">I", crc)
    return bytes(data)


def noisy_jpeg(size: tuple[int, int] = SIZE) -> bytes:
    """A JPEG whose entropy-coded data is long (noise compresses badly)."""
    image = Image.effect_noise(size, 80).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95)
    return out.getvalue()


def truncated_jpeg() -> bytes:
    """A valid JPEG cut in the middle of its image data."""
    whole = noisy_jpeg()
    return whole[: len(whole) // 2]
