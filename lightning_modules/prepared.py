"""The prepare stage's folder, read with NumPy alone: `meta.json` and each split's arrays.

Kept apart from the DataModule so that what only reads the prepared data (baselines, register)
does not import Lightning, which costs seconds per process.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def read_meta(root: Path) -> dict:
    return json.loads((root / "meta.json").read_text())


def load_split(root: Path, split: str) -> tuple[np.ndarray, ...]:
    """(x, [lengths,] y) of one split, memory-mapped."""
    names = ["x", "len", "y"] if (root / f"len_{split}.npy").exists() else ["x", "y"]
    return tuple(np.load(root / f"{n}_{split}.npy", mmap_mode="r") for n in names)
