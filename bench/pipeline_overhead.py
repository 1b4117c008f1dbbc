"""What the Prefect flow costs over plain `dvc repro`, measured side by side in one run.

In two fresh copies of the repository (tracked files only, each with its own MLflow store):
plain `dvc repro` of the whole pipeline in one, `python -m flows.pipeline` over the same work
in the other, then both again with nothing changed. Prints one JSON line per measurement and
one with the ratios. Goals: the flow adds at most 10 % when work runs; a run with nothing
changed takes under 15 s through the flow (its temporary Prefect server included) and under
3 s through `dvc repro`.

    python bench/pipeline_overhead.py
"""

from __future__ import annotations

import json
import os
import shutil
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
    with tempfile.TemporaryDirectory() as tmp:
        plain = fresh_copy(Path(tmp) / "plain")
        flow = fresh_copy(Path(tmp) / "flow")
        dvc = [str(BIN / "dvc"), "repro"]
        prefect = [sys.executable, "-m", "flows.pipeline"]
        results = {
            "dvc_repro_work_s": timed(dvc, plain),
            "flow_work_s": timed(prefect, flow),
            "dvc_repro_nothing_changed_s": timed(dvc, plain),
            "flow_nothing_changed_s": timed(prefect, flow),
        }
    for name, seconds in results.items():
        print(json.dumps({"measurement": name, "seconds": round(seconds, 2)}))
    print(
        json.dumps(
            {
                "flow_over_dvc_repro_when_working": round(
                    results["flow_work_s"] / results["dvc_repro_work_s"], 3
                ),
                "flow_nothing_changed_under_15s": results["flow_nothing_changed_s"] < 15,
                "dvc_repro_nothing_changed_under_3s": results["dvc_repro_nothing_changed_s"] < 3,
            }
        )
    )


if __name__ == "__main__":
    main()
