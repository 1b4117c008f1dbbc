"""What a stage's subprocess gets from its Prefect task: its environment, and which of its
output lines reach the task log (the stage's own output does; the tools' hints do not)."""

from __future__ import annotations

import os
import re
from pathlib import Path

# Hints the tools print on every run, that say nothing about this run:
# - DVC, after each stage that wrote dvc.lock (dvc/repo/scm_context.py). Only `core.autostage`
#   turns them off, by `git add`-ing for the user, and no option or variable only silences them;
#   `dvc repro --quiet` would silence the "Running stage" lines the task's outcome is read from.
# - Lightning's litlogger tip, printed by every Trainer without a LitLogger
#   (lightning/pytorch/trainer/connectors/logger_connector), with no switch to turn it off; its
#   TPU line (this project trains on CPUs and CUDA GPUs; the GPU line stays), its note on
#   sizing the schedule, and its deprecation warning about torch 2.13's pytree API.
# - MLflow's note that it checks a model's input example, on every logged model
#   (mlflow/pyfunc/__init__.py), with no switch but the log level of the stage's whole logger.
NOISE = re.compile(
    r"To track the changes with git, run:"
    r"|\s+git add .*"
    r"|To enable auto staging, run:"
    r"|\s+dvc config core\.autostage true"
    r"|Use `dvc push` to send your updates to remote storage\."
    r"|💡 Tip: For seamless cloud logging .*litlogger.*"
    r"|TPU available: .*"
    r"|Loading `train_dataloader` to estimate number of stepping batches\."
    r"|.*/lightning/pytorch/utilities/_pytree\.py:\d+: `isinstance\(treespec, LeafSpec\)` .*"
    r"|[\d/]+ [\d:]+ INFO mlflow\.pyfunc: Validating input example against model signature"
)


def is_noise(line: str) -> bool:
    return NOISE.fullmatch(line) is not None


def stage_env(bin_dir: Path) -> dict[str, str]:
    """The environment of plain `dvc repro` (thread counts included: they change float results,
    so capping them would change the weights), with the environment's own `dvc` and `python`
    first on PATH, and without MLflow's artifact progress bars (a task log shows each redraw as
    a line of its own)."""
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
