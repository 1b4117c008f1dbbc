"""`dvc repro` of ingest and prepare in a temporary copy of the repository (real DVC, real git)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, copy_repo, write_image_folder


def _run(cwd: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    return copy_repo(tmp_path / "repo")


def _dvc(repo: Path, *args: str) -> str:
    return _run(repo, sys.executable, "-m", "dvc", *args)


def test_repro_twice_then_nothing_to_do(repo_copy):
    first = _dvc(repo_copy, "repro", "prepare")
    assert "Running stage 'ingest@digits'" in first
    assert "Running stage 'prepare@japanese_vowels'" in first
    lock = (repo_copy / "dvc.lock").read_text()
    assert (repo_copy / "data/prepared/digits/meta.json").is_file()
    second = _dvc(repo_copy, "repro", "prepare")
    assert "Running stage" not in second
    assert (repo_copy / "dvc.lock").read_text() == lock
    # The lock this checkout commits names the same hashes: a fresh clone reproduces it.
    committed = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]
    fresh = yaml.safe_load(lock)["stages"]
    for stage in ("prepare@digits", "prepare@japanese_vowels"):
        assert fresh[stage]["outs"] == committed[stage]["outs"]


def test_changed_user_files_rerun_exactly_downstream(repo_copy):
    write_image_folder(repo_copy / "data/external/pets", {"cat": 6, "dog": 6}, size=(12, 10))
    _dvc(repo_copy, "add", "-q", "data/external/pets")
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["datasets"]["pets"] = {
        "source": "folder",
        "path": "data/external/pets",
        "image": {"size": [8, 8], "channels": 1},
        "split": {"val": 0.2, "test": 0.2, "seed": 0},
    }
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params))
    _dvc(repo_copy, "repro", "prepare")
    assert not (repo_copy / "data/raw/pets/cat").exists()  # named, not copied

    write_image_folder(repo_copy / "data/external/pets", {"cow": 6})
    _dvc(repo_copy, "add", "-q", "data/external/pets")
    rerun = _dvc(repo_copy, "repro", "prepare")
    ran = sorted(line.split("'")[1] for line in rerun.splitlines() if "Running stage" in line)
    assert ran == ["prepare@pets"]
    meta = yaml.safe_load((repo_copy / "data/prepared/pets/meta.json").read_text())
    assert meta["classes"] == ["cat", "cow", "dog"]


def test_bad_input_fails_the_stage_and_keeps_the_output(repo_copy):
    _dvc(repo_copy, "repro", "prepare@japanese_vowels")
    before = (repo_copy / "data/prepared/japanese_vowels/x_train.npy").read_bytes()
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["datasets"]["japanese_vowels"]["sequence"]["channels"] = 13
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "prepare@japanese_vowels"],
        cwd=repo_copy,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "params say sequence.channels: 13" in done.stdout + done.stderr
    assert (repo_copy / "data/prepared/japanese_vowels/x_train.npy").read_bytes() == before


@pytest.mark.parametrize(
    "key", ["a;touch pwned", "a'; touch pwned; '", 'a"; touch pwned; "', "a$(touch pwned)"]
)
def test_a_params_key_never_reaches_the_shell(repo_copy, key):
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["datasets"][key] = {"source": "ts", "path": "data/external/x"}
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--keep-going", f"ingest@{key}"],
        cwd=repo_copy,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "String should match pattern" in done.stdout + done.stderr  # the stage's own check
    assert not list(repo_copy.rglob("pwned*"))


def test_generated_outputs_are_ignored_by_git():
    generated = ["dvc_plots/index.html", "mlflow.db", "checkpoints/cnn/run.json", "mlruns/0/x"]
    done = subprocess.run(["git", "check-ignore", *generated], cwd=REPO, capture_output=True)
    assert done.stdout.decode().split() == generated
