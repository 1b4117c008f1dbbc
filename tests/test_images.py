"""Decoding image files: 16-bit pixels, the pixel limit, and the files that are not data."""

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from stages.config import ImageSpec
from stages.errors import PipelineError
from stages.files import is_hidden
from stages.images import check_image, conform, load_image

GREY = ImageSpec(size=(8, 8), channels=1)


def write_png_header(path, width: int, height: int):
    """A PNG that declares `width` × `height` grey pixels but holds one row: a decompression
    bomb's header, without the memory that a real one would take to write."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize(
    ("name", "hidden"),
    [
        (".DS_Store", True),
        ("._cat.png", True),
        (".ipynb_checkpoints", True),
        ("Thumbs.db", True),
        ("thumbs.db", True),
        ("desktop.ini", True),
        ("Desktop.ini", True),
        ("cat.png", False),
        ("Thumbs.db.png", False),
    ],
)
def test_hidden_and_os_files(name, hidden):
    assert is_hidden(name) is hidden


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_grey_is_scaled_not_clipped(mode):
    eight = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    wide = eight.astype(np.uint32) * 257  # the same picture in 0..65535
    img = Image.fromarray(wide.astype(np.int32), "I")
    img = img if mode == "I" else img.convert(mode)
    assert img.mode == mode
    np.testing.assert_array_equal(conform(img, GREY)[..., 0], eight)


def test_sixteen_bit_png_file_is_scaled(tmp_path):
    eight = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode == "I;16"
    np.testing.assert_array_equal(load_image(tmp_path / "deep.png", GREY)[..., 0], eight)


@pytest.mark.parametrize(
    ("img", "message"),
    [
        (Image.fromarray(np.full((8, 8), 70_000, np.int32), "I"), r"I pixels in 70000\.\.70000"),
        (Image.fromarray(np.full((8, 8), 0.5, np.float32), "F"), "pixel format F is not supported"),
    ],
)
def test_pixels_without_a_faithful_conversion_are_refused(img, message):
    with pytest.raises(PipelineError, match=message):
        conform(img, GREY)


def test_more_pixels_than_max_pixels_names_the_file(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    spec = GREY.model_copy(update={"max_pixels": 63})
    message = r"a.png: 8×8 = 64 pixels, more than image.max_pixels \(63\)"
    with pytest.raises(PipelineError, match=message):
        load_image(tmp_path / "a.png", spec)
    with pytest.raises(PipelineError, match=message):
        check_image(tmp_path / "a.png", 63)


def test_pixel_limit_is_the_params_not_pil_global(tmp_path):
    """Above PIL's own limit but within image.max_pixels: no DecompressionBombWarning (PIL's
    process-wide guard), and PIL's setting stays as it was."""
    before = Image.MAX_IMAGE_PIXELS
    bomb = write_png_header(tmp_path / "big.png", 10_000, 9_000)  # 90 M > PIL's 89.5 M
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_image(bomb, 100_000_000)
    assert before == Image.MAX_IMAGE_PIXELS
