"""Stage `prepare@<dataset>`: all raw-to-tensor work, done once.

Reads `datasets.<name>` of params.yaml and the raw files at `datasets.<name>.path`.
Writes `<paths.prepared>/<name>/`:
- `x_<split>.npy` float32, normalised with train-split statistics (sequences optionally per
  series first): images (N, C, H, W),
  sequences (N, T, C), or (N, T, 3·C) per series, zero-padded to the longest series of all
  splits;
- `y_<split>.npy` int64 class indices; `len_<split>.npy` int64 series lengths (sequences);
- `series_stats_<split>.npy` float64 (N, 2, C), with `sequence.normalize: series`: each
  series' own mean and deviation per channel (stages/preprocess.py `per_series`: the series'
  z-normalised shape, then its level and scale as 2·C more channels, then the train-split
  statistics);
- `files_<split>.txt` (image datasets): each example's file, relative to the raw folder;
- `meta.json`: classes, input shape, normalisation statistics, counts per split and class,
  a fingerprint of the raw files and one of the test split alone (to tell whether a model
  measured earlier was measured on the same test set).
The same inputs and params give byte-identical outputs, so `dvc.lock` stays put on re-runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from stages.atomic import atomic_dir, write_json
from stages.config import DatasetConfig, SequenceSpec, load_params
from stages.errors import PipelineError, cli, item_name
from stages.files import visible_files
from stages.images import list_image_folder, load_image
from stages.preprocess import per_series
from stages.tsfile import find_pair, read_ts

SPLITS = ("train", "val", "test")
# A level channel spreading less than this fraction of a typical series' deviation over the
# train split, or a scale channel less than this in log units, is constant.
CONSTANT = 1e-4


def run(name: str, ds: DatasetConfig, out: Path) -> dict:
    """Prepare dataset `name` into `out` (atomically); return its meta.json content."""
    arrays, meta = _prepare_images(ds) if ds.kind == "image" else _prepare_sequences(ds)
    meta |= {
        "dataset": name,
        "source": ds.source,
        "kind": ds.kind,
        "raw_fingerprint": fingerprint(ds.path),
        "counts": {split: _counts(arrays[f"y_{split}"], meta["classes"]) for split in SPLITS},
    }
    with atomic_dir(out) as tmp:
        for key, array in arrays.items():
            if key.startswith("files_"):
                (tmp / f"{key}.txt").write_text("".join(f"{f}\n" for f in array))
            else:
                np.save(tmp / f"{key}.npy", array, allow_pickle=False)
        write_json(tmp / "meta.json", meta)
    return meta


def _prepare_images(ds: DatasetConfig) -> tuple[dict[str, np.ndarray], dict]:
    assert ds.image is not None  # config.py requires it for image sources
    folder = list_image_folder(ds.path)
    classes = list(folder)
    files = [f for c in classes for f in folder[c]]
    labels = np.array([i for i, c in enumerate(classes) for _ in folder[c]], dtype=np.int64)
    idx = _split_indices(labels, ds, classes)
    pixels = np.stack([load_image(f, ds.image) for f in files])  # (N, H, W, C) uint8
    x = pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    mean = x[idx["train"]].mean(axis=(0, 2, 3), dtype=np.float64)
    std = x[idx["train"]].std(axis=(0, 2, 3), dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    x = ((x - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
    arrays: dict = {}
    for split in SPLITS:
        arrays[f"x_{split}"] = np.ascontiguousarray(x[idx[split]])
        arrays[f"y_{split}"] = labels[idx[split]]
        arrays[f"files_{split}"] = [files[i].relative_to(ds.path).as_posix() for i in idx[split]]
    test_files = [files[i] for i in idx["test"]]
    height, width = ds.image.size
    meta = {
        "classes": classes,
        "input_shape": [ds.image.channels, height, width],
        "channels": ds.image.channels,
        # Pixels are scaled to [0, 1] before these statistics are applied.
        "normalization": {"scale": 1 / 255.0, "mean": mean.tolist(), "std": std.tolist()},
        "test_fingerprint": _digest(ds.path, test_files, classes),
    }
    return arrays, meta


def _prepare_sequences(ds: DatasetConfig) -> tuple[dict[str, np.ndarray], dict]:
    train_file, test_file = find_pair(ds.path)
    train, test = read_ts(train_file), read_ts(test_file)
    channels = {s.shape[1] for s in train.series + test.series}
    if len(channels) != 1:
        raise PipelineError(
            f"{test_file}: series have {test.series[0].shape[1]} channels, "
            f"{train_file} has {train.series[0].shape[1]}"
        )
    n_channels = channels.pop()
    expected = ds.sequence.channels if ds.sequence else None
    if expected is not None and n_channels != expected:
        raise PipelineError(
            f"{train_file}: series have {n_channels} channels; params say "
            f"sequence.channels: {expected}"
        )
    unseen = sorted(set(test.labels) - set(train.labels))
    if unseen:
        raise PipelineError(f"{test_file}: test labels {unseen} never occur in {train_file}")
    classes = train.class_labels or sorted(set(train.labels), key=_natural)
    index = {c: i for i, c in enumerate(classes)}
    y_train_all = np.array([index[c] for c in train.labels], dtype=np.int64)
    val_size = ds.split.val
    train_idx, val_idx = _stratified(y_train_all, val_size, ds.split.seed, classes, "val")
    parts = {
        "train": [train.series[i] for i in train_idx],
        "val": [train.series[i] for i in val_idx],
        "test": test.series,
    }
    labels = {
        "train": y_train_all[train_idx],
        "val": y_train_all[val_idx],
        "test": np.array([index[c] for c in test.labels], dtype=np.int64),
    }
    max_length = max(len(s) for s in train.series + test.series)
    padded = {split: _pad(parts[split], max_length, n_channels) for split in SPLITS}
    per_series_mode = (ds.sequence or SequenceSpec()).normalize == "series"
    arrays, norm = _normalise_series(padded, per_series_mode)
    for split in SPLITS:
        arrays[f"len_{split}"] = np.array([len(s) for s in parts[split]], dtype=np.int64)
        arrays[f"y_{split}"] = labels[split]
    meta = {
        "classes": classes,
        "input_shape": [max_length, arrays["x_train"].shape[2]],
        "channels": n_channels,
        "max_length": max_length,
        "normalization": norm,
        "test_fingerprint": _digest(ds.path, [test_file], classes),
    }
    return arrays, meta


def _normalise_series(padded: dict[str, np.ndarray], per_series_mode: bool) -> tuple[dict, dict]:
    """`x_<split>` (and `series_stats_<split>` per series) from the NaN-padded raw splits, and
    the normalisation of meta.json: the train split's mean and deviation per channel."""
    arrays = {}
    channels = padded["train"].shape[2]
    # Below this spread over the train split a channel is constant (float noise is not scaled
    # up): a level or scale shared by every series, as in archives z-normalised already.
    tolerance = np.zeros(channels)
    if per_series_mode:
        for split in SPLITS:
            padded[split], arrays[f"series_stats_{split}"] = per_series(padded[split])
        typical_std = np.median(arrays["series_stats_train"][:, 1], axis=0)
        tolerance = np.concatenate([tolerance, CONSTANT * typical_std, np.full(channels, CONSTANT)])
    steps = padded["train"].reshape(-1, padded["train"].shape[2])
    steps = steps[~np.isnan(steps).all(axis=1)]
    mean, std = steps.mean(axis=0), steps.std(axis=0)
    std = np.where(std > tolerance, std, 1.0)
    for split in SPLITS:
        x = padded[split]
        arrays[f"x_{split}"] = np.where(np.isnan(x), 0.0, (x - mean) / std).astype(np.float32)
    norm = {"per_series": per_series_mode, "mean": mean.tolist(), "std": std.tolist()}
    return arrays, norm


def _pad(series: list[np.ndarray], length: int, channels: int) -> np.ndarray:
    """(N, length, C) float64, NaN after each series' end: `length` is the longest series of
    all splits, so every split has one shape. Written zero-padded after normalisation."""
    out = np.full((len(series), length, channels), np.nan)
    for i, s in enumerate(series):
        out[i, : len(s)] = s
    return out


def _split_indices(labels: np.ndarray, ds: DatasetConfig, classes: list[str]) -> dict:
    assert ds.split.test is not None  # config.py requires it for image sources
    rest, test = _stratified(labels, ds.split.test, ds.split.seed, classes, "test")
    # val is a fraction of the whole dataset, so carve it from the rest accordingly.
    val_of_rest = ds.split.val / (1.0 - ds.split.test)
    train, val = _stratified(labels[rest], val_of_rest, ds.split.seed, classes, "val")
    return {"train": rest[train], "val": rest[val], "test": test}


def _stratified(
    labels: np.ndarray, fraction: float, seed: int, classes: list[str], what: str
) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(len(labels))
    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() < 2:
        small = [classes[i] for i in np.flatnonzero(counts < 2)]
        raise PipelineError(
            f"classes {small} have fewer than two examples: cannot split off {what}"
        )
    try:
        keep, held = train_test_split(idx, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError as exc:
        raise PipelineError(f"cannot split off {what} ({fraction}) stratified: {exc}") from None
    return np.sort(keep), np.sort(held)


def _counts(y: np.ndarray, classes: list[str]) -> dict:
    per_class = np.bincount(y, minlength=len(classes))
    return {"total": int(len(y)), "per_class": dict(zip(classes, per_class.tolist(), strict=True))}


def _natural(label: str) -> tuple:
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def fingerprint(root: Path) -> str:
    """sha256 over every file under `root` (relative path and content), in sorted order.

    Hidden and OS files (`.DS_Store`, `Thumbs.db`, ...) are left out, as the image listing
    leaves them out: opening a folder in a file browser must not make a new dataset.
    """
    return _digest(root, visible_files(root))


def _digest(root: Path, files: list[Path], classes: list[str] | None = None) -> str:
    digest = hashlib.sha256(json.dumps(classes).encode())
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def main(argv: list[str]) -> None:
    name = item_name(argv, "prepare", "dataset")
    params = load_params()
    ds = params.dataset(name)
    if ds.builtin and not ds.path.exists():
        raise PipelineError(f"{ds.path}: missing; run `dvc repro ingest@{name}` first")
    run(name, ds, params.paths.prepared / name)


if __name__ == "__main__":
    cli(main)
