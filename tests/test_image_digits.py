"""bench/image_digits.py: 28×28 digits from a PNG folder through the real pipeline."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_image_digits_smoke_run(tmp_path):
    out = tmp_path / "digits.json"
    script = REPO / "bench" / "image_digits.py"
    done = subprocess.run(
        [sys.executable, str(script), "--max-epochs", "1", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = json.loads(out.read_text())
    assert run["model"] == "cnn" and run["seed"] == 0
    # 5,000 digits, 500 a class: the majority class is right on a tenth of the balanced test
    # split, and one epoch on 28×28 digits already beats it by far.
    assert run["baselines"]["majority"] == pytest.approx(0.1)
    assert 0.9 < run["baselines"]["1nn_euclidean"] < 1.0
    assert 0.5 < run["test_accuracy"] <= 1.0
    row = next(line for line in done.stdout.splitlines() if line.startswith("| cnn"))
    assert f"{run['test_accuracy']:.4f}" in row
