"""Image folders (one sub-folder per class): listing, checking and decoding.

Files of any size, grey or colour, become uint8 arrays of the configured size and channels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stages.config import ImageSpec
from stages.errors import PipelineError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def list_image_folder(root: Path) -> dict[str, list[Path]]:
    """Class name → sorted image files; at least two classes, none empty, nothing else inside."""
    if not root.is_dir():
        raise PipelineError(f"{root}: no such folder (expected one sub-folder per class)")
    classes: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            raise PipelineError(f"{entry}: expected only class sub-folders in {root}")
        files = []
        for f in sorted(entry.iterdir()):
            if f.name.startswith("."):
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


def check_image(path: Path) -> None:
    """Cheap header-and-structure check (no full decode), for ingest's validation pass."""
    try:
        with Image.open(path) as img:
            img.verify()
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise PipelineError(f"{path}: unreadable image: {exc}") from None


def load_image(path: Path, spec: ImageSpec) -> np.ndarray:
    """Fully decode `path` (so truncation is caught) into uint8 of shape (H, W, channels)."""
    try:
        with Image.open(path) as img:
            img.load()
            return conform(img, spec)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise PipelineError(f"{path}: unreadable or truncated image: {exc}") from None


def conform(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """One image to the configured channels and size: prepare and the served model share it."""
    img = img.convert("L" if spec.channels == 1 else "RGB")
    height, width = spec.size
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).reshape(height, width, spec.channels)
