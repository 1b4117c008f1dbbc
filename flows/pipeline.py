"""The training flow: the DVC pipeline as Prefect tasks, one per stage.

`python -m flows.pipeline [--stages S ...] [--models M ...] [--force]`

The stage graph comes from dvc.yaml through DVC's API; each task runs
`dvc repro --single-item <stage>`, so dvc.lock stays the one record and DVC itself skips
unchanged stages. Independent stages run at the same time, up to `flow.max_parallel` (and
`flow.max_parallel_train` trainings); a stage starts when its upstream stages have finished.
A failed stage leaves its downstream stages not run and fails the flow with that stage's own
error first. Only transient failures (a stage exiting with TRANSIENT_EXIT, e.g. an
unreachable tracking server) are retried, with exponential backoff. At the end: a table
artifact of every model's test metrics, a markdown artifact of the registry decisions with
links to the MLflow runs, and the same table printed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from flows.graph import read_graph
from flows.summary import metric_rows, registry_markdown, text_table
from stages.config import load_params
from stages.errors import TRANSIENT_EXIT, PipelineError, TransientError
from stages.tracking import connect, tracking_uri

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the environment's dvc, and the `python` of dvc.yaml


class StageFailed(Exception):
    def __init__(self, stage: str, message: str, exit_code: int | None) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage, self.exit_code = stage, exit_code

    @property
    def transient(self) -> bool:
        return self.exit_code == TRANSIENT_EXIT


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    error = state.result(raise_on_failure=False)
    return isinstance(error, StageFailed) and error.transient


@task(name="dvc-stage", task_run_name="{stage}")
def run_stage(stage: str, root: str, force: bool) -> str:
    """`dvc repro --single-item <stage>`, its output streamed into this task's log.

    The stage gets the same environment as under plain `dvc repro` (thread counts included:
    they change float results, so capping them would change the weights).
    """
    logger = get_run_logger()
    command = [str(BIN / "dvc"), "repro", "--single-item", stage, *(["--force"] if force else [])]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    process = subprocess.Popen(
        command,
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        if line:
            logger.info(line)
            lines.append(line)
    if process.wait() != 0:
        raise StageFailed(stage, _error_message(lines), _stage_exit_code(lines))
    return "ran" if any(line.startswith("Running stage") for line in lines) else "skipped"


def _error_message(lines: list[str]) -> str:
    """The stage's own `error:` line(s), else the exception that ended a traceback, else DVC's
    ERROR line."""
    own = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if own:
        return "\n".join(own)
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line)]
    dvc = [line for line in lines if line.startswith("ERROR")]
    return raised[-1] if raised else (dvc[-1] if dvc else (lines[-1] if lines else "no output"))


def _stage_exit_code(lines: list[str]) -> int | None:
    for line in reversed(lines):
        found = re.search(r"exited with (\d+)", line)
        if found:
            return int(found.group(1))
    return None


@flow(name="train-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=64))
def pipeline(
    stages: list[str] | None = None,
    models: list[str] | None = None,
    force: bool = False,
    project_dir: str | None = None,
) -> dict[str, str]:
    """Run the DVC stages (all, or those named and their upstream) as Prefect tasks, in
    `project_dir` (default: the repository holding this flow)."""
    logger = get_run_logger()
    root = Path(project_dir) if project_dir else ROOT
    params = load_params(root / "params.yaml")
    graph = read_graph(root).select(stages, models)
    cfg = params.flow
    stage_task = run_stage.with_options(
        retries=cfg.retries,
        retry_delay_seconds=exponential_backoff(cfg.retry_backoff_seconds)(cfg.retries)
        if cfg.retries
        else 0,
        retry_condition_fn=_retry_transient,
    )
    uri = tracking_uri(params.mlflow.tracking_uri, root)
    if uri.startswith("sqlite:"):
        # Create a new SQLite store once, before stages that write to it start side by side.
        MlflowClient(uri).search_experiments(max_results=1)
    status: dict[str, str] = {}
    failures: list[StageFailed] = []
    running: dict[str, PrefectFuture] = {}
    while len(status) < len(graph.upstream):
        for stage in graph.stages:
            if stage in status or stage in running:
                continue
            upstream = graph.upstream[stage]
            if any(status.get(u) in ("failed", "not run") for u in upstream):
                status[stage] = "not run"
                logger.warning(f"{stage}: not run, an upstream stage failed")
            elif all(u in status for u in upstream) and _has_room(stage, running, cfg):
                running[stage] = stage_task.submit(stage, str(root), force)
        if running:  # sleep until a stage finishes (its retries happen inside the task)
            wait([f.wrapped_future for f in running.values()], return_when=FIRST_COMPLETED)
        for stage, future in list(running.items()):
            if future.wrapped_future.done():
                del running[stage]
                outcome = future.result(raise_on_failure=False)
                if isinstance(outcome, BaseException):
                    status[stage] = "failed"
                    failures.append(
                        outcome
                        if isinstance(outcome, StageFailed)
                        else StageFailed(stage, repr(outcome), None)
                    )
                else:
                    status[stage] = outcome
    _publish_summary(params, root, uri)
    if failures:
        not_run = sorted(s for s, v in status.items() if v == "not run")
        raise PipelineError(
            "\n".join(str(f) for f in failures)
            + (f"\nnot run: {', '.join(not_run)}" if not_run else "")
        )
    return status


def _has_room(stage: str, running: dict[str, Any], cfg: Any) -> bool:
    if len(running) >= cfg.max_parallel:
        return False
    trains = sum(1 for s in running if s.startswith("train@"))
    return not stage.startswith("train@") or trains < cfg.max_parallel_train


def _publish_summary(params: Any, root: Path, uri: str) -> None:
    rows = metric_rows(params, root)
    try:
        client = connect(uri, params.mlflow)
    except TransientError:
        client = None  # the summary still lists the runs, without links
    create_table_artifact(
        key="model-metrics",
        table=[{k: v for k, v in r.items()} for r in rows],
        description="Test metrics of every evaluated model, and the test accuracy of the "
        "majority-class and 1-NN baselines (metrics/eval/*.json)",
    )
    create_markdown_artifact(
        key="registry-decisions",
        markdown=registry_markdown(params, root, rows, client),
        description="Champion/challenger decisions (metrics/registry.json)",
    )
    print(text_table(rows), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the DVC pipeline as a Prefect flow.")
    parser.add_argument("--stages", nargs="+", help="stages or groups (e.g. train@cnn, train)")
    parser.add_argument("--models", nargs="+", help="only these models' train/evaluate stages")
    parser.add_argument("--force", action="store_true", help="re-run even when unchanged")
    args = parser.parse_args(argv)
    try:
        pipeline(stages=args.stages, models=args.models, force=args.force)
    except (PipelineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
