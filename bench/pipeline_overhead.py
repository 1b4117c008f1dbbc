"""What the Prefect flow costs over plain `dvc repro`, measured side by side in one run.

In fresh copies of the repository (tracked files only, each with its own MLflow store): plain
`dvc repro` of the whole pipeline in one, `python -m flows.pipeline` over the same work in
another, then both again with nothing changed: the flow from a cold start (its temporary
Prefect server included) and against a running Prefect server, twice: the first flow run that
server sees (it creates the flow and warms its own caches), and the next one, as every later
scheduled run finds it; `--rounds` times, alternating, medians. Prints one JSON line per
measurement and one with the ratios. Goals: the flow adds at most 5 % when work runs; with
nothing changed it takes under 6 s from a cold start and under 3 s against a running server
(its second run).

    python bench/pipeline_overhead.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EMPTY_FLOW = """
from prefect import flow, task

@task
def nothing():
    pass

@flow
def empty():
    nothing()

empty()
"""


def fresh_copy(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for rel in filter(None, files):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


@contextmanager
def prefect_server(home: Path, port: int = 4299) -> Iterator[str]:
    """A `prefect server start` on 127.0.0.1:`port` for the block; yields its API URL."""
    api = f"http://127.0.0.1:{port}/api"
    env = os.environ | {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("the Prefect server did not start")
                time.sleep(0.5)
        yield api
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def timed(command: list[str], cwd: Path, **extra_env: str) -> float:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}",
        **extra_env,
    }
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description="Prefect flow vs plain dvc repro.")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    dvc = [str(BIN / "dvc"), "repro"]
    prefect = [sys.executable, "-m", "flows.pipeline"]
    runs: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            plain = fresh_copy(Path(tmp) / "plain")
            flow = fresh_copy(Path(tmp) / "flow")
            with prefect_server(Path(tmp) / "prefect") as api:
                warm = {"PREFECT_API_URL": api}
                for name, command, where, env in (
                    ("dvc_repro_work_s", dvc, plain, {}),
                    ("flow_work_s", prefect, flow, {}),
                    ("dvc_repro_nothing_changed_s", dvc, plain, {}),
                    ("flow_nothing_changed_cold_s", prefect, flow, {}),
                    ("flow_nothing_changed_server_s", prefect, flow, warm),
                    ("flow_nothing_changed_server_again_s", prefect, flow, warm),
                    ("empty_flow_cold_s", [sys.executable, "-c", EMPTY_FLOW], flow, {}),
                ):
                    seconds = timed(command, where, **env)
                    runs.setdefault(name, []).append(seconds)
                    record = {"round": round_, "measurement": name, "seconds": round(seconds, 2)}
                    print(json.dumps(record), flush=True)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    print(
        json.dumps(
            {
                "median_seconds": {name: round(v, 2) for name, v in medians.items()},
                "flow_over_dvc_repro_when_working": round(
                    medians["flow_work_s"] / medians["dvc_repro_work_s"], 3
                ),
                "flow_nothing_changed_cold_under_6s": medians["flow_nothing_changed_cold_s"] < 6,
                "flow_nothing_changed_server_under_3s": (
                    medians["flow_nothing_changed_server_again_s"] < 3
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
