"""The training flow: the DVC pipeline as Prefect tasks, one per stage (its command line is
flows/pipeline.py).

The stage graph comes from dvc.yaml through DVC's API, and DVC is asked once which stages are
stale (`dvc status`). Each stage is a task: a stale stage, or one downstream of a stage that ran,
runs `dvc repro --single-item <stage>`, so dvc.lock stays the one record and DVC itself has the
last word on what to skip; any other stage starts no process. A skipped stage's task ends
Completed, named "Skipped". Independent stages
run at the same time, up to `flow.max_parallel` (and `flow.max_parallel_train` trainings); a
stage starts when its upstream stages have finished, and its task waits for theirs (`wait_for`),
so the flow run's graph in the UI shows the pipeline.
A failed stage leaves its downstream stages not run and fails the flow with that stage's own
error first. Only transient failures (a stage exiting with TRANSIENT_EXIT, e.g. an
unreachable tracking server) are retried, with exponential backoff. At the end, what this run
decided: a table artifact of the test metrics of the models it evaluated, a markdown artifact of
the registry decisions it made (or that it made none), with links into the MLflow UI, and the
same table printed. With `push`, a run that succeeded ends with `dvc push` of every output to
the DVC remote (flows/remote.py), checked before any stage runs.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, wait
from contextlib import suppress
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture
from prefect.states import Completed, State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.graph import PER_MODEL, read_pipeline
from flows.remote import push_remote
from flows.stage_log import is_noise, stage_env
from flows.summary import (
    DECISIONS_DESCRIPTION,
    METRICS_DESCRIPTION,
    metric_rows,
    registry_markdown,
    table_rows,
    text_table,
)
from stages.config import load_params
from stages.errors import TRANSIENT_EXIT, PipelineError, TransientError
from stages.links import mlflow_ui_url
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


def backoff_rest(tries: int, delay: float) -> float:
    """Seconds to wait before try number `tries`, beyond Prefect's retry delay `delay`.

    Prefect waits `retry_delay_seconds` before each retry. Given a list of delays (Prefect's
    `exponential_backoff`), its UI shows "Retry Delay: NaNs" on every task, so the task gets the
    first delay alone and waits the rest of an exponential backoff (delay·2^(n-1) before the
    n-th retry) itself."""
    return delay * (2 ** (tries - 2) - 1) if tries > 2 else 0.0


@task(name="dvc-stage", task_run_name="{stage}")
def run_stage(stage: str, root: str, force: bool, changed: bool) -> str | State:
    """`dvc repro --single-item <stage>`, its output streamed into this task's log (without the
    tools' hints, flows/stage_log.py), when it may have work (`changed`); a stage skipped, by
    the flow or by DVC, ends in Completed named "Skipped"."""
    logger = get_run_logger()
    if not changed:
        logger.info(f"{stage}: unchanged since dvc.lock, and so is everything upstream")
        return Completed(name="Skipped", data="skipped")
    context = TaskRunContext.get()
    assert context is not None  # in a task run
    rest = backoff_rest(context.task_run.run_count, context.task.retry_delay_seconds)
    if rest:
        logger.info(f"retrying after {rest:g} s more (exponential backoff)")
        time.sleep(rest)
    command = [str(BIN / "dvc"), "repro", "--single-item", stage, *(["--force"] if force else [])]
    code, lines = _stream(command, root)
    if code != 0:
        raise StageFailed(stage, _error_message(lines, code), _stage_exit_code(lines))
    if any(line.startswith("Running stage") for line in lines):
        return "ran"
    return Completed(name="Skipped", data="skipped")


@task(name="dvc-push", task_run_name="push to {remote}")
def push_outputs(root: str, remote: str) -> None:
    """`dvc push` of every output in dvc.lock to `remote`: a teammate's `dvc pull` then has
    the data and models of this run, and their `dvc repro` runs nothing."""
    code, lines = _stream([str(BIN / "dvc"), "push", "--remote", remote], root)
    if code != 0:
        # A PipelineError: main() prints it as one line, as it does a failed stage.
        raise PipelineError(f"dvc push to {remote} failed: {_error_message(lines, code)}")


def _stream(command: list[str], root: str) -> tuple[int, list[str]]:
    """`command` in `root`, its output streamed into the task's log without the tools' hints;
    its exit status and the lines logged."""
    logger = get_run_logger()
    process = subprocess.Popen(
        command,
        cwd=root,
        env=stage_env(BIN),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        if line and not is_noise(line):
            logger.info(line)
            lines.append(line)
    return process.wait(), lines


def _error_message(lines: list[str], code: int) -> str:
    """The stage's own `error:` line(s), else the exception that ended a traceback, else DVC's
    ERROR line; for a DVC process stopped by a signal (its exit status -N), that signal."""
    if code < 0:
        return f"dvc was stopped by {signal.Signals(-code).name}, from outside the flow"
    own = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if own:
        return "\n".join(own)
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line)]
    dvc = [line for line in lines if line.startswith("ERROR")]
    return raised[-1] if raised else (dvc[-1] if dvc else (lines[-1] if lines else "no output"))


# DVC holds its repository lock briefly (reading the stage graph, writing dvc.lock) and another
# `dvc repro` gives up after waiting 3 s for it (dvc/lock.py): on a loaded machine a stage running
# beside this one can hold it longer. Nothing failed, so it is retried as a transient failure.
DVC_LOCKED = "Unable to acquire lock"


def _stage_exit_code(lines: list[str]) -> int | None:
    """The stage's exit status as DVC reports it (TRANSIENT_EXIT when DVC's lock was busy)."""
    if any(DVC_LOCKED in line for line in lines):
        return TRANSIENT_EXIT
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
    push: bool = False,
    remote: str | None = None,
) -> dict[str, str]:
    """Run the DVC stages (all, or those named and their upstream) as Prefect tasks, in
    `project_dir` (default: the repository holding this flow); with `push`, then push every
    output to the DVC remote `remote` (default: $DVC_REMOTE, else DVC's default remote)."""
    logger = get_run_logger()
    root = Path(project_dir) if project_dir else ROOT
    params = load_params(root / "params.yaml")
    # Before any stage: a remote that is missing must not cost a training first.
    target = push_remote(root, remote) if push else None
    full, stale = read_pipeline(root, stale=not force)
    graph = full.select(stages, models)
    # The stages after the chosen models' that `--models` leaves out (register): said, since
    # they would run without it.
    after = set().union(*(full.downstream(s) for s in graph.upstream)) if models else set()
    shared = sorted(s for s in after - set(graph.upstream) if s.split("@")[0] not in PER_MODEL)
    if shared:
        logger.info(
            f"not run with --models: {', '.join(shared)} (reads the other models' outputs too; "
            f"run it with --stages {' '.join(shared)})"
        )
    stale = set(graph.upstream) if force else stale & set(graph.upstream)
    cfg = params.flow
    stage_task = run_stage.with_options(
        retries=cfg.retries,
        retry_delay_seconds=cfg.retry_backoff_seconds if cfg.retries else 0,
        retry_condition_fn=_retry_transient,
    )
    uri = tracking_uri(params.mlflow.tracking_uri, root)
    if stale and uri.startswith("sqlite:"):
        from mlflow import MlflowClient  # a second to import: only when a stage may run

        # Create a new SQLite store once, before stages that write to it start side by side.
        MlflowClient(uri).search_experiments(max_results=1)
    status: dict[str, str] = {}
    failures: list[StageFailed] = []
    running: dict[str, PrefectFuture] = {}
    futures: dict[str, PrefectFuture] = {}  # every stage submitted, for its downstream's wait_for
    while len(status) < len(graph.upstream):
        for stage in graph.stages:
            if stage in status or stage in running:
                continue
            upstream = graph.upstream[stage]
            if any(status.get(u) in ("failed", "not run") for u in upstream):
                status[stage] = "not run"
                logger.warning(f"{stage}: not run, an upstream stage failed")
            elif all(u in status for u in upstream) and _has_room(stage, running, cfg):
                changed = stage in stale or any(status[u] == "ran" for u in upstream)
                running[stage] = futures[stage] = stage_task.submit(
                    stage,
                    str(root),
                    force,
                    changed,
                    wait_for=[futures[u] for u in sorted(upstream)],
                )
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
    _publish_summary(params, root, uri, status)
    if failures:
        not_run = sorted(s for s, v in status.items() if v == "not run")
        raise PipelineError(
            "\n".join(str(f) for f in failures)
            + (f"\nnot run: {', '.join(not_run)}" if not_run else "")
        )
    if target is not None:
        push_outputs(str(root), target)
    return status


def _has_room(stage: str, running: dict[str, Any], cfg: Any) -> bool:
    if len(running) >= cfg.max_parallel:
        return False
    trains = sum(1 for s in running if s.startswith("train@"))
    return not stage.startswith("train@") or trains < cfg.max_parallel_train


def _publish_summary(params: Any, root: Path, uri: str, status: dict[str, str]) -> None:
    """What this run decided. The metrics table only when it evaluated a model, so the
    artifact's latest version stays the latest evaluation; the decisions always, saying so
    when there were none."""
    evaluated = [
        s.split("@")[1] for s, v in status.items() if s.startswith("evaluate@") and v == "ran"
    ]
    rows = metric_rows(params, root, evaluated)
    client = None  # the summary still names the runs, without links
    if rows or status.get("register") == "ran":  # else it links to nothing
        with suppress(TransientError):
            client = connect(uri, params.mlflow)
    ui = mlflow_ui_url(uri)
    if rows:
        create_table_artifact(
            key="model-metrics", table=table_rows(rows, client, ui), description=METRICS_DESCRIPTION
        )
    create_markdown_artifact(
        key="registry-decisions",
        markdown=registry_markdown(params, root, status.get("register"), client, ui),
        description=DECISIONS_DESCRIPTION,
    )
    print(text_table(rows), flush=True)
