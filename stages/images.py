"""Image folders (one sub-folder per class): listing, checking and decoding.

Files of any size, grey or colour, 8 or 16 bits, become uint8 arrays of the configured size and
channels. Files the operating system leaves behind are skipped (stages/files.py).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageMode, UnidentifiedImageError

from stages.config import ImageSpec
from stages.errors import PipelineError
from stages.files import is_hidden

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def list_image_folder(root: Path) -> dict[str, list[Path]]:
    """Class name → sorted image files; at least two classes, none empty, nothing else inside."""
    if not root.is_dir():
        raise PipelineError(f"{root}: no such folder (expected one sub-folder per class)")
    classes: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if is_hidden(entry.name):
            continue
        if not entry.is_dir():
            raise PipelineError(f"{entry}: expected only class sub-folders in {root}")
        files = []
        for f in sorted(entry.iterdir()):
            if is_hidden(f.name):
                continue
            if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
                raise PipelineError(
                    f"{f}: not an image file (allowed: {', '.join(IMAGE_SUFFIXES)})"
                )
            files.append(f)
        if not files:
            raise PipelineError(f"{entry}: class '{entry.name}' has no images")
        classes[entry.name] = files
    if len(classes) < 2:
        raise PipelineError(
            f"{root}: found {len(classes)} class folder(s) {sorted(classes)}; need at least two"
        )
    return classes


def check_image(path: Path, max_pixels: int) -> None:
    """Cheap header-and-structure check (no full decode), for ingest's validation pass."""
    try:
        with _open(path, max_pixels) as img:
            img.verify()
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise PipelineError(f"{path}: unreadable image: {exc}") from None
    except PipelineError as exc:
        raise PipelineError(f"{path}: {exc}") from None


def load_image(path: Path, spec: ImageSpec) -> np.ndarray:
    """Fully decode `path` (so truncation is caught) into uint8 of shape (H, W, channels)."""
    try:
        with _open(path, spec.max_pixels) as img:
            img.load()
            return conform(img, spec)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise PipelineError(f"{path}: unreadable or truncated image: {exc}") from None
    except PipelineError as exc:
        raise PipelineError(f"{path}: {exc}") from None


def _open(path: Path, max_pixels: int) -> Image.Image:
    """`path` opened (its header read) when it has at most `max_pixels` pixels.

    A small file can decode to gigabytes (a decompression bomb). PIL's own guard is a
    process-wide setting that only warns up to twice its limit; the dataset's
    `image.max_pixels` decides instead, and exceeding it is an error.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError:
        raise PipelineError(
            f"more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, which PIL refuses to decode "
            "(a decompression bomb?)"
        ) from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise PipelineError(
            f"{width}×{height} = {width * height:,} pixels, more than image.max_pixels "
            f"({max_pixels:,}): a decompression bomb, or raise the limit in params.yaml"
        )
    return img


def conform(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """One image to the configured channels and size: prepare and the served model share it."""
    img = _eight_bit(img).convert("L" if spec.channels == 1 else "RGB")
    height, width = spec.size
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).reshape(height, width, spec.channels)


def _eight_bit(img: Image.Image) -> Image.Image:
    """`img` with 8 bits per channel. PIL's convert() clips wider grey values at 255, so a
    16-bit PNG (mode I;16, or I) would turn white: scale 0..65535 to 0..255 instead."""
    if ImageMode.getmode(img.mode).typestr[1:] in ("u1", "b1"):
        return img
    if img.mode == "I" or img.mode.startswith("I;16"):
        values = np.asarray(img)
        if values.min() < 0 or values.max() > 65535:
            raise PipelineError(
                f"{img.mode} pixels in {values.min()}..{values.max()}; only 8-bit and 16-bit "
                "(0..65535) images are supported"
            )
        return Image.fromarray(np.rint(values / 257.0).astype(np.uint8), "L")
    raise PipelineError(
        f"pixel format {img.mode} is not supported; save the image with 8 or 16 bits per channel"
    )
