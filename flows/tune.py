"""`python -m flows.tune <model> [--trials N] [--workers K] [--apply]` (`make tune MODEL=lstm`):
the Optuna search that params.yaml's `tune.<model>` declares, as a Prefect flow.

It brings the model's prepared data up to date (`dvc repro prepare@<dataset>`), opens the
search's study (the same one after a kill: finished trials are kept, never run again), runs
its trials, the first of a new study being params.yaml's recipe as it stands, in K worker
processes side by side (tuning/worker.py, each with its share of the
cores), then prints and publishes the table of trials and the best configuration. `--apply`
writes the best values into params.yaml, so that `dvc repro` trains them and `register`'s gate
decides on them: a search never moves a registry alias itself.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from flows.stage_log import is_noise, stage_env
from flows.temporary_server import prefect_api
from stages.config import load_params
from stages.errors import PipelineError
from stages.links import mlflow_ui_url, run_url
from stages.tracking import connect
from tuning.apply import apply_best, check_applicable
from tuning.report import best, log_to_parent, markdown
from tuning.study import enqueue_current, open_study, parent_run, progress, search_for

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# A trial's per-epoch lines and Lightning's notices: the flow log shows Optuna's line per trial.
CHATTER = re.compile(r"epoch \d+/\d+ .*|GPU available: .*|`Trainer\.fit` stopped: .*")


@task(name="dvc-stage", task_run_name="{stage}")
def prepare(stage: str, root: str) -> None:
    """`dvc repro <stage>` (ingest too, when stale): the prepared data the trials read."""
    _stream([str(BIN / "dvc"), "repro", stage], root, stage_env(BIN), stage)


@task(name="tune-worker", task_run_name="worker {worker}")
def worker(model: str, worker: int, threads: int, trials: int, root: str) -> None:
    """One `python -m tuning.worker` process, with `threads` torch threads."""
    command = [str(BIN / "python"), "-m", "tuning.worker", model, "--worker", str(worker)]
    command += ["--threads", str(threads), "--trials", str(trials)]
    env = stage_env(BIN) | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    _stream(command, root, env, f"worker {worker}")


def _stream(command: list[str], root: str, env: dict[str, str], what: str) -> None:
    """Run `command`, its output in the task's log; its last lines in the error if it fails."""
    logger = get_run_logger()
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        line = line.rstrip()
        if line and not is_noise(line) and not CHATTER.fullmatch(line):
            logger.info(line)
            tail = [*tail[-9:], line]
    if process.wait() != 0:
        raise PipelineError(
            f"{what} failed (exit status {process.returncode}):\n" + "\n".join(tail)
        )


@flow(name="tune", task_runner=ThreadPoolTaskRunner(max_workers=64))
def tune(
    model: str,
    trials: int | None = None,
    workers: int = 1,
    apply: bool = False,
    project_dir: str | None = None,
) -> dict[str, Any]:
    """Run `model`'s search in `project_dir` (default: this repository) until its study has
    `trials` trials (default: `tune.<model>.trials`), in `workers` processes."""
    logger = get_run_logger()
    root = Path(project_dir) if project_dir else ROOT
    params_file = root / "params.yaml"
    search = search_for(load_params(params_file), model, root)
    if workers < 1 or (trials is not None and trials < 1):
        raise PipelineError(f"workers and trials must be at least 1; got {workers}, {trials}")
    if apply:
        check_applicable(params_file, model, list(search.tune.space))
    budget = trials or search.tune.trials
    prepare(f"prepare@{search.model.dataset}", str(root))
    study = open_study(search)
    enqueue_current(study, search)
    client = connect(search.mlflow_uri, search.mlflow)
    parent = parent_run(search, study, client)
    before = progress(study).done
    logger.info(
        f"study {study.study_name} ({search.storage.split('://')[0]}): {before} of {budget} "
        f"trials done; {workers} worker(s)"
    )
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    futures = [worker.submit(model, i, threads, budget, str(root)) for i in range(workers)]
    errors = [f.result(raise_on_failure=False) for f in futures]
    errors = [e for e in errors if isinstance(e, BaseException)]
    experiment = client.get_run(parent).info.experiment_id
    parent_url = run_url(mlflow_ui_url(search.mlflow_uri), experiment, parent)
    log_to_parent(client, parent, search, study)
    table = markdown(search, study, parent_url)
    print(table, flush=True)
    create_markdown_artifact(
        key=f"tune-{model.replace('_', '-')}", markdown=table, description=f"Search of {model}"
    )
    done = progress(study).done
    if errors:
        raise PipelineError("\n".join(str(e) for e in errors))
    if done >= budget:
        client.set_terminated(parent, status="FINISHED")
    top = best(study)
    result = {
        "study": study.study_name,
        "trials_done": done,
        "best_value": top.value if top else None,
        "best_params": top.params if top else None,
    }
    if apply:
        if top is None:
            raise PipelineError(f"no completed trial in study {study.study_name}: nothing to apply")
        changes = apply_best(params_file, model, top.params)
        print("\n".join(["applied to params.yaml:", *changes]), flush=True)
        print(f"`dvc repro train@{model}` (or `make run`) trains it; register decides", flush=True)
    return result


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Search a model's hyper-parameters (Optuna).")
    parser.add_argument("model", help="a model with a `tune.<model>` section in params.yaml")
    parser.add_argument(
        "--trials", type=_positive, help="the study's trials (default: params.yaml)"
    )
    parser.add_argument("--workers", type=_positive, default=1, help="processes running trials")
    parser.add_argument(
        "--apply", action="store_true", help="write the best values into params.yaml"
    )
    args = parser.parse_args(argv)
    try:
        with prefect_api():
            tune(args.model, trials=args.trials, workers=args.workers, apply=args.apply)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
