"""The stage graph and the flow over a repository whose own data is tracked with `dvc add`."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

from flows.graph import read_graph
from tests.conftest import copy_repo, tiny_cases, write_image_folder, write_ts_pair


def _dvc_add(repo: Path, *paths: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(
        [sys.executable, "-m", "dvc", "add", "-q", *paths], cwd=repo, env=env, check=True
    )


def _repo_with_added_data(tmp_path: Path) -> Path:
    """A copy whose params name a `dvc add`ed image folder and a `dvc add`ed `.ts` pair."""
    repo = copy_repo(tmp_path / "repo")
    write_image_folder(repo / "data/external/pets", {"cat": 6, "dog": 6}, size=(12, 10))
    write_ts_pair(repo / "data/external/tiny", tiny_cases(6), tiny_cases(3, seed=1))
    _dvc_add(repo, "data/external/pets", "data/external/tiny")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["datasets"] |= {
        "pets": {
            "source": "folder",
            "path": "data/external/pets",
            "image": {"size": [8, 8], "channels": 1},
            "split": {"val": 0.2, "test": 0.2, "seed": 0},
        },
        "tiny": {"source": "ts", "path": "data/external/tiny", "split": {"val": 0.2}},
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


def test_added_data_is_no_stage_of_the_graph(tmp_path):
    graph = read_graph(_repo_with_added_data(tmp_path))
    assert graph.upstream["prepare@pets"] == {"ingest@pets"}
    assert graph.upstream["prepare@tiny"] == {"ingest@tiny"}
    assert not [s for s in graph.upstream if s.endswith(".dvc")]


def test_flow_runs_the_stages_of_added_data(tmp_path, prefect_harness):
    from flows.train_pipeline import pipeline

    repo = _repo_with_added_data(tmp_path)
    status = pipeline(stages=["prepare@pets", "prepare@tiny"], project_dir=str(repo))
    assert status == dict.fromkeys(
        ["ingest@pets", "ingest@tiny", "prepare@pets", "prepare@tiny"], "ran"
    )
    meta = yaml.safe_load((repo / "data/prepared/tiny/meta.json").read_text())
    assert meta["classes"] == ["a", "b"]


def test_models_keep_their_stages_the_data_they_need_and_not_register():
    """`--models gru`: gru's stages and its dataset's; `register`, which reads every model's
    evaluation, is left out (the others' may come from another workspace's run)."""
    graph = read_graph(Path(__file__).resolve().parent.parent)
    chosen = set(graph.select(None, ["gru"]).upstream)
    assert chosen == {
        "ingest@japanese_vowels",
        "prepare@japanese_vowels",
        "train@gru",
        "evaluate@gru",
    }
    assert set(graph.select(["register"], None).upstream) == set(graph.upstream)
