"""`make serve`'s pieces against a real `prefect server start` on a free 127.0.0.1 port."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_repo, shrink_params
from tests.test_serve import free_port


def _api(url: str, payload: dict | None = None) -> object:
    request = urllib.request.Request(
        url,
        data=None if payload is None else json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if payload is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
            if found:
                return found
        except OSError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


@pytest.mark.server
@pytest.mark.slow
def test_served_deployment_has_the_schedule_and_runs(tmp_path):
    root = copy_repo(tmp_path / "repo")
    shrink_params(root)
    schedule = yaml.safe_load((root / "params.yaml").read_text())["flow"]["schedule"]
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": api,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    log = (tmp_path / "serve.log").open("w")
    served = subprocess.Popen(
        [sys.executable, "-m", "flows.deploy", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deployment = _wait(
            lambda: _api(f"{api}/deployments/name/train-pipeline/scheduled"), 180, "the deployment"
        )
        cron = deployment["schedules"][0]["schedule"]
        assert (cron["cron"], cron["timezone"]) == (schedule["cron"], schedule["timezone"])
        assert deployment["global_concurrency_limit"]["limit"] == 1
        assert deployment["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
        # Served too, without a schedule: `serve()` creates the deployments one after another,
        # so under load this one can still be missing when the first is there (a 404).
        on_demand = _wait(
            lambda: _api(f"{api}/deployments/name/batch-predict/on-demand"), 60, "batch-predict"
        )
        assert not on_demand["schedules"]

        run = _api(f"{api}/deployments/{deployment['id']}/create_flow_run", {})
        final = _wait(
            lambda: (
                (state := _api(f"{api}/flow_runs/{run['id']}")["state"])["type"]
                in ("COMPLETED", "FAILED", "CRASHED")
                and state
            ),
            420,
            "the triggered run",
        )
        assert final["type"] == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
        assert (root / "metrics" / "registry.json").is_file()
    finally:
        os.killpg(served.pid, 15)
        served.wait(timeout=30)
        log.close()
        # flows.deploy started the server in a session of its own: stop it too.
        subprocess.run(["pkill", "-f", f"prefect server start --host 127.0.0.1 --port {port}"])


@pytest.mark.server
def test_the_ui_of_a_server_on_another_port_calls_that_port(tmp_path, monkeypatch):
    from flows.deploy import ensure_server

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_UI_API_URL", raising=False)
    port = free_port()
    api = ensure_server("127.0.0.1", port, tmp_path / "server.log")
    try:
        assert api == f"http://127.0.0.1:{port}/api"
        assert _api(f"http://127.0.0.1:{port}/ui-settings")["api_url"] == api
        # Prefect's own client lists work pools (3.8.8's server refused its null filters).
        env = {**os.environ, "PREFECT_API_URL": api}
        prefect = str(Path(sys.executable).parent / "prefect")
        create = [prefect, "work-pool", "create", "training", "--type", "process"]
        subprocess.run(create, env=env, check=True, capture_output=True)
        listed = subprocess.run(
            [prefect, "work-pool", "ls"], env=env, check=True, capture_output=True, text=True
        )
        assert "training" in listed.stdout
    finally:
        subprocess.run(["pkill", "-f", f"prefect server start --host 127.0.0.1 --port {port}"])
