"""`python -m tuning.worker <model> [--worker I] [--threads T] [--trials N]`: a process that
runs trials of model <model>'s study (params.yaml's `tune.<model>`) until the study has its
trials. `python -m flows.tune` starts `--workers` of them side by side; a worker started by
hand on another machine joins the same study through a shared storage (OPTUNA_STORAGE)."""

from __future__ import annotations

import argparse
import time

import optuna
import torch

from lightning_modules.system import NonFiniteLossError
from stages.config import load_params
from stages.errors import cli
from stages.tracking import connect, dvc_out_hash, git_commit
from tuning.study import HEARTBEAT_SECONDS, Search, open_study, parent_run, progress, search_for
from tuning.trial import objective


def run(search: Search, trials: int, worker: int = 0) -> None:
    """Trials until the study has `trials` done (complete, pruned or failed by themselves).
    A trial of a killed worker is queued again with its params, and run here."""
    study = open_study(search, worker)
    client = connect(search.mlflow_uri, search.mlflow)
    parent = parent_run(search, study, client)
    tags = {
        "git_commit": git_commit(),
        "data_dvc_md5": dvc_out_hash(f"prepare@{search.model.dataset}"),
        "model": search.name,
        "arch": search.model.arch,
        "dataset": search.model.dataset,
    }
    trial = objective(search, parent, client, tags)
    while True:
        optuna.storages.fail_stale_trials(study)
        now = progress(study)
        if now.done >= trials:
            return
        if now.waiting or now.left(trials):
            # A trial whose loss is not finite is failed in the study; the search goes on.
            study.optimize(trial, n_trials=1, catch=(NonFiniteLossError,))
        else:  # the last trials run in other workers; one of them may have been killed
            time.sleep(HEARTBEAT_SECONDS)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m tuning.worker", description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--worker", type=int, default=0, help="this worker's index (its seed)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--trials", type=int, help="the study's trials (default: params.yaml)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    search = search_for(load_params(), args.model)
    run(search, args.trials or search.tune.trials, args.worker)


if __name__ == "__main__":
    cli(main)
