"""Does a search beat the default recipe on archives nobody tuned for?

For each archive, a temporary copy of the repository gets the sequence suite's params (the
archive as its only dataset, `--model` moved onto it, seed 0) plus params.yaml's own
`tune.<model>` section, and runs `python -m flows.tune <model> --workers W --apply` there: the
search sees the training data only (its validation split, or folds of train + val). Then the
default and the applied recipe each go through the whole pipeline (`dvc repro`, as
bench/sequence_suite.py does) for seeds 0..S-1, and their test accuracies are compared as means
over the seeds. Prints a markdown table; `--out` writes the raw results as JSON.

    python bench/tune_suite.py                                   # ACSF1 and ArrowHead, lstm
    python bench/tune_suite.py --archives GunPoint --trials 3 --seeds 1
    python bench/tune_suite.py --metric val_acc --folds 5    # another selection than params'
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import get_args

import optuna
import yaml
from sequence_suite import spread, suite_params
from suite.args import positive
from suite.repo import BIN, ROOT, copy_repo, run_pipeline

from stages.tune_config import TuneConfig


def search(raw: dict, archive: str, model: str, args: argparse.Namespace) -> dict:
    """The search of `model` on `archive` in a fresh copy: the applied recipe, the study's
    trials by state, and the search's wall time."""
    params = suite_params(raw, archive, [model], seed=0, max_epochs=None)
    tune = raw["tune"][model] | {
        k: v
        for k, v in {"trials": args.trials, "folds": args.folds, "metric": args.metric}.items()
        if v is not None
    }
    params["tune"] = {model: tune}
    with tempfile.TemporaryDirectory(prefix="tune_suite_") as tmp:
        repo = copy_repo(Path(tmp) / "repo")
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = os.environ | {
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        command = [sys.executable, "-m", "flows.tune", model, "--workers", str(args.workers)]
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "--apply"], cwd=repo, env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-3000:]
            raise SystemExit(f"{archive}: the search failed:\n{tail}")
        applied = yaml.safe_load((repo / "params.yaml").read_text())["models"][model]
        storage = f"sqlite:///{repo / 'optuna.db'}"
        (name,) = optuna.get_all_study_names(storage)
        study = optuna.load_study(study_name=name, storage=storage)
        states = [t.state.name.lower() for t in study.trials]
        return {
            "recipe": applied,
            "best_value": study.best_value,
            "best_params": study.best_params,
            "trials": {s: states.count(s) for s in sorted(set(states))},
            "seconds": round(seconds, 1),
            "tune": tune,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archives", nargs="+", default=["ACSF1", "ArrowHead"])
    parser.add_argument("--model", default="lstm")
    parser.add_argument("--trials", type=positive, help="default: params.yaml's tune.<model>")
    parser.add_argument("--folds", type=positive, help="default: params.yaml's tune.<model>")
    metrics = get_args(TuneConfig.model_fields["metric"].annotation)
    parser.add_argument("--metric", choices=metrics, help="default: params.yaml's")
    parser.add_argument("--workers", type=positive, default=2)
    parser.add_argument("--seeds", type=positive, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    results = {}
    for archive in args.archives:
        print(f"{archive}: searching", file=sys.stderr)
        found = search(raw, archive, args.model, args)
        runs: dict[str, list] = {"default": [], "searched": []}
        for seed in range(args.seeds):
            base = suite_params(raw, archive, [args.model], seed, max_epochs=None)
            tuned = base | {"models": {args.model: found["recipe"]}}
            for label, params in (("default", base), ("searched", tuned)):
                runs[label] += run_pipeline(params, [args.model], seed)
        results[archive] = found | {"runs": runs}
        if args.out:
            args.out.write_text(json.dumps(results, indent=2, default=str))
    print(table(results, args))


def table(results: dict, args: argparse.Namespace) -> str:
    lines = [
        f"| archive | {args.model} default | searched | best search score | trials "
        "| search wall s | best values |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for archive, r in results.items():
        cells = []
        for label in ("default", "searched"):
            accuracies = [x["test_accuracy"] for x in r["runs"][label] if "test_accuracy" in x]
            cells.append(spread(accuracies) if accuracies else "failed")
        trials = ", ".join(f"{n} {s}" for s, n in r["trials"].items())
        best = ", ".join(f"{k} {_short(v)}" for k, v in r["best_params"].items())
        lines.append(
            f"| {archive} | {cells[0]} | {cells[1]} | {r['best_value']:.4f} | {trials} "
            f"| {r['seconds']:.0f} | {best} |"
        )
    return "\n".join(lines)


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
