"""Reading and checking UEA/UCR `.ts` files (the sktime/aeon archive format).

A series is a float32 array of shape (length, channels). Every problem names the file and
line, so a user can find the series at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.errors import PipelineError
from stages.files import is_hidden


@dataclass(frozen=True)
class TsData:
    series: list[np.ndarray]
    labels: list[str]
    class_labels: list[str] | None  # the @classLabel header's list, in its order


def read_ts(path: Path, labelled: bool = True) -> TsData:
    """Parse a `.ts` file; NaN, infinite or missing values are errors.

    `labelled`: the file must carry class labels (training data). Otherwise labels are read
    when `@classLabel true` says they are there, and are empty strings when not.
    """
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: cannot read: {exc}") from None
    header: dict[str, str] = {}
    series: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not in_data:
            if not text.startswith("@"):
                raise PipelineError(f"{path}:{lineno}: expected a @header line or @data")
            key, _, value = text[1:].partition(" ")
            if key.lower() == "data":
                in_data = True
            else:
                header[key.lower()] = value.strip()
            continue
        has_label = labelled or header.get("classlabel", "").lower().startswith("true")
        values, label = _parse_case(path, lineno, text if has_label else f"{text}:")
        if series and values.shape[1] != series[0].shape[1]:
            raise PipelineError(
                f"{path}:{lineno}: series has {values.shape[1]} channels, the file's first "
                f"series has {series[0].shape[1]}"
            )
        series.append(values)
        labels.append(label)
    if header.get("timestamps", "false").lower() == "true":
        raise PipelineError(f"{path}: @timeStamps true is not supported")
    if not series:
        raise PipelineError(f"{path}: no series after @data")
    class_labels = _class_labels(path, header) if labelled else None
    if class_labels is not None:
        unknown = sorted(set(labels) - set(class_labels))
        if unknown:
            raise PipelineError(f"{path}: labels {unknown} are not in @classLabel {class_labels}")
    return TsData(series=series, labels=labels, class_labels=class_labels)


def _parse_case(path: Path, lineno: int, text: str) -> tuple[np.ndarray, str]:
    *dims, label = text.split(":")
    if not dims:
        raise PipelineError(f"{path}:{lineno}: expected values followed by ':<label>'")
    channels = []
    for ch, dim in enumerate(dims):
        if "(" in dim:
            raise PipelineError(f"{path}:{lineno}: timestamped values are not supported")
        try:
            values = np.array([float(v) for v in dim.split(",")], dtype=np.float64)
        except ValueError:
            raise PipelineError(
                f"{path}:{lineno}: channel {ch} has a value that is not a number "
                "('?' marks a missing value, which training cannot use)"
            ) from None
        if not np.isfinite(values).all():
            raise PipelineError(f"{path}:{lineno}: channel {ch} has a NaN or infinite value")
        channels.append(values)
    lengths = {len(c) for c in channels}
    if len(lengths) != 1:
        raise PipelineError(f"{path}:{lineno}: channels have different lengths {sorted(lengths)}")
    return np.stack(channels, axis=1).astype(np.float32), label.strip()


def _class_labels(path: Path, header: dict[str, str]) -> list[str] | None:
    words = header.get("classlabel", "").split()
    if not words or words[0].lower() != "true":
        raise PipelineError(f"{path}: needs '@classLabel true <labels…>': the series need labels")
    return words[1:] or None


def find_pair(folder: Path) -> tuple[Path, Path]:
    """The one `*_TRAIN.ts` and one `*_TEST.ts` inside `folder`."""
    if not folder.is_dir():
        raise PipelineError(f"{folder}: no such folder (expected a *_TRAIN.ts / *_TEST.ts pair)")
    found = []
    for suffix in ("_TRAIN.ts", "_TEST.ts"):
        matches = sorted(
            p
            for p in folder.iterdir()
            if p.name.upper().endswith(suffix.upper()) and not is_hidden(p.name)
        )
        if len(matches) != 1:
            names = [p.name for p in matches] or "none"
            raise PipelineError(f"{folder}: expected exactly one *{suffix} file, found {names}")
        found.append(matches[0])
    return found[0], found[1]
