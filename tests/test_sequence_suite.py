"""bench/sequence_suite.py: its DTW against hand-computed cases, and a smoke run (`slow`)."""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from bench.suite.baselines import dtw_distance, nearest_dtw, nearest_euclidean
from tests.conftest import REPO


def series(*values) -> np.ndarray:
    """A univariate series of shape (length, 1)."""
    return np.array(values, dtype=np.float64)[:, None]


def test_dtw_hand_computed():
    # Squared costs of [0, 1, 2] against [0, 2]: rows (0, 4), (1, 1), (4, 0). The best path
    # (0,0) → (1,0) → (2,1) sums 0 + 1 + 0.
    assert dtw_distance(series(0, 1, 2), series(0, 2)) == pytest.approx(1.0)
    # Dependent DTW: the point cost sums both channels, (0,0)-(1,0) = 1 and (2,1)-(2,2) = 1.
    a = np.array([[0.0, 0.0], [2.0, 1.0]])
    b = np.array([[1.0, 0.0], [2.0, 2.0]])
    assert dtw_distance(a, b) == pytest.approx(np.sqrt(2.0))
    assert dtw_distance(series(3, 1, 4, 1), series(3, 1, 4, 1)) == 0.0


def test_dtw_is_euclidean_when_warping_is_the_identity_and_never_more():
    # A constant gap costs 1 per cell, so the diagonal, the shortest path, is the best.
    assert dtw_distance(series(0, 0, 0), series(1, 1, 1)) == pytest.approx(np.sqrt(3.0))
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(size=(2, 30, 3))
        assert dtw_distance(a, b) <= np.linalg.norm(a - b) + 1e-12


def test_nearest_dtw_matches_brute_force():
    """Early abandoning never changes the neighbour found (ties: the first train series)."""
    rng = np.random.default_rng(1)
    train = [rng.normal(size=(int(rng.integers(5, 20)), 2)) for _ in range(15)]
    test = [rng.normal(size=(int(rng.integers(5, 20)), 2)) for _ in range(10)]
    expected = [np.argmin([dtw_distance(q, r) for r in train]) for q in test]
    assert nearest_dtw(train, test).tolist() == expected


def test_nearest_euclidean_pads_with_the_last_value():
    train = [series(0, 0, 0), series(5, 5, 5)]
    # Padded to [5, 5, 5], which is train series 1 exactly.
    assert nearest_euclidean(train, [series(5)]).tolist() == [1]


SCRIPT = REPO / "bench" / "sequence_suite.py"


def _suite(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, SCRIPT, *map(str, args)], cwd=tmp_path, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "missing.yaml: file not found"),
        ("models: [", "not valid YAML"),
        ("models: {}\n", "invalid params:\n  datasets: Field required"),
    ],
)
def test_bad_params_file_is_named_before_any_work(tmp_path, text, expected):
    params = tmp_path / "missing.yaml"
    if text is not None:
        params.write_text(text)
    out = tmp_path / "suite.json"
    done = _suite(tmp_path, "--params", params, "--archives", "ItalyPowerDemand", "--out", out)
    assert done.returncode == 2
    assert expected in done.stderr and str(params) in done.stderr
    assert not out.exists()


@pytest.mark.slow
def test_suite_smoke_run(tmp_path, raw_params):
    """The default models and a recipe of the user's own (`--params`), one epoch each."""
    params = tmp_path / "mine.yaml"
    raw_params = copy.deepcopy(raw_params)  # the session's fixture: others read it after
    raw_params["models"]["resnet"] = {
        "dataset": "japanese_vowels",
        "arch": "resnet",
        "resnet": {"channels": [8, 8], "kernel_sizes": [5, 3]},
    }
    params.write_text(yaml.safe_dump(raw_params, sort_keys=False))
    out = tmp_path / "suite.json"
    done = _suite(
        tmp_path, "--params", params, "--archives", "ItalyPowerDemand", "--max-epochs", "1",
        "--seeds", "1", "--out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| ItalyPowerDemand"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == ["67", "1029", "24", "2"]
    runs = json.loads(out.read_text())["ItalyPowerDemand"]["runs"]
    assert {r["model"] for r in runs} == {"lstm", "gru", "fcn", "resnet"}, runs
    assert all("error" not in r for r in runs), runs
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and r["train_seconds"] > 0 for r in runs)
    # A model column per run, then majority, 1-NN ED and DTW, published, train seconds.
    for cell in cells[5:]:
        float(cell)
