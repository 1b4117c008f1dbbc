"""Trials per hour of a search with 1 and with K worker processes, side by side in one run.

In a temporary copy of the repository, `python -m flows.tune <model> --trials N --workers W`
runs a fresh study (its own OPTUNA_STORAGE file) for W = 1 and W = K, alternating over
`--rounds`. Every trial costs the same: the space is the learning rate alone (the model's
shape and batch size fixed) and pruning is off. Trials per hour count from the first trial's
start to the last one's end, as Optuna records them (the flow's start-up, its temporary Prefect
server included, is reported beside them). Each worker gets cores / W torch threads.

    python bench/tune_throughput.py                       # lstm on japanese_vowels, 1 vs 2
    python bench/tune_throughput.py --trials 4 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml
from suite.args import positive
from suite.repo import BIN, ROOT, copy_repo


def measure(repo: Path, model: str, trials: int, workers: int, tag: str) -> dict:
    """One fresh study of `trials` trials in `workers` processes: trials per hour and the
    flow's whole wall time."""
    storage = f"sqlite:///{repo / f'optuna-{tag}.db'}"
    env = os.environ | {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
        "OPTUNA_STORAGE": storage,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    command = [sys.executable, "-m", "flows.tune", model, "--trials", str(trials)]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--workers", str(workers)], cwd=repo, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the search failed:\n{(done.stdout + done.stderr)[-3000:]}")
    (name,) = optuna.get_all_study_names(storage)
    finished = optuna.load_study(study_name=name, storage=storage).trials
    span = (
        max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)
    ).total_seconds()
    return {
        "trials": len(finished),
        "span": span,
        "per_hour": len(finished) / span * 3600,
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lstm")
    parser.add_argument("--trials", type=positive, default=6)
    parser.add_argument("--workers", type=positive, default=2, help="K, against 1")
    parser.add_argument("--rounds", type=positive, default=2)
    args = parser.parse_args()
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["tune"] = {
        args.model: {
            "trials": args.trials,
            "folds": 1,
            "prune": False,
            "space": {"lr": {"log_uniform": [1.0e-3, 3.0e-2]}},
        }
    }
    results: dict[int, list[dict]] = {1: [], args.workers: []}
    with tempfile.TemporaryDirectory(prefix="tune_throughput_") as tmp:
        repo = copy_repo(Path(tmp) / "repo")
        (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        for round_ in range(args.rounds):
            for workers in results:
                found = measure(repo, args.model, args.trials, workers, f"{round_}-{workers}")
                print(f"round {round_}, {workers} worker(s): {found}", file=sys.stderr)
                results[workers].append(found)
    print(f"| workers | trials/hour | seconds for {args.trials} trials | flow wall s |")
    print("| ---: | ---: | ---: | ---: |")
    for workers, runs in results.items():
        per_hour = statistics.median(r["per_hour"] for r in runs)
        span = statistics.median(r["span"] for r in runs)
        wall = statistics.median(r["wall"] for r in runs)
        print(f"| {workers} | {per_hour:.0f} | {span:.0f} | {wall:.0f} |")
    ratio = statistics.median(r["per_hour"] for r in results[args.workers]) / statistics.median(
        r["per_hour"] for r in results[1]
    )
    print(f"\n{args.workers} workers / 1 worker: {ratio:.2f}× the trials per hour")


if __name__ == "__main__":
    main()
