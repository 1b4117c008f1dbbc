"""Raw input ↔ model input, from a dataset's `meta.json`: what the served model applies.

Raw input is what a user has, of any numeric type (uint8 pixels from PIL, int or float32
series, or JSON numbers):
- images: an array (N, H, W) or (N, H, W, C) of pixels in 0..255, any size, C 1 (grey),
  2 (grey + alpha), 3 (RGB) or 4 (RGBA); each image is converted to the channels and size the
  model was trained on, exactly as `prepare` did;
- sequences: an array (N, T, C) of numbers, any T, where the rows after a series' end
  are NaN (so series of different lengths travel in one array); with `per_series`
  normalisation (params: `sequence.normalize: series`) each series becomes its shape and its
  own level and scale (`per_series`), as `prepare` made them.
Bad input is a PipelineError with one line that names what is expected, never the input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from stages.config import ImageSpec
from stages.errors import PipelineError
from stages.images import conform

# The most numbers one call takes (80 MB as float64): a request to the scoring server, which
# MLflow does not bound by size, cannot make the model allocate more than that.
MAX_INPUT_VALUES = 10_000_000
# PIL's mode for pixels with this many channels, as np.asarray(PIL image) gives them.
PIXEL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def to_model_input(raw: object, meta: dict) -> tuple[np.ndarray, ...]:
    """(x,) for images, (x, lengths) for sequences, float32 and normalised."""
    try:
        array = np.asarray(raw)
        if array.size > MAX_INPUT_VALUES:
            raise PipelineError(
                f"input has {array.size:,} values; at most {MAX_INPUT_VALUES:,} per call "
                "(send it in parts)"
            )
        array = array.astype(np.float64)
    except (TypeError, ValueError):
        raise PipelineError("input must be numeric: a rectangular array of numbers") from None
    if array.size == 0:
        raise PipelineError("input is empty")
    return _images(array, meta) if meta["kind"] == "image" else _sequences(array, meta)


def _images(array: np.ndarray, meta: dict) -> tuple[np.ndarray]:
    channels, height, width = meta["input_shape"]
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in PIXEL_MODES:
        raise PipelineError(
            f"images must have shape (N, H, W) or (N, H, W, C) with C 1 to 4 (grey, grey+alpha, "
            f"RGB, RGBA), any H and W; got {array.shape} (the model converts them to "
            f"{height}×{width} with {channels} channel(s))"
        )
    if not np.isfinite(array).all():
        raise PipelineError("pixel values must be numbers in 0..255; got NaN or infinity")
    low, high = array.min(), array.max()
    if low < 0 or high > 255:
        raise PipelineError(
            f"pixel values must lie in 0..255; got {low:g}..{high:g} (scale 16-bit pixels "
            "by 255/65535 first)"
        )
    pixels = np.rint(array).astype(np.uint8)
    if pixels.shape[1:] != (height, width, channels):
        spec = ImageSpec(size=(height, width), channels=channels)
        mode = PIXEL_MODES[pixels.shape[-1]]
        pixels = np.stack(
            [
                conform(Image.fromarray(p.squeeze(-1) if mode == "L" else p, mode), spec)
                for p in pixels
            ]
        )
    norm = meta["normalization"]
    x = pixels.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(norm["scale"])
    mean = np.asarray(norm["mean"], dtype=np.float64)[None, :, None, None]
    std = np.asarray(norm["std"], dtype=np.float64)[None, :, None, None]
    return (((x - mean) / std).astype(np.float32),)


def _sequences(array: np.ndarray, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    channels = meta["channels"]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[-1] != channels:
        raise PipelineError(
            f"sequences must have shape (N, T, {channels}) (NaN rows after each end); "
            f"got {array.shape}"
        )
    padding = np.isnan(array).all(axis=2)
    lengths = (~padding).sum(axis=1)
    steps = np.arange(array.shape[1])[None, :]
    if (lengths == 0).any():
        raise PipelineError(f"series {_some(np.flatnonzero(lengths == 0))} have no values")
    misplaced = padding != (steps >= lengths[:, None])  # a NaN row before the end
    non_finite = ~padding & ~np.isfinite(array).all(axis=2)  # a NaN or inf inside a row
    bad = np.flatnonzero((misplaced | non_finite).any(axis=1))
    if bad.size:
        raise PipelineError(
            f"series {_some(bad)} have NaN or infinite values before their end (only whole "
            "rows after a series' end may be NaN)"
        )
    norm = meta["normalization"]
    if norm.get("per_series"):
        array, _ = per_series(np.where(padding[..., None], np.nan, array))
    mean, std = np.asarray(norm["mean"]), np.asarray(norm["std"])
    x = np.where(padding[..., None], 0.0, (array - mean) / std).astype(np.float32)
    return x, lengths.astype(np.int64)


def per_series(padded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each series (N, T, C, NaN after its end) as its shape, z-normalised per channel over its
    own steps, followed by its level and scale (mean and log deviation per channel) as 2·C
    channels constant over its steps: (N, T, 3·C), NaN after each end; and the statistics,
    `series_stats`. The shape makes series of any offset and amplitude comparable; the level
    and scale keep what they tell apart (a speaker's spectral envelope, an appliance's power)."""
    stats = series_stats(padded)
    shape = (padded - stats[:, :1]) / stats[:, 1:]
    summary = np.concatenate([stats[:, 0], np.log(stats[:, 1])], axis=1)[:, None, :]
    ended = np.isnan(shape[..., :1])
    return np.concatenate([shape, np.where(ended, np.nan, summary)], axis=2), stats


def series_stats(padded: np.ndarray) -> np.ndarray:
    """(N, 2, C) float64: each series' mean and standard deviation per channel over its own
    steps (rows after its end are NaN); a constant channel's deviation is 1, so it is only
    centred. `prepare` and the served model normalise with these, so they agree."""
    mean = np.nanmean(padded, axis=1, dtype=np.float64)
    std = np.nanstd(padded, axis=1, dtype=np.float64)
    return np.stack([mean, np.where(std > 0, std, 1.0)], axis=1)


def _some(indices: np.ndarray, shown: int = 10) -> str:
    """The first few indices, so that a message stays one short line however many are bad."""
    head = str(indices[:shown].tolist())
    return head if len(indices) <= shown else f"{head[:-1]}, ... ({len(indices)} in all)]"


def raw_from_prepared(root: Path, meta: dict, split: str = "test") -> np.ndarray:
    """The raw input a user would send for a prepared split (normalisation undone).

    Used to measure a model trained on other data, whose own preprocessing differs, on the
    current split.
    """
    x = np.load(root / f"x_{split}.npy").astype(np.float64)
    norm = meta["normalization"]
    mean, std = np.asarray(norm["mean"]), np.asarray(norm["std"])
    if meta["kind"] == "image":
        pixels = (x * std[None, :, None, None] + mean[None, :, None, None]) / norm["scale"]
        pixels = np.rint(pixels).clip(0, 255).transpose(0, 2, 3, 1)
        return pixels[..., 0] if meta["channels"] == 1 else pixels  # grey: (N, H, W)
    lengths = np.load(root / f"len_{split}.npy")
    channels = meta["channels"]  # the raw series' own: the first, shape channels in series mode
    raw = x[..., :channels] * std[:channels] + mean[:channels]
    if norm.get("per_series"):
        stats = np.load(root / f"series_stats_{split}.npy")
        raw = raw * stats[:, 1:] + stats[:, :1]
    raw[np.arange(x.shape[1])[None, :] >= lengths[:, None]] = np.nan
    return raw
