"""The end-of-run summary of what this run decided: the test metrics of the models it evaluated
and the registry decisions it made, with links into the MLflow UI (stages/links.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.config import Params
from stages.links import run_url, version_url

if TYPE_CHECKING:  # MLflow is imported only where a client is at hand: the flow with
    # nothing to do never imports it
    from mlflow import MlflowClient

COLUMNS = ("model", "dataset", "test_accuracy", "test_macro_f1", "test_loss", "n_test")
# The test accuracy of each baseline (stages/baselines.py), beside the model's.
BASELINE_COLUMNS = {"majority": "majority", "1nn_euclidean": "1nn"}
DIGITS = 4  # of every metric shown
# Artifact descriptions are markdown: `<model>` outside a code span would be an HTML tag.
METRICS_DESCRIPTION = (
    "Test metrics of the models evaluated in this run, beside the test accuracy of the "
    "majority-class and 1-NN baselines (`metrics/eval/<model>.json`)"
)
DECISIONS_DESCRIPTION = "Champion/challenger decisions made in this run (`metrics/registry.json`)"


def metric_rows(params: Params, root: Path, models: list[str]) -> list[dict[str, Any]]:
    """The evaluation of each of `models`, the metrics rounded to DIGITS."""
    rows = []
    for name in sorted(models):
        evaluation = json.loads((root / params.paths.metrics / "eval" / f"{name}.json").read_text())
        # An evaluation written before baselines were scored has none (None in the table).
        baselines = evaluation.get("baselines", {})
        rows.append(
            {"model": name, "dataset": params.models[name].dataset}
            | {k: _round(evaluation[k]) for k in COLUMNS[2:]}
            | {
                c: _round(baselines.get(b, {}).get("test_accuracy"))
                for b, c in BASELINE_COLUMNS.items()
            }
            | {"mlflow_run_id": evaluation["mlflow_run_id"]}
        )
    return rows


def table_rows(rows: list[dict[str, Any]], client: MlflowClient | None, ui: str) -> list[dict]:
    """`rows` as the table artifact shows them: each run id a markdown link to its run."""
    return [r | {"mlflow_run_id": _run_link(client, ui, r["mlflow_run_id"])} for r in rows]


# Why `register` decided nothing, by its outcome in the flow (None: not among the stages run).
NOT_REGISTERED = {
    "skipped": "nothing it reads changed, so DVC skipped it",
    "failed": "it failed",
    "not run": "an upstream stage failed",
    None: "it was not among the stages run",
}


def registry_markdown(
    params: Params, root: Path, register: str | None, client: MlflowClient | None, ui: str
) -> str:
    """The decisions `register` made in this run (`register`: its outcome), under each
    dataset's champion; says so when it made none."""
    lines = ["# Registry decisions", ""]
    if register != "ran":
        why = NOT_REGISTERED[register]
        return "\n".join([*lines, f"Nothing changed in this run: no version was decided ({why})."])
    for _, entry in sorted(
        json.loads((root / params.paths.metrics / "registry.json").read_text()).items()
    ):
        name = entry["registered_model"]
        lines += [f"## {name}", ""]
        if entry["champion_version"] is not None:
            run = _run_link(client, ui, entry["champion_run_id"])
            lines.append(
                f"Champion: {_version_link(name, entry['champion_version'], ui)} "
                f"({entry['champion_model']}, run {run}), "
                f"{entry['metric']} {_round(entry['champion_metric'])}."
            )
        lines += [
            f"- {_version_link(name, d['version'], ui)} ({d['model']}): "
            f"**{d['action']}**: {d['reason']}"
            for d in entry["decisions"]
            if d["decided_now"]
        ] or ["No version was decided in this run."]
        lines.append("")
    return "\n".join(lines)


def _round(value: Any) -> Any:
    return round(value, DIGITS) if isinstance(value, float) else value


def _version_link(name: str, version: str, ui: str) -> str:
    return f"[version {version}]({version_url(ui, name, version)})"


def _run_link(client: MlflowClient | None, ui: str, run_id: str) -> str:
    if client is None:
        return run_id
    from mlflow.exceptions import MlflowException

    try:
        experiment = client.get_run(run_id).info.experiment_id
    except MlflowException:  # not in this store, or its server does not answer
        return run_id
    return f"[{run_id}]({run_url(ui, experiment, run_id)})"


def text_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no model was evaluated in this run)"
    columns = (*COLUMNS, *BASELINE_COLUMNS.values())
    cells = [[_fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def _fmt(value: Any) -> str:
    return f"{value:.{DIGITS}f}" if isinstance(value, float) else str(value)
