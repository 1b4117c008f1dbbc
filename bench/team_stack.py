"""What a team stack (README "A team stack") costs and saves, measured side by side in one run.

Starts a stack of its own (stack/, on free 127.0.0.1 ports in a temporary folder) and stops it at
the end. In fresh copies of the repository, each with the same params:

- `pipeline_sqlite_s`: `python -m flows.pipeline` as on a laptop: a SQLite MLflow store in the
  copy and a temporary Prefect server;
- `pipeline_stack_s`: the same flow in a copy pointed at the stack as `make stack` prints
  (PostgreSQL-backed MLflow server, artifacts in S3, the stack's Prefect server), then
  `push_s`: its `dvc push` to the stack's bucket;
- a teammate's clone of that copy (its git files only): `pull_s` for `dvc pull` and
  `repro_noop_s` for the `dvc repro` after it, which must run no stage, against
  `retrain_s`: `dvc repro` from scratch in another such clone (SQLite store of its own).

Prints one JSON line per measurement and, last, one with the medians over `--rounds` (each
round in fresh copies, against the one stack) and their ratios. `--epochs` and `--models`
shrink the params (every model cut to N epochs; only those models and their datasets) for a
quick run.

    python bench/team_stack.py [--rounds 3] [--epochs 2] [--models cnn fcn]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the stack and bench packages of this checkout

from bench.suite.args import positive  # noqa: E402
from bench.suite.repo import copy_repo  # noqa: E402

# The stack's modules are imported where the bench starts it: they need the stack's own
# packages (stack/requirements.txt, installed by `make stack`), which `--help` does not.

BIN = Path(sys.executable).parent
FLOW = [sys.executable, "-m", "flows.pipeline"]
# What would point a run elsewhere than this benchmark says.
UNSET = ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "DVC_REMOTE", "AWS_ENDPOINT_URL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shrink(repo: Path, epochs: int | None, models: list[str] | None) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    if models:
        unknown = sorted(set(models) - set(params["models"]))
        if unknown:
            sys.exit(f"unknown models {unknown}; params.yaml has {sorted(params['models'])}")
        params["models"] = {m: params["models"][m] for m in models}
        datasets = {cfg["dataset"] for cfg in params["models"].values()}
        params["datasets"] = {d: params["datasets"][d] for d in sorted(datasets)}
        params["tune"] = {k: v for k, v in params.get("tune", {}).items() if k in models}
    if epochs:
        for cfg in params["models"].values():
            cfg |= {"max_epochs": epochs, "min_steps": 0}
        # A few epochs need not beat the baselines: register promotes without that gate.
        params["register"]["beat_baselines"] = False
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # The repository's own models' metrics are tracked: not this run's.
    shutil.rmtree(repo / "metrics", ignore_errors=True)


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    return env | {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def sqlite_env(repo: Path, home: Path) -> dict[str, str]:
    return base_env(home) | {"MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}"}


def stack_env(repo: Path, home: Path, state) -> dict[str, str]:  # noqa: ANN001 (stack State)
    """The lines `make stack` prints, run in `repo` (the `dvc remote` ones) or exported."""
    from stack.lines import shell_lines
    from stack.servers import client_env

    env = base_env(home) | client_env(state)
    for line in shell_lines(state):
        if line.startswith("dvc "):
            subprocess.run(shlex.split(line), cwd=repo, env=env, check=True, capture_output=True)
    return env


def timed(name: str, command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(
            f"{name}: {' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    print(json.dumps({"measure": name, "seconds": round(seconds, 1)}), flush=True)
    return seconds, done.stdout


def one_round(state, work: Path, epochs: int | None, models: list[str] | None) -> dict:  # noqa: ANN001
    """Every measurement once, in fresh copies under `work`: seconds by measurement."""
    sqlite = copy_repo(work / "sqlite")
    shrink(sqlite, epochs, models)
    on_stack = copy_repo(work / "stack")
    shutil.copy2(sqlite / "params.yaml", on_stack / "params.yaml")
    shutil.rmtree(on_stack / "metrics", ignore_errors=True)
    figures = {
        "pipeline_sqlite_s": timed(
            "pipeline_sqlite_s", FLOW, sqlite, sqlite_env(sqlite, work / "prefect-a")
        )[0]
    }
    env = stack_env(on_stack, work / "prefect-b", state)
    figures["pipeline_stack_s"] = timed("pipeline_stack_s", FLOW, on_stack, env)[0]
    figures["push_s"] = timed("push_s", [str(BIN / "dvc"), "push"], on_stack, env)[0]

    teammate = copy_repo(work / "teammate", on_stack)
    env = stack_env(teammate, work / "prefect-c", state)
    figures["pull_s"] = timed("pull_s", [str(BIN / "dvc"), "pull"], teammate, env)[0]
    figures["repro_noop_s"], said = timed(
        "repro_noop_s", [str(BIN / "dvc"), "repro"], teammate, env
    )
    if "Running stage" in said:
        sys.exit(f"the teammate's dvc repro ran stages after dvc pull:\n{said[-3000:]}")
    scratch = copy_repo(work / "scratch", on_stack)
    figures["retrain_s"] = timed(
        "retrain_s", [str(BIN / "dvc"), "repro"], scratch, sqlite_env(scratch, work / "prefect-d")
    )[0]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description="The pipeline on a team stack vs a laptop.")
    parser.add_argument("--epochs", type=int, help="cut every model to this many epochs")
    parser.add_argument("--models", nargs="+", help="only these models (and their datasets)")
    parser.add_argument("--rounds", type=positive, default=1, help="repeat; medians (default 1)")
    args = parser.parse_args()
    from stack.config import StackConfig
    from stack.lifecycle import down, up

    # Not tempfile's 700 folder: PostgreSQL runs as `postgres` under root (stack.postgres).
    folder = Path(tempfile.mkdtemp(prefix="team-stack-bench-"))
    folder.chmod(0o755)
    ports = {name: free_port() for name in ("postgres", "s3", "mlflow", "prefect")}
    rounds = []
    try:
        started = time.perf_counter()
        state, _ = up(StackConfig(folder=folder / "stack", host="127.0.0.1", ports=ports))
        print(
            json.dumps(
                {"measure": "stack_up_s", "seconds": round(time.perf_counter() - started, 1)}
            )
        )
        for number in range(args.rounds):
            rounds.append(one_round(state, folder / f"work-{number}", args.epochs, args.models))
    finally:
        down(folder / "stack")
        shutil.rmtree(folder, ignore_errors=True)
    figures = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    ratios = {
        "stack_over_sqlite": figures["pipeline_stack_s"] / figures["pipeline_sqlite_s"],
        "pull_and_noop_repro_over_retrain": (figures["pull_s"] + figures["repro_noop_s"])
        / figures["retrain_s"],
    }
    print(
        json.dumps(
            {
                "epochs": args.epochs,
                "models": args.models,
                "rounds": args.rounds,
                **{k: round(v, 1) for k, v in figures.items()},  # medians over rounds
                **{k: round(v, 3) for k, v in ratios.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
