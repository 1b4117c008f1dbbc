"""Simple baselines, scored on the same test split as the model: what a model must beat.

- `majority`: always the most frequent class of the training data;
- `1nn_euclidean`: the nearest training example by Euclidean distance over the prepared
  (normalised) values: pixels for images; for series the padded steps as well, which are zeros
  after normalisation, so series of other lengths compare as if extended by the train mean.

The training data is prepare's train and validation splits together: everything the model may
use. A model that does not beat the best of these by `register.min_delta` is never promoted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightning_modules.prepared import load_split
from stages.metrics import classification_metrics

BASELINES = ("majority", "1nn_euclidean")
# Distances are computed this many test examples at a time, as one matrix product each.
CHUNK = 256


def baseline_metrics(prepared: Path, classes: list[str]) -> dict[str, dict[str, float]]:
    """Baseline name → its test_accuracy and test_macro_f1 on `prepared`'s test split."""
    x_fit, y_fit = _flat_split(prepared, "train")
    x_val, y_val = _flat_split(prepared, "val")
    x_fit, y_fit = np.concatenate([x_fit, x_val]), np.concatenate([y_fit, y_val])
    x_test, y_test = _flat_split(prepared, "test")
    majority = np.bincount(y_fit, minlength=len(classes)).argmax()
    predictions = {
        "majority": np.full(len(y_test), majority),
        "1nn_euclidean": y_fit[nearest(x_fit, x_test)],
    }
    scores = {}
    for name in BASELINES:
        found = classification_metrics(y_test, predictions[name], classes)
        scores[name] = {k: found[k] for k in ("test_accuracy", "test_macro_f1")}
    return scores


def _flat_split(prepared: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    x, *_, y = load_split(prepared, split)
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1), np.asarray(y)


def nearest(reference: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of each query's nearest reference row (Euclidean; the first one on ties)."""
    squared = (reference**2).sum(axis=1)
    found = []
    for start in range(0, len(queries), CHUNK):
        chunk = queries[start : start + CHUNK]
        # ||q - r||² = ||q||² - 2 q·r + ||r||²; ||q||² is the same for every r of a row.
        found.append((squared[None, :] - 2.0 * chunk @ reference.T).argmin(axis=1))
    return np.concatenate(found)


def best_baseline(scores: dict[str, dict[str, float]], metric: str) -> tuple[str, float]:
    """The baseline with the highest `metric`, and that figure."""
    name = max(BASELINES, key=lambda b: scores[b][metric])
    return name, scores[name][metric]
