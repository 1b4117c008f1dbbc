"""`make stack`: the team stack started on free 127.0.0.1 ports in a temporary folder, used through
its servers the way a clone would, started a second time, and stopped without a trace."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.stack_fixtures import MISSING, open_folder, require_stack
from tests.stack_fixtures import config as _config

for module in ("moto", "psycopg2", "boto3"):  # before the stack's modules import them
    pytest.importorskip(module, reason=MISSING)

import psutil  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from stack.config import MLFLOW_BUCKET, WORK_POOL, WORKER_NAME, StackError  # noqa: E402
from stack.lifecycle import down, up  # noqa: E402
from stack.processes import check_port_free  # noqa: E402
from stack.servers import s3_client  # noqa: E402
from stack.state import State  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
folder = pytest.fixture(open_folder)
module_folder = pytest.fixture(open_folder, scope="module")


@pytest.fixture(scope="module")
def stack(module_folder):
    require_stack()
    cfg = _config(module_folder)
    state, already = up(cfg)
    assert not already
    yield cfg, state
    down(module_folder)  # when a test before test_down_stops_every_process failed


def test_a_port_in_use_is_an_error_naming_port_and_server(tmp_path):
    cfg = _config(tmp_path / "stack")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", cfg.ports["mlflow"]))
        taken.listen()
        with pytest.raises(StackError, match=f"port {cfg.ports['mlflow']} for mlflow .* in use"):
            up(cfg)
    assert not (tmp_path / "stack").exists()  # nothing was started or created


def test_a_server_that_does_not_answer_in_time_stops_the_rest(folder):
    require_stack()
    cfg = _config(folder)
    with pytest.raises(StackError, match="did not become healthy in 1 s; .*logs/.*log ends"):
        up(cfg, timeout=1)
    assert State.load(folder) is None
    assert not (folder / "postgres" / "postmaster.pid").exists()
    for server, port in cfg.ports.items():
        check_port_free(server, "127.0.0.1", port)


def test_mlflow_tracks_through_the_server_into_s3(stack, tmp_path, monkeypatch):
    cfg, state = stack
    # A client of the stack needs no S3 settings: the server proxies artifacts.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    client = MlflowClient(tracking_uri=state.url("mlflow"))
    experiment = client.create_experiment("stack-test")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "val_acc", 0.75)
    note = tmp_path / "note.txt"
    note.write_text("through the server\n")
    client.log_artifact(run.info.run_id, str(note))
    client.set_terminated(run.info.run_id)

    assert client.get_run(run.info.run_id).data.metrics == {"val_acc": 0.75}
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    listed = s3_client(state).list_objects_v2(Bucket=MLFLOW_BUCKET)["Contents"]
    assert f"{experiment}/{run.info.run_id}/artifacts/note.txt" in [o["Key"] for o in listed]


def test_prefect_lists_the_work_pool_and_its_worker(stack):
    _, state = stack
    api = f"{state.url('prefect')}/api"
    with urllib.request.urlopen(f"{api}/work_pools/{WORK_POOL}") as response:
        assert json.load(response)["type"] == "process"
    request = urllib.request.Request(
        f"{api}/work_pools/{WORK_POOL}/workers/filter",
        data=b"{}",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        workers = {w["name"]: w["status"] for w in json.load(response)}
    assert workers.get(WORKER_NAME) == "ONLINE"


def test_starting_twice_is_harmless(stack):
    cfg, state = stack
    again, already = up(cfg)
    assert already
    assert again.processes == state.processes


def test_env_reprints_the_lines_for_a_clone(stack):
    cfg, state = stack
    printed = subprocess.run(
        [sys.executable, "-m", "stack", "env", "--folder", str(cfg.folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert f"export MLFLOW_TRACKING_URI={state.url('mlflow')}" in printed
    assert f"export PREFECT_API_URL={state.url('prefect')}/api" in printed
    assert f"dvc remote modify --local stack endpointurl {state.url('s3')}" in printed


def test_down_stops_every_process(stack):
    cfg, state = stack
    assert down(cfg.folder)
    for name, started in state.processes.items():
        assert not started.alive(), name
    left = [p.pid for p in psutil.process_iter() if _in_groups(p, state)]
    assert left == []
    assert State.load(cfg.folder) is None
    assert not (Path(state.postgres_data) / "postmaster.pid").exists()
    for server, port in cfg.ports.items():
        check_port_free(server, "127.0.0.1", port)


def _in_groups(process: psutil.Process, state: State) -> bool:
    try:
        return os.getpgid(process.pid) in {s.pid for s in state.processes.values()} and (
            process.status() != psutil.STATUS_ZOMBIE
        )
    except (psutil.Error, OSError):
        return False
