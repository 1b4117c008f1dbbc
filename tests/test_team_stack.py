"""The pipeline on a team stack (README "A team stack"), configured as a user would: a clone
pointed at the stack by the lines `make stack` prints runs `python -m flows.pipeline --push`;
a teammate's fresh clone pulls its data and models and reproduces nothing; and the training
deployment on the stack's work pool runs on its worker, in a checkout of its own."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.suite.repo import copy_repo
from tests.conftest import shrink_to
from tests.servers import digits_champion_predicts
from tests.stack_fixtures import MISSING, open_folder, point_at_stack, running_stack
from tests.test_schedule import _api, _wait

for module in ("moto", "psycopg2", "boto3"):  # before the stack's modules import them
    pytest.importorskip(module, reason=MISSING)

from mlflow import MlflowClient  # noqa: E402

from stack.config import DVC_BUCKET, MLFLOW_BUCKET, WORK_POOL  # noqa: E402
from stack.servers import s3_client  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.slow]
MODELS = {"cnn": "digits", "fcn": "japanese_vowels"}  # one per dataset: a champion each
stack_folder = pytest.fixture(open_folder, scope="module")


@pytest.fixture(scope="module")
def stack(stack_folder):
    yield from running_stack(stack_folder)


def _run(repo: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)


def _said(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


@pytest.fixture(scope="module")
def pushed(stack, tmp_path_factory):
    """Clone A on the stack after `python -m flows.pipeline --push` (what `make run` runs)."""
    work = tmp_path_factory.mktemp("team")
    repo = copy_repo(work / "a")
    shrink_to(repo, MODELS)
    env = point_at_stack(repo, stack) | {"PREFECT_HOME": str(work / "prefect")}
    done = _run(repo, env, sys.executable, "-m", "flows.pipeline", "--push")
    assert done.returncode == 0, _said(done)
    return repo, env


def test_the_pipeline_tracks_registers_and_publishes_through_the_stack(stack, pushed):
    repo, _ = pushed
    client = MlflowClient(stack.url("mlflow"))
    s3 = s3_client(stack)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=MLFLOW_BUCKET)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    for model in MODELS:
        metrics = json.loads((repo / "metrics" / "train" / f"{model}.json").read_text())
        run = client.get_run(metrics["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # served by the server
        prefix = f"{run.info.experiment_id}/{run.info.run_id}/artifacts/"
        assert any(key.startswith(prefix) for key in keys), f"no artifacts of {model} in S3"
    for dataset in set(MODELS.values()):
        assert client.get_model_version_by_alias(f"{dataset}-classifier", "champion")
    api = f"{stack.url('prefect')}/api"
    runs = _api(f"{api}/flow_runs/filter", {"flows": {"name": {"any_": ["train-pipeline"]}}})
    assert [r["state"]["type"] for r in runs] == ["COMPLETED"]
    assert s3.list_objects_v2(Bucket=DVC_BUCKET)["KeyCount"] > 0  # what --push sent


def test_the_champion_loads_in_a_fresh_process_through_the_server_alone(stack, pushed, tmp_path):
    assert digits_champion_predicts(stack.url("mlflow"), tmp_path)


def test_a_teammate_pulls_reproduces_nothing_and_predicts_at_once(stack, pushed, tmp_path):
    a, _ = pushed
    b = copy_repo(tmp_path / "b", a)
    env = point_at_stack(b, stack)
    pulled = _run(b, env, "dvc", "pull")
    assert pulled.returncode == 0, _said(pulled)
    status = _run(b, env, "dvc", "status")
    assert "Data and pipelines are up to date." in status.stdout, _said(status)
    repro = _run(b, env, "dvc", "repro")
    assert repro.returncode == 0, _said(repro)
    assert "Running stage" not in repro.stdout
    images = sorted((b / "data" / "raw" / "digits" / "3").iterdir())
    out = tmp_path / "predictions.csv"
    predicted = _run(
        b, env, sys.executable, "-m", "flows.predict", "digits", str(images[0].parent), str(out)
    )
    assert predicted.returncode == 0, _said(predicted)
    with out.open() as f:
        assert len(list(csv.DictReader(f))) == len(images)


def test_pushing_without_a_remote_names_what_to_configure(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    env = os.environ | {"PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("DVC_REMOTE", None)
    done = _run(repo, env, sys.executable, "-m", "flows.pipeline", "--push")
    assert done.returncode == 1
    assert "no DVC remote to push to" in done.stderr
    assert "dvc remote add --local --default" in done.stderr
    assert not (repo / "data" / "raw" / "digits").exists()  # checked before any stage


def test_the_deployment_on_the_work_pool_runs_on_the_worker_in_its_own_checkout(stack, pushed):
    a, env = pushed
    # The worker clones what git holds: commit clone A's state, as a team pushes it.
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "add", "-A"], cwd=a, check=True)
    subprocess.run([*git, "commit", "-qm", "clone A after its run"], cwd=a, check=True)
    deployed = _run(
        a, env, sys.executable, "-m", "flows.deploy", "--pool", WORK_POOL, "--source", str(a)
    )
    assert deployed.returncode == 0, _said(deployed)
    api = f"{stack.url('prefect')}/api"
    deployment = _api(f"{api}/deployments/name/train-pipeline/scheduled")
    assert deployment["work_pool_name"] == WORK_POOL
    assert deployment["schedules"], "no schedule"
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"

    parameters = {"stages": ["prepare@digits"]}
    run = _api(f"{api}/deployments/{deployment['id']}/create_flow_run", {"parameters": parameters})
    final = _wait(
        lambda: (
            (state := _api(f"{api}/flow_runs/{run['id']}")["state"])["type"]
            in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
            and state
        ),
        600,
        "the worker's run",
    )
    worker_log = Path(stack.processes["worker"].log).read_text()[-4000:]
    assert final["type"] == "COMPLETED", worker_log
    tasks = _wait(lambda: _settled_tasks(api, run["id"]), 60, "the run's task states")
    # Both stages are up to date in clone A: they ran, so the run had a checkout of its own.
    assert {t["name"]: t["state"]["name"] for t in tasks} == {
        "ingest@digits": "Completed",
        "prepare@digits": "Completed",
    }


def _settled_tasks(api: str, flow_run_id: str) -> list[dict]:
    """The run's task runs once each has its final state (they arrive as events), else []."""
    found = _api(f"{api}/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    return found if all(t["state"]["type"] == "COMPLETED" for t in found) else []
