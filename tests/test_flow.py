"""The Prefect flow over a shrunken copy of the repository, under prefect_test_harness."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.sorting import TaskRunSort

from flows.train_pipeline import StageFailed, _error_message, _stage_exit_code, pipeline
from stages.links import MAKE_UI
from tests.conftest import FLOW_MODELS

SKIPPED = "unchanged since dvc.lock"  # what a task the flow skips logs
SEQUENCE_MODELS = sorted(n for n, d in FLOW_MODELS.items() if d == "japanese_vowels")
STAGES = [
    *(f"{stage}@{d}" for stage in ("ingest", "prepare") for d in sorted(set(FLOW_MODELS.values()))),
    *(f"{stage}@{m}" for stage in ("train", "evaluate") for m in sorted(FLOW_MODELS)),
    "register",
]


def task_runs(state, timeout: float = 30.0) -> dict:
    """A flow run's task runs, once the API holds each one's final state: task runs reach it
    as events, which may land after the flow returns when its tasks took milliseconds."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
                ),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
                limit=200,
            )
            settled = all(run.state is not None and run.state.is_final() for run in runs)
            if settled or time.monotonic() > deadline:
                return {run.name: run for run in runs}
            time.sleep(0.2)


def artifacts(state) -> dict:
    """The artifacts a flow run created, by key, read through Prefect's own client."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    return {a.key: a.data for a in found}


def logs(state, skipped: int = 0, timeout: float = 30.0) -> list[str]:
    """Every log message of a flow run and its task runs, read through Prefect's own client,
    once `skipped` tasks have logged that they were skipped: logs reach the API from a
    background worker, which may send them after a flow of millisecond tasks returns."""
    deadline = time.monotonic() + timeout
    while True:
        found = _read_logs(state)
        if sum(SKIPPED in m for m in found) >= skipped or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _read_logs(state) -> list[str]:
    found: list[str] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(
                log_filter=LogFilter(
                    flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])
                ),
                limit=200,
                offset=len(found),
            )
            found += [log.message for log in page]
            if len(page) < 200:
                return found


def test_every_stage_runs_after_its_upstream(flow_repo):
    root, state = flow_repo
    assert state.is_completed()
    assert state.result() == dict.fromkeys(STAGES, "ran")
    runs = task_runs(state)
    assert sorted(runs) == sorted(STAGES)
    assert {run.state.name for run in runs.values()} == {"Completed"}
    names = {run.id: name for name, run in runs.items()}
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    for stage in STAGES:
        deps = [dep["path"] for dep in lock[stage].get("deps", [])]
        upstream = {  # the stages with an output among its dependencies, or inside one (a folder)
            d
            for d in STAGES
            if any(
                out["path"] == dep or out["path"].startswith(f"{dep}/")
                for out in lock[d].get("outs", [])
                for dep in deps
            )
        }
        for up in upstream:
            assert runs[stage].start_time >= runs[up].end_time, (stage, up)
        # The flow run's graph draws an edge for each upstream task the task waited for.
        waited = runs[stage].task_inputs.get("wait_for", [])
        assert {names[i.id] for i in waited} == upstream, stage


def test_task_logs_hold_the_stages_output_without_the_tools_hints(flow_repo):
    messages = logs(flow_repo[1])
    assert any(m.startswith("Running stage 'train@") for m in messages)
    noise = ("git add", "autostage", "dvc push", "litlogger", "Downloading artifacts")
    mlflow_warnings = ("Add type hints", "CloudPickle")  # none printed by the stages today
    assert not [m for m in messages if any(n in m for n in (*noise, *mlflow_warnings))]


def test_retry_delay_is_one_number(flow_repo):
    """Prefect's UI shows a list of retry delays as "Retry Delay: NaNs"."""
    policies = [run.empirical_policy for run in task_runs(flow_repo[1]).values()]
    assert {(p.retries, p.retry_delay) for p in policies} == {(1, 0.1)}


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
    assert sorted(r["model"] for r in rows) == sorted(FLOW_MODELS)
    for row in rows:
        evaluation = json.loads((root / "metrics/eval" / f"{row['model']}.json").read_text())
        assert row["test_accuracy"] == round(evaluation["test_accuracy"], 4)
        assert row["1nn"] == round(evaluation["baselines"]["1nn_euclidean"]["test_accuracy"], 4)
        assert row["majority"] == round(evaluation["baselines"]["majority"]["test_accuracy"], 4)
        run_id = evaluation["mlflow_run_id"]
        assert row["mlflow_run_id"].startswith(f"[{run_id}]({MAKE_UI}/#/experiments/")
        assert row["mlflow_run_id"].endswith(f"/runs/{run_id})")
    markdown = found["registry-decisions"]
    assert "## digits-classifier" in markdown and "## japanese_vowels-classifier" in markdown
    assert "**promoted**: no champion yet" in markdown
    assert f"[version 1]({MAKE_UI}/#/models/digits-classifier/versions/1)" in markdown
    assert f"({MAKE_UI}/#/experiments/" in markdown  # the champions' runs


def test_second_run_skips_every_stage(flow_repo):
    root, _ = flow_repo
    state = pipeline(project_dir=str(root), return_state=True)
    assert state.result() == dict.fromkeys(STAGES, "skipped")
    runs = task_runs(state)
    assert all(run.state.is_completed() for run in runs.values())
    assert {run.state.name for run in runs.values()} == {"Skipped"}
    messages = logs(state, skipped=len(STAGES))
    # Asked DVC once: no stage started a `dvc repro` process of its own.
    assert sum(SKIPPED in m for m in messages) == len(STAGES)
    assert not any("didn't change, skipping" in m for m in messages)
    found = artifacts(state)
    assert "model-metrics" not in found  # its latest version stays the last evaluation
    assert "Nothing changed in this run" in found["registry-decisions"]


def test_models_leave_register_out_and_say_so(flow_repo):
    root, _ = flow_repo
    state = pipeline(models=["cnn"], project_dir=str(root), return_state=True)
    assert set(state.result()) == {"ingest@digits", "prepare@digits", "train@cnn", "evaluate@cnn"}
    messages = logs(state, skipped=4)
    assert any(m.startswith("not run with --models: register ") for m in messages)


def test_a_changed_param_runs_its_stages_and_what_follows_only(flow_repo, tmp_path):
    root, _ = flow_repo
    original, lock = (root / "params.yaml").read_text(), (root / "dvc.lock").read_text()
    shutil.copytree(root / "metrics", tmp_path / "metrics")  # DVC caches none of them
    params = yaml.safe_load(original)
    params["models"]["cnn"]["weight_decay"] *= 2
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        state = pipeline(project_dir=str(root), return_state=True)
    finally:
        # The copy as it was (the models from DVC's cache): the next tests retrain nothing.
        (root / "params.yaml").write_text(original)
        (root / "dvc.lock").write_text(lock)
        shutil.rmtree(root / "metrics")
        shutil.copytree(tmp_path / "metrics", root / "metrics")
        dvc = [sys.executable, "-m", "dvc"]
        subprocess.run([*dvc, "checkout", "--force"], cwd=root, check=True, capture_output=True)
    status = subprocess.run([*dvc, "status"], cwd=root, check=True, capture_output=True)
    assert "up to date" in status.stdout.decode()
    ran = {stage for stage, outcome in state.result().items() if outcome == "ran"}
    assert ran == {"train@cnn", "evaluate@cnn", "register"}
    messages = logs(state, skipped=len(STAGES) - len(ran))
    assert sum(SKIPPED in m for m in messages) == len(STAGES) - len(ran)


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


def test_a_busy_dvc_lock_is_a_transient_failure():
    busy = [
        "ERROR: Unable to acquire lock. Most likely another DVC process is running or was "
        "terminated abruptly. Check the page <https://dvc.org/doc/user-guide/troubleshooting"
        "#lock-issue> for other possible reasons and to learn how to resolve this."
    ]
    assert StageFailed("prepare@digits", "busy", _stage_exit_code(busy)).transient
    failed = [
        "ERROR: failed to reproduce 'train@cnn': failed to run: python -m stages.train "
        '"$DVC_STAGE", exited with 2'
    ]
    assert not StageFailed("train@cnn", "bad input", _stage_exit_code(failed)).transient


def test_a_dvc_process_stopped_by_a_signal_says_so():
    """Its last line is the stage's command, which says nothing of what happened."""
    lines = ["Running stage 'evaluate@fcn':", '> python -m stages.evaluate "$DVC_STAGE"']
    assert _error_message(lines, -15) == "dvc was stopped by SIGTERM, from outside the flow"
    assert _error_message([*lines, "error: no such file"], 2) == "no such file"


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
