"""The end-of-run summary: every model's test metrics and the registry's decisions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from stages.config import Params

UI = "http://127.0.0.1:5000"  # `make ui`
COLUMNS = ("model", "dataset", "test_accuracy", "test_macro_f1", "test_loss", "n_test")
# The test accuracy of each baseline (stages/baselines.py), beside the model's.
BASELINE_COLUMNS = {"majority": "majority", "1nn_euclidean": "1nn"}


def metric_rows(params: Params, root: Path) -> list[dict[str, Any]]:
    rows = []
    for name, model in sorted(params.models.items()):
        path = root / params.paths.metrics / "eval" / f"{name}.json"
        if path.is_file():
            evaluation = json.loads(path.read_text())
            # An evaluation written before baselines were scored has none (None in the table).
            baselines = evaluation.get("baselines", {})
            rows.append(
                {"model": name, "dataset": model.dataset}
                | {k: evaluation[k] for k in COLUMNS[2:]}
                | {
                    c: baselines.get(b, {}).get("test_accuracy")
                    for b, c in BASELINE_COLUMNS.items()
                }
                | {"mlflow_run_id": evaluation["mlflow_run_id"]}
            )
    return rows


def registry_markdown(
    params: Params, root: Path, rows: list[dict], client: MlflowClient | None
) -> str:
    path = root / params.paths.metrics / "registry.json"
    lines = ["# Registry decisions", ""]
    if not path.is_file():
        return "\n".join(lines + ["No registry decisions yet (the register stage has not run)."])
    for _, entry in sorted(json.loads(path.read_text()).items()):
        lines.append(f"## {entry['registered_model']}")
        lines.append(
            f"Champion: version {entry['champion_version']} ({entry['champion_model']}), "
            f"{entry['metric']} {entry['champion_metric']}."
        )
        lines += [
            f"- v{d.get('version', '-')}: **{d['action']}**: {d['reason']}"
            for d in entry["decisions"]
        ]
        lines.append("")
    lines.append("## Training runs")
    lines += [
        f"- {r['model']} ({r['dataset']}): {_run_link(client, r['mlflow_run_id'])}" for r in rows
    ]
    return "\n".join(lines)


def _run_link(client: MlflowClient | None, run_id: str) -> str:
    if client is None:
        return f"run {run_id}"
    try:
        experiment = client.get_run(run_id).info.experiment_id
    except MlflowException:  # not in this store, or its server does not answer
        return f"run {run_id}"
    return f"[{run_id}]({UI}/#/experiments/{experiment}/runs/{run_id})"


def text_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no evaluated models)"
    columns = (*COLUMNS, *BASELINE_COLUMNS.values())
    cells = [[_fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
