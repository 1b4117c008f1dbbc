"""The reference classifiers of the sequence suite, on an archive's own TRAIN/TEST files.

Train is the whole TRAIN file (as published 1-NN figures use it), test the TEST file. Series
are z-normalised the way `prepare` does it: per channel, with the mean and standard deviation
of every step of every train series. For a univariate archive this changes no 1-NN decision
(one affine map for all series scales every distance alike); the UCR files are mostly
z-normalised per series already. Per-series z-normalisation, the UEA habit, would give
BasicMotions 0.975 for 1-NN DTW (Ruiz et al. 2021's DTW_D) instead of 0.900, and JapaneseVowels
0.662 instead of 0.959 (its vowels differ in level); this suite scores what the models see.

- majority: the most frequent train label (ties: the first in sorted order);
- 1-NN Euclidean: series shorter than the longest of the archive are padded with their last
  value (JapaneseVowels, PLAID);
- 1-NN DTW: full window, no padding; multivariate series use dependent DTW (one warping path
  for all channels, point cost the squared Euclidean distance summed over channels).
Ties between neighbours go to the first train series.
"""

from __future__ import annotations

import time
from pathlib import Path

import numba
import numpy as np

from stages.tsfile import TsData, read_ts


@numba.njit
def _dtw_squared(a: np.ndarray, b: np.ndarray, bound: float) -> float:
    """The least summed squared point cost over warping paths of `a` (n, C) and `b` (m, C);
    infinity as soon as it must exceed `bound` (every path crosses every row, and the costs
    along a path only grow, so a row whose every cell exceeds `bound` decides it)."""
    n, m = a.shape[0], b.shape[0]
    prev = np.full(m + 1, np.inf)
    curr = np.empty(m + 1)
    prev[0] = 0.0
    for i in range(1, n + 1):
        curr[0] = np.inf
        row_min = np.inf
        for j in range(1, m + 1):
            cost = 0.0
            for c in range(a.shape[1]):
                diff = a[i - 1, c] - b[j - 1, c]
                cost += diff * diff
            curr[j] = cost + min(prev[j - 1], prev[j], curr[j - 1])
            row_min = min(row_min, curr[j])
        if row_min > bound:
            return np.inf
        prev, curr = curr, prev
    return prev[m]


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Full-window dependent DTW between series of shape (length, channels): the square root
    of the least summed squared point cost, so it is at most the Euclidean distance."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.sqrt(_dtw_squared(a, b, np.inf)))


@numba.njit(parallel=True)
def _nearest_dtw(
    train: np.ndarray, train_at: np.ndarray, test: np.ndarray, test_at: np.ndarray
) -> np.ndarray:
    """Each test series' nearest train series; the series of a split are concatenated along
    axis 0, series k being rows `at[k]` to `at[k + 1]`."""
    found = np.empty(len(test_at) - 1, dtype=np.int64)
    for q in numba.prange(len(test_at) - 1):
        query = test[test_at[q] : test_at[q + 1]]
        best, best_k = np.inf, 0
        for k in range(len(train_at) - 1):
            candidate = train[train_at[k] : train_at[k + 1]]
            d = _dtw_squared(query, candidate, best)
            if d < best:
                best, best_k = d, k
        found[q] = best_k
    return found


def nearest_dtw(train: list[np.ndarray], test: list[np.ndarray]) -> np.ndarray:
    """Index of each test series' nearest train series by DTW."""

    def packed(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        at = np.cumsum([0] + [len(s) for s in series], dtype=np.int64)
        return np.concatenate(series).astype(np.float64), at

    return _nearest_dtw(*packed(train), *packed(test))


def nearest_euclidean(train: list[np.ndarray], test: list[np.ndarray]) -> np.ndarray:
    """Index of each test series' nearest train series by Euclidean distance, after padding
    every series with its last value to the longest length of both lists."""
    length = max(len(s) for s in train + test)

    def flat(series: list[np.ndarray]) -> np.ndarray:
        return np.stack([np.pad(s, ((0, length - len(s)), (0, 0)), mode="edge") for s in series])

    x_train = flat(train).reshape(len(train), -1).astype(np.float64)
    x_test = flat(test).reshape(len(test), -1).astype(np.float64)
    return np.array([((x_train - q) ** 2).sum(axis=1).argmin() for q in x_test])


def normalised(train: TsData, test: TsData) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Both files' series scaled per channel with the train file's statistics."""
    steps = np.concatenate(train.series).astype(np.float64)
    mean, std = steps.mean(axis=0), steps.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(s - mean) / std for s in train.series], [(s - mean) / std for s in test.series]


def describe_and_score(folder: Path, name: str) -> dict:
    """Shape of archive `name` (in `folder`) and the test accuracy of each reference classifier,
    with the seconds 1-NN DTW took (compilation excluded)."""
    train, test = read_ts(folder / f"{name}_TRAIN.ts"), read_ts(folder / f"{name}_TEST.ts")
    x_train, x_test = normalised(train, test)
    y_train, y_test = np.array(train.labels), np.array(test.labels)
    labels, counts = np.unique(y_train, return_counts=True)
    nearest_dtw(x_train[:1], x_test[:1])  # compiles it
    started = time.perf_counter()
    dtw = y_train[nearest_dtw(x_train, x_test)]
    dtw_seconds = time.perf_counter() - started
    lengths = [len(s) for s in train.series + test.series]
    return {
        "n_train": len(y_train),
        "n_test": len(y_test),
        "length": [min(lengths), max(lengths)],
        "channels": int(x_train[0].shape[1]),
        "classes": len(set(train.labels) | set(test.labels)),
        "majority": float(np.mean(y_test == labels[counts.argmax()])),
        "1nn_euclidean": float(np.mean(y_train[nearest_euclidean(x_train, x_test)] == y_test)),
        "1nn_dtw": float(np.mean(dtw == y_test)),
        "dtw_seconds": round(dtw_seconds, 2),
    }
