"""What the Prefect flow costs over plain `dvc repro`, measured side by side in one run.

In fresh copies of the repository (tracked files only, each with its own MLflow store): plain
`dvc repro` of the whole pipeline in one, `python -m flows.pipeline` over the same work in
another, then both again with nothing changed; `--rounds` times, alternating, medians. Prints
one JSON line per measurement and one with the ratios. Goals: the flow adds at most 10 % when
work runs; a run with nothing changed takes under 15 s through the flow (its temporary Prefect
server included) and under 3 s through `dvc repro`.

    python bench/pipeline_overhead.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def fresh_copy(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for rel in filter(None, files):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def timed(command: list[str], cwd: Path) -> float:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}",
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
            for name, command, where in (
                ("dvc_repro_work_s", dvc, plain),
                ("flow_work_s", prefect, flow),
                ("dvc_repro_nothing_changed_s", dvc, plain),
                ("flow_nothing_changed_s", prefect, flow),
            ):
                seconds = timed(command, where)
                runs.setdefault(name, []).append(seconds)
                print(
                    json.dumps(
                        {"round": round_, "measurement": name, "seconds": round(seconds, 2)}
                    ),
                    flush=True,
                )
    medians = {name: statistics.median(values) for name, values in runs.items()}
    print(
        json.dumps(
            {
                "median_seconds": {name: round(v, 2) for name, v in medians.items()},
                "flow_over_dvc_repro_when_working": round(
                    medians["flow_work_s"] / medians["dvc_repro_work_s"], 3
                ),
                "flow_nothing_changed_under_15s": medians["flow_nothing_changed_s"] < 15,
                "dvc_repro_nothing_changed_under_3s": medians["dvc_repro_nothing_changed_s"] < 3,
            }
        )
    )


if __name__ == "__main__":
    main()
