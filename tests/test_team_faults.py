"""Faults on a team stack (README "A team stack"): its MLflow server killed part-way through
`register`, and its S3 store stopped when `dvc push` is due, in a clone pointed at the stack as
a user points one. The stack's own processes are stopped and started again (stack.processes),
so each fault is a real server going away, never a mock.

The S3 fault comes last: moto keeps its buckets in memory, so after its restart the buckets are
made again as `make stack` makes them, and the MLflow artifacts written before are gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

import pytest

from bench.suite.repo import copy_repo
from tests.conftest import shrink_to
from tests.servers import digits_champion_predicts
from tests.stack_fixtures import (
    MISSING,
    open_folder,
    point_at_stack,
    running_stack,
)

for module in ("moto", "psycopg2", "boto3"):  # before the stack's modules import them
    pytest.importorskip(module, reason=MISSING)

from mlflow import MlflowClient  # noqa: E402

from stack import postgres  # noqa: E402
from stack.config import DVC_BUCKET  # noqa: E402
from stack.lifecycle import HEALTH_TIMEOUT  # noqa: E402
from stack.processes import spawn, stop, wait_until  # noqa: E402
from stack.servers import (  # noqa: E402
    answers,
    create_buckets,
    mlflow_command,
    s3_client,
    s3_command,
)
from stages.register import CHALLENGER, CHAMPION, DECISION  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.slow]
MODELS = {"cnn": "digits", "fcn": "japanese_vowels"}  # one per dataset: a champion each
# The stage gives up on a server that does not answer at once; the flow retries it after 20 s,
# 40 s and 80 s: room for an MLflow server to start again on a busy machine.
FLOW = {"retries": 3, "retry_backoff_seconds": 20.0}
TRACKING = {"retries": 0, "timeout_seconds": 2}
TRANSIENT = "exited with 75"  # DVC's line for a stage that failed transiently

stack_folder = pytest.fixture(open_folder, scope="module")


@pytest.fixture(scope="module")
def stack(stack_folder):
    yield from running_stack(stack_folder)


@pytest.fixture(scope="module")
def evaluated(stack, tmp_path_factory):
    """A clone on the stack whose models are trained and evaluated, not yet registered."""
    work = tmp_path_factory.mktemp("faults")
    repo = copy_repo(work / "repo")
    shrink_to(repo, MODELS, flow=FLOW, mlflow=TRACKING)
    env = point_at_stack(repo, stack) | {"PREFECT_HOME": str(work / "prefect")}
    done = _run(repo, env, "--stages", "evaluate")
    assert done.returncode == 0, _said(done)
    return repo, env


def _run(repo: Path, env: dict[str, str], *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "flows.pipeline", *options]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)


def _said(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


def _restart(state, folder: Path, name: str, command, health: str) -> None:  # noqa: ANN001
    """Starts the stack's server `name` again on its port, recorded so that `down` stops it."""
    log = Path(state.processes[name].log)
    argv, env = command(state)
    state.processes[name] = spawn(argv, log, env, cwd=Path.cwd())
    state.save(folder)
    wait_until(name, lambda: answers(health), state.processes[name], HEALTH_TIMEOUT)


def _registry_rows(state) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:  # noqa: ANN001
    """The model versions in the MLflow server's own PostgreSQL store, and those decided: read
    from the database, so it answers while the server is down."""
    connection = postgres.connect(state, "mlflow")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT name, version FROM model_versions")
            versions = {(name, str(version)) for name, version in cursor.fetchall()}
            cursor.execute(
                "SELECT name, version FROM model_version_tags WHERE key = %s", (DECISION,)
            )
            decided = {(name, str(version)) for name, version in cursor.fetchall()}
    finally:
        connection.close()
    return versions, decided


def _kill_group(started) -> None:  # noqa: ANN001 (stack.state.Started)
    """A crash, not a shutdown: SIGKILL to the server's whole process group, then reaped."""
    with suppress(ProcessLookupError):
        os.killpg(started.pid, signal.SIGKILL)
    stop(started)


def test_register_survives_its_tracking_server_killed_part_way_and_leaves_the_registry_consistent(
    stack, stack_folder, evaluated, tmp_path
):
    """The server is killed the moment `register` has created its first model version (seen in
    PostgreSQL), so the stage loses it between creating a version and deciding it: the retry
    must find that version rather than create a second, decide it once, and go on."""
    repo, env = evaluated
    assert _registry_rows(stack) == (set(), set())
    flow = subprocess.Popen(
        [sys.executable, "-m", "flows.pipeline"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    failed_once = threading.Event()

    def read() -> None:
        assert flow.stdout is not None
        for line in flow.stdout:
            seen.append(line)
            if TRANSIENT in line:
                failed_once.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 600
        while not (at_kill := _registry_rows(stack))[0]:
            assert flow.poll() is None, "the flow ended first:\n" + "".join(seen[-60:])
            assert time.monotonic() < deadline, "no version in 600 s:\n" + "".join(seen[-60:])
            time.sleep(0.02)
        _kill_group(stack.processes["mlflow"])
        # Part-way: a version exists and the datasets are not all decided.
        assert len(at_kill[1]) < len(MODELS), at_kill
        assert failed_once.wait(300), "register never failed:\n" + "".join(seen[-60:])
        # The flow now waits to retry: the server comes back meanwhile.
        _restart(stack, stack_folder, "mlflow", mlflow_command, f"{stack.url('mlflow')}/health")
        code = flow.wait(900)
    finally:
        if flow.poll() is None:
            flow.kill()
    reader.join(30)
    output = "".join(seen)
    assert code == 0, output[-6000:]
    # Prefect's retry ran the stage a second time, not a new flow run.
    assert "Retry 1/3 will start" in output, output[-6000:]
    assert output.count("> python -m stages.register") == 2, output[-6000:]

    client = MlflowClient(stack.url("mlflow"))
    for model, dataset in MODELS.items():
        name = f"{dataset}-classifier"
        versions = client.search_model_versions(f"name='{name}'")
        # One training, one version, decided once; both aliases on it.
        assert [(v.version, v.status, v.tags["model"]) for v in versions] == [("1", "READY", model)]
        assert versions[0].tags[DECISION] == "promoted"
        assert client.get_model_version_by_alias(name, CHAMPION).version == "1"
        assert client.get_model_version_by_alias(name, CHALLENGER).version == "1"
    assert _registry_rows(stack)[1] == {(f"{d}-classifier", "1") for d in MODELS.values()}
    # The retried run's registry.json says what the registry says.
    assert '"champion_version": "1"' in (repo / "metrics" / "registry.json").read_text()
    assert digits_champion_predicts(stack.url("mlflow"), tmp_path)


def test_a_push_to_a_stopped_s3_store_fails_clearly_and_succeeds_once_it_is_back(
    stack, stack_folder, evaluated
):
    repo, env = evaluated
    done = _run(repo, env)  # register, unless the test above did: only the push is left
    assert done.returncode == 0, _said(done)
    s3 = s3_client(stack)
    assert s3.list_objects_v2(Bucket=DVC_BUCKET)["KeyCount"] == 0

    stop(stack.processes["s3"])
    failed = _run(repo, env, "--push")
    assert failed.returncode == 1, _said(failed)
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: dvc push to stack failed: "), _said(failed)
    assert stack.url("s3") in last or "connect" in last.lower(), last

    # moto starts empty: the buckets again, as `make stack` makes them.
    _restart(stack, stack_folder, "s3", s3_command, f"{stack.url('s3')}/moto-api/")
    create_buckets(stack)
    pushed = _run(repo, env, "--push")
    assert pushed.returncode == 0, _said(pushed)
    assert s3.list_objects_v2(Bucket=DVC_BUCKET)["KeyCount"] > 0
    status = subprocess.run(
        ["dvc", "status", "--cloud"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert "Cache and remote 'stack' are in sync." in status.stdout, status.stdout + status.stderr
