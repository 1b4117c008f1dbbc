"""What a search reports: the table of its trials, its best configuration, and in the study's
parent MLflow run the search space, the best trial and plots of the optimisation history and
the parameters' importances."""

from __future__ import annotations

import json
import time
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: a worker has no display
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from tuning.study import FAILURE, SOURCE, Search  # noqa: E402


def rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: number, state, score, seconds and its searched values."""
    table = []
    for trial in study.get_trials(deepcopy=False):
        state = trial.state.name.lower()
        if trial.state == TrialState.FAIL:
            state = "failed" if FAILURE in trial.user_attrs else "killed"
        seconds = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else None
        )
        table.append(
            {
                "trial": trial.number,
                "state": state,
                "value": _round(trial.value),
                "seconds": _round(seconds, 1),
                "from": trial.user_attrs.get(SOURCE, ""),
                **{k: _round(v) for k, v in trial.params.items()},
            }
        )
    return table


def best(study: optuna.Study) -> FrozenTrial | None:
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    return study.best_trial if complete else None


def markdown(search: Search, study: optuna.Study, parent_url: str) -> str:
    """The trials as a Markdown table, the best configuration first."""
    table = rows(study)
    top = best(study)
    metric = search.tune.metric
    lines = [
        f"# Search of `{search.name}`: study `{study.study_name}`",
        "",
        f"Score: {metric} of the kept epoch"
        + (f", mean of {search.tune.folds} folds" if search.tune.folds > 1 else "")
        + f" ({search.tune.direction}). MLflow parent run: [{parent_url}]({parent_url})",
        "",
    ]
    if top is None:
        lines.append("No trial has completed yet.")
    else:
        shown = ", ".join(f"`{k}` = {_round(v)}" for k, v in top.params.items())
        lines.append(f"**Best: trial {top.number}**, {metric} {_round(top.value)}: {shown}")
    if table:
        keys = list(table[0])
        for row in table[1:]:
            keys += [k for k in row if k not in keys]
        lines += ["", "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
        lines += ["| " + " | ".join(_cell(row.get(k)) for k in keys) + " |" for row in table]
    return "\n".join(lines)


def log_to_parent(client: MlflowClient, run_id: str, search: Search, study: optuna.Study) -> None:
    """The search space, the best trial and the plots, in the study's parent run; again after
    each session of the study (the best as metrics at step = trials done, tags and plots
    replaced). The space, metric and folds are part of the study's name: they never change."""
    tune = search.tune
    space = {key: {dist.kind: dist.values} for key, dist in tune.space.items()}
    client.log_dict(run_id, space, "search_space.json")
    fixed = {"tune.metric": tune.metric, "tune.folds": tune.folds, "tune.space": json.dumps(space)}
    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    now = int(time.time() * 1000)
    metrics = [Metric("trials_done", len(done), now, len(done))]
    tags = []
    top = best(study)
    if top is not None:  # one request for all of it: a tracking server is a round trip each
        metrics.append(Metric(f"best_{tune.metric}", top.value, now, len(done)))
        tags += [
            RunTag("best.trial", str(top.number)),
            RunTag("best.mlflow_run_id", top.user_attrs.get("mlflow_run_id", "")),
            *(RunTag(f"best.{key}", str(value)) for key, value in top.params.items()),
        ]
    client.log_batch(
        run_id,
        metrics=metrics,
        params=[Param(k, str(v)) for k, v in fixed.items()],
        tags=tags,
    )
    _log_plot(
        client,
        run_id,
        "optimization_history.png",
        optuna.visualization.matplotlib.plot_optimization_history,
        study,
    )
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    if len(complete) >= 2:  # importances compare trials
        _log_plot(
            client,
            run_id,
            "param_importances.png",
            optuna.visualization.matplotlib.plot_param_importances,
            study,
        )


def _log_plot(client: MlflowClient, run_id: str, name: str, plot: Any, study: optuna.Study) -> None:
    axes = plot(study)
    figure = axes.figure
    figure.set_size_inches(8, 5)
    figure.tight_layout()
    client.log_figure(run_id, figure, name)
    plt.close(figure)


def _round(value: Any, digits: int = 4) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
