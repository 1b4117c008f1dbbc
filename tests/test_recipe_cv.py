"""bench/recipe_cv.py: a bad setting stops it before any work; a smoke run (`slow`)."""

import json
import statistics
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "bench" / "recipe_cv.py"


def recipe_cv(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("setting", "status", "message"),
    [
        ("rnn.pooling=sideways", 1, "models.lstm.rnn.pooling: Input should be 'last' or 'mean'"),
        ("nope=1", 1, "models.lstm.nope: unknown key"),
        ("lr.x=1", 2, "--set lr.x: models.lstm.lr holds no settings"),
        ("lr", 2, "expected KEY=VALUE, got 'lr'"),
    ],
)
def test_a_bad_setting_is_one_error_before_any_work(tmp_path, setting, status, message):
    done = recipe_cv(tmp_path, "ArrowHead", "lstm", "--set", setting)
    assert done.returncode == status, done.stderr[-2000:]
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_smoke_run_scores_every_fold(tmp_path):
    sets = ["--set", "max_epochs=1", "--set", "min_steps=0", "--set", "rnn.pooling=mean"]
    done = recipe_cv(tmp_path, "ItalyPowerDemand", "gru", *sets, "--folds", "2", "--seeds", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["set"] == {"max_epochs": 1, "min_steps": 0, "rnn.pooling": "mean"}
    assert len(result["per_fold"]) == 4
    assert all(0.0 <= s <= 1.0 for s in result["per_fold"])
    assert result["val_acc"] == pytest.approx(statistics.fmean(result["per_fold"]), abs=1e-4)
    # 1-NN Euclidean on ItalyPowerDemand's TRAIN file: far above chance (0.955 on its test).
    assert 0.8 < result["nearest_euclidean"] <= 1.0
