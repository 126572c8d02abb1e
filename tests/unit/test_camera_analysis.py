"""camera_worker.analysis: the figures of a frame, motion between frames, and hostile images."""

import io
from typing import Any

import pytest
from PIL import Image, ImageFilter

from camera_worker.analysis import (
    SIGNATURE_SIDE,
    DecompressionBomb,
    InvalidImage,
    analyse,
    motion_score,
)
from tests.camera_images import bomb_png, frame, noisy_jpeg, truncated_jpeg

LIMITS: dict[str, Any] = {"max_pixels": 25_000_000, "thumbnail_px": 160}


def png_of(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class TestFigures:
    def test_brightness_goes_from_black_to_white(self) -> None:
        black = analyse(png_of(Image.new("L", (50, 40), 0)), **LIMITS)
        white = analyse(png_of(Image.new("L", (50, 40), 255)), **LIMITS)
        grey = analyse(png_of(Image.new("L", (50, 40), 128)), **LIMITS)
        assert (black.brightness, white.brightness) == (0.0, 1.0)
        assert grey.brightness == pytest.approx(128 / 255)

    def test_a_blurred_frame_is_less_sharp(self) -> None:
        sharp = Image.open(io.BytesIO(noisy_jpeg()))
        blurred = sharp.filter(ImageFilter.GaussianBlur(4))
        assert analyse(png_of(blurred), **LIMITS).sharpness < (
            analyse(png_of(sharp), **LIMITS).sharpness / 10
        )

    def test_size_format_and_a_small_jpeg_thumbnail(self) -> None:
        big = analyse(frame(40, size=(1280, 720), fmt="PNG"), **LIMITS)
        assert (big.width, big.height, big.format) == (1280, 720, "PNG")
        thumb = Image.open(io.BytesIO(big.thumbnail))
        assert thumb.format == "JPEG"
        assert thumb.size == (160, 90)  # the longest side bounded, the aspect kept
        assert len(big.thumbnail) < 10_000
        assert len(big.signature) == SIGNATURE_SIDE**2


class TestMotion:
    def test_a_moved_square_is_motion_and_the_same_frame_is_none(self) -> None:
        before = analyse(frame(40), **LIMITS).signature
        after = analyse(frame(200), **LIMITS).signature
        assert motion_score(before, after) == pytest.approx(0.1, abs=0.05)
        assert motion_score(after, analyse(frame(200), **LIMITS).signature) == 0.0

    def test_a_change_of_the_whole_scene_brightness_is_not_motion(self) -> None:
        dim = analyse(png_of(Image.new("L", (64, 64), 60)), **LIMITS).signature
        bright = analyse(png_of(Image.new("L", (64, 64), 160)), **LIMITS).signature
        assert motion_score(dim, bright) == 0.0

    def test_signatures_of_another_size_are_incomparable(self) -> None:
        assert motion_score(b"\x00" * 16, b"\x00" * 32) is None


class TestHostileImages:
    def test_a_decompression_bomb_is_refused_from_its_header(self) -> None:
        with pytest.raises(DecompressionBomb) as info:
            analyse(bomb_png(100_000, 100_000), **LIMITS)
        assert info.value.retryable is False

    def test_more_pixels_than_the_setting_is_a_bomb_even_below_pillows_limit(self) -> None:
        with pytest.raises(DecompressionBomb, match="6000x5000"):
            analyse(bomb_png(6000, 5000), **LIMITS)

    @pytest.mark.parametrize(
        "data", [truncated_jpeg(), b"GIF89a" + b"\x00" * 40, b"", frame(40)[:20]]
    )
    def test_truncated_or_foreign_images_are_invalid(self, data: bytes) -> None:
        with pytest.raises(InvalidImage) as info:
            analyse(data, **LIMITS)
        assert info.value.code == "invalid_image"
        assert info.value.retryable is False

    def test_other_formats_are_not_even_tried(self) -> None:
        gif = io.BytesIO()
        Image.new("RGB", (8, 8)).save(gif, format="GIF")
        with pytest.raises(InvalidImage, match="not a JPEG or PNG"):
            analyse(gif.getvalue(), **LIMITS)
