"""The Prefect flow over a shrunken copy of the repository, under prefect_test_harness."""

import json
import os
import socket

import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.sorting import TaskRunSort

from flows.pipeline import pipeline
from stages.config import load_params
from tests.conftest import REPO

PARAMS = load_params(REPO / "params.yaml")
SEQUENCE_MODELS = sorted(n for n, m in PARAMS.models.items() if m.dataset == "japanese_vowels")
STAGES = [
    *(f"{stage}@{d}" for stage in ("ingest", "prepare") for d in sorted(PARAMS.datasets)),
    *(f"{stage}@{m}" for stage in ("train", "evaluate") for m in sorted(PARAMS.models)),
    "register",
]


def task_runs(state) -> dict:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            ),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            limit=200,
        )
    return {run.name: run for run in runs}


def artifacts(state) -> dict:
    """The artifacts a flow run created, by key, read through Prefect's own client."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    return {a.key: a.data for a in found}


def test_every_stage_runs_after_its_upstream(flow_repo):
    root, state = flow_repo
    assert state.is_completed()
    assert state.result() == dict.fromkeys(STAGES, "ran")
    runs = task_runs(state)
    assert sorted(runs) == sorted(STAGES)
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    for stage in STAGES:
        upstream = {
            d
            for d in STAGES
            if any(
                out["path"] in [dep["path"] for dep in lock[stage].get("deps", [])]
                for out in lock[d].get("outs", [])
            )
        }
        for up in upstream:
            assert runs[stage].start_time >= runs[up].end_time, (stage, up)


def test_independent_stages_run_at_the_same_time(flow_repo):
    runs = task_runs(flow_repo[1])
    spans = [(r.start_time, r.end_time) for r in runs.values()]
    overlapping = sum(1 for a in spans for b in spans if a is not b and a[0] < b[1] and b[0] < a[1])
    assert overlapping > 0
    busiest = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert busiest <= 2  # flow.max_parallel


def test_artifacts_hold_the_metrics_and_decisions(flow_repo):
    root, state = flow_repo
    found = artifacts(state)
    rows = json.loads(found["model-metrics"])
    assert sorted(r["model"] for r in rows) == sorted(PARAMS.models)
    for row in rows:
        evaluation = json.loads((root / "metrics/eval" / f"{row['model']}.json").read_text())
        assert row["test_accuracy"] == evaluation["test_accuracy"]
        assert row["1nn"] == evaluation["baselines"]["1nn_euclidean"]["test_accuracy"]
        assert row["majority"] == evaluation["baselines"]["majority"]["test_accuracy"]
    markdown = found["registry-decisions"]
    assert "## digits-classifier" in markdown and "## japanese_vowels-classifier" in markdown
    assert "**promoted**: no champion yet" in markdown
    assert "/#/experiments/" in markdown  # links to the MLflow runs


def test_second_run_skips_every_stage(flow_repo):
    root, _ = flow_repo
    assert pipeline(project_dir=str(root)) == dict.fromkeys(STAGES, "skipped")


def test_failing_stage_stops_its_downstream(flow_repo):
    root, _ = flow_repo
    original = (root / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["datasets"]["japanese_vowels"]["sequence"]["channels"] = 13
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    try:
        state = pipeline(project_dir=str(root), return_state=True)
    finally:
        (root / "params.yaml").write_text(original)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert message.startswith("prepare@japanese_vowels: ")
    assert "params say sequence.channels: 13" in message.splitlines()[0]
    downstream = [f"{stage}@{m}" for stage in ("evaluate", "train") for m in SEQUENCE_MODELS]
    assert f"not run: {', '.join(sorted([*downstream, 'register']))}" in message
    runs = task_runs(state)
    assert runs["prepare@japanese_vowels"].run_count == 1  # bad input is never retried
    assert "train@lstm" not in runs and "register" not in runs
    assert runs["evaluate@cnn"].state.is_completed()  # the independent branch went on


def test_transient_failure_is_retried(flow_repo):
    root, _ = flow_repo
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    os.environ["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{port}"
    try:
        state = pipeline(stages=["train@cnn"], force=True, project_dir=str(root), return_state=True)
    finally:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    assert state.is_failed()
    assert "does not answer" in str(state.result(raise_on_failure=False))
    assert task_runs(state)["train@cnn"].run_count == 2  # the first try and one retry
