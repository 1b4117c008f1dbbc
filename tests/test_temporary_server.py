"""The command line's own temporary Prefect server (flows/temporary_server.py): started when no
API is configured, holding the run and every log line, stopped at the end; left alone when an
API is configured; a clear error when it cannot start."""

import os
import re
import sqlite3
import subprocess
import sys

import psutil
from prefect.settings import PREFECT_API_URL

from flows.temporary_server import healthy, prefect_api

BIN = os.path.dirname(sys.executable)
STARTED = re.compile(r"Starting a temporary Prefect server on (http://127\.0\.0\.1:\d+/api)")


def _cli(root, prefect_home, *args, **env):
    environ = {
        **os.environ,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        **env,
    }
    environ.pop("PREFECT_API_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "flows.pipeline", *args],
        cwd=root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_command_line_runs_on_its_own_server_which_keeps_every_log_line(flow_repo, tmp_path):
    root, _ = flow_repo
    done = _cli(root, tmp_path / "prefect", "--stages", "prepare@digits")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    api = STARTED.search(done.stderr).group(1)
    assert not healthy(api)  # stopped with the run
    with sqlite3.connect(tmp_path / "prefect" / "prefect.db") as db:
        (state,) = db.execute("SELECT state_type FROM flow_run").fetchone()
        messages = [m for (m,) in db.execute("SELECT message FROM log")]
    assert state == "COMPLETED"
    # The workers were drained into the server before it stopped: the run's last lines too.
    assert any(m.startswith("Finished in state Completed") for m in messages)
    assert sum("unchanged since dvc.lock" in m for m in messages) == 2  # ingest, prepare


def test_a_server_that_cannot_start_is_one_clear_error(flow_repo, tmp_path):
    root, _ = flow_repo
    broken = f"sqlite+aiosqlite:///{tmp_path / 'no such folder' / 'prefect.db'}"
    done = _cli(root, tmp_path / "prefect", PREFECT_API_DATABASE_CONNECTION_URL=broken)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "error: the temporary Prefect server exited with status 3 before it answered (its "
        "error is above); or set PREFECT_API_URL to a running Prefect server"
    )


def test_a_configured_api_is_used_and_the_early_server_stopped(prefect_harness):
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    with prefect_api() as api:
        assert api == PREFECT_API_URL.value()  # the harness's server
        # The server started before Prefect's settings were read is gone already.
        assert {p.pid for p in psutil.Process().children(recursive=True)} <= children


def test_without_an_api_or_a_temporary_server_prefect_says_so(flow_repo, tmp_path):
    root, _ = flow_repo
    done = _cli(root, tmp_path / "prefect", PREFECT_SERVER_EPHEMERAL_ENABLED="false")
    assert done.returncode == 1
    assert "Starting a temporary Prefect server" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: No Prefect API URL provided.")
