"""The `git_commit` tag: `-dirty` when code or params differ from the commit, not when the
pipeline rewrote its own outputs (dvc.lock and the files it lists), in a real git repository."""

import subprocess

import pytest
import yaml

from stages.tracking import git_commit

LOCK = {
    "schema": "2.0",
    "stages": {
        "train@cnn": {
            "cmd": "python -m stages.train",
            "outs": [{"path": "models/cnn", "md5": "a.dir"}, {"path": "metrics/train/cnn.json"}],
        },
        "evaluate@cnn": {"cmd": "python -m stages.evaluate", "outs": [{"path": "metrics/eval"}]},
    },
}


def git(root, *args) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A committed repository with code, params, dvc.lock and metrics files DVC lists."""
    files = {
        "stages/train.py": "code\n",
        "params.yaml": "lr: 0.1\n",
        "dvc.lock": yaml.safe_dump(LOCK),
        "metrics/train/cnn.json": "{}\n",
        "metrics/eval/cnn.json": "{}\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "start")
    return tmp_path, git(tmp_path, "rev-parse", "HEAD")


def test_the_pipeline_rewriting_its_outputs_leaves_the_commit_clean(repo):
    root, head = repo
    assert git_commit(root) == head
    (root / "dvc.lock").write_text(yaml.safe_dump(LOCK | {"schema": "2.1"}))
    (root / "metrics" / "train" / "cnn.json").write_text('{"epochs": 3}\n')
    (root / "metrics" / "eval" / "cnn.json").write_text('{"test_accuracy": 1.0}\n')
    assert git_commit(root) == head


@pytest.mark.parametrize("path", ["stages/train.py", "params.yaml"])
@pytest.mark.parametrize("staged", [False, True])
def test_changed_code_or_params_make_it_dirty(repo, path, staged):
    root, head = repo
    (root / "metrics" / "train" / "cnn.json").write_text('{"epochs": 3}\n')
    (root / path).write_text("changed\n")
    if staged:
        git(root, "add", path)
    assert git_commit(root) == f"{head}-dirty"


def test_outside_git_it_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"
