"""The baselines every evaluation scores beside the model, on hand-made prepared splits."""

import numpy as np
import pytest

from stages.baselines import baseline_metrics, best_baseline, nearest


def _prepared(tmp_path, splits: dict[str, tuple[list, list]]):
    for split, (x, y) in splits.items():
        np.save(tmp_path / f"x_{split}.npy", np.asarray(x, dtype=np.float32))
        np.save(tmp_path / f"y_{split}.npy", np.asarray(y, dtype=np.int64))
    return tmp_path


def test_majority_and_one_nearest_neighbour_by_hand(tmp_path):
    # Train and validation together are the reference: class 0 at 0 and 1, class 1 at 10.
    prepared = _prepared(
        tmp_path,
        {
            "train": ([[0.0, 0.0], [10.0, 10.0]], [0, 1]),
            "val": ([[1.0, 1.0]], [0]),
            "test": ([[0.4, 0.0], [9.0, 9.0], [6.0, 6.0], [2.0, 2.0]], [0, 1, 0, 1]),
        },
    )
    scores = baseline_metrics(prepared, ["a", "b"])
    # majority (class 0): right on tests 0 and 2; 1-NN: 0, 1, 1, 0 → right on tests 0 and 1.
    assert scores["majority"]["test_accuracy"] == 0.5
    assert scores["1nn_euclidean"]["test_accuracy"] == 0.5
    assert scores["majority"]["test_macro_f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert best_baseline(scores, "test_macro_f1") == ("1nn_euclidean", 0.5)


def test_nearest_agrees_with_brute_force_over_chunks():
    rng = np.random.default_rng(0)
    reference, queries = rng.normal(size=(50, 7)), rng.normal(size=(600, 7))
    brute = ((queries[:, None, :] - reference[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    assert (nearest(reference, queries) == brute).all()
