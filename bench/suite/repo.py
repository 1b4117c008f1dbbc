"""A throw-away copy of this checkout, for benchmarks and tests that run the real pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from stages.config import parse_params

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def copy_repo(dest: Path, source: Path = ROOT) -> Path:
    """The tracked and untracked-not-ignored files of `source` (this checkout), as a fresh git
    repo: what git would hand a teammate, without data, models, DVC cache or local config."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        if (source / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / rel, dest / rel)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def run_pipeline(
    params: dict, models: list[str], seed: int, add_files: Callable[[Path], None] | None = None
) -> list[dict]:
    """`dvc repro --keep-going` of `params` (one dataset) in a fresh copy of the repository,
    with its own SQLite MLflow store; per model, its test accuracy, the baselines' and seconds in
    `fit`, or the first stage whose output is missing and the log's tail. `add_files(repo)`
    puts a user's data into the copy first."""
    paths = parse_params(params).paths
    (key,) = params["datasets"]
    with tempfile.TemporaryDirectory(prefix="sequence_suite_") as tmp:
        repo = copy_repo(Path(tmp) / "repo")
        if add_files is not None:
            add_files(repo)
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        # git tracks the default models' metrics files: a stage that fails must leave none.
        shutil.rmtree(repo / paths.metrics, ignore_errors=True)
        env = os.environ | {
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
        }
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "dvc", "repro", "--keep-going"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
        )
        print(f"  seed {seed}: dvc repro {time.perf_counter() - started:.0f} s", file=sys.stderr)
        results = []
        for name in models:
            # In stage order: the first output missing names the stage that failed.
            outputs = {
                "ingest": paths.raw / key,
                "prepare": paths.prepared / key / "meta.json",
                "train": paths.metrics / "train" / f"{name}.json",
                "evaluate": paths.metrics / "eval" / f"{name}.json",
            }
            failed = next(
                (stage for stage, out in outputs.items() if not (repo / out).exists()), None
            )
            if failed:
                tail = (done.stdout + done.stderr)[-3000:]
                results.append({"model": name, "seed": seed, "error": failed, "log_tail": tail})
                continue
            train = json.loads((repo / outputs["train"]).read_text())
            test = json.loads((repo / outputs["evaluate"]).read_text())
            results.append(
                {
                    "model": name,
                    "seed": seed,
                    "test_accuracy": test["test_accuracy"],
                    "baselines": {k: v["test_accuracy"] for k, v in test["baselines"].items()},
                    "best_val_accuracy": train["best_val_accuracy"],
                    "train_seconds": train["train_seconds"],
                }
            )
        return results
