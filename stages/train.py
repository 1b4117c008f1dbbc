"""Stage `train@<model>`: train one model with Lightning and track the run in MLflow.

Reads `models.<model>`, `trainer` and `mlflow` of params.yaml and
`<paths.prepared>/<dataset>/`. Writes `<paths.models>/<model>/` (the kept weights, CPU tensors,
plus what rebuilds the model) and `<paths.metrics>/train/<model>.json`. The kept weights are the
best epoch's by val_loss (with early stopping), or the last epoch's of a schedule sized by the
data when the validation split is too small to choose (`trainer.min_val_for_selection`).

While it runs, `<paths.checkpoints>/<model>/` holds the best and last checkpoints and the MLflow
run id. A training killed part-way resumes from its last checkpoint when the stage runs again
with the same params and data; a finished training removes that folder, so it is never
resumed by accident. The model folder and the metrics file replace the old ones together, at
the end; a training that fails ends its MLflow run FAILED.

This module is the command line: it checks the params and the prepared data, then imports the
training itself (stages/training.py: Lightning alone is seconds of imports), so that a bad
input is answered at once.
"""

from __future__ import annotations

from pathlib import Path

from lightning_modules.prepared import read_meta
from stages.config import ModelConfig, load_params
from stages.errors import PipelineError, cli, item_name
from stages.tracking import dvc_out_hash, git_commit, tracking_uri


def check_prepared(name: str, model: ModelConfig, prepared: Path) -> None:
    """`prepared` holds the data `model` takes, or a PipelineError says what to do."""
    if not (prepared / "meta.json").is_file():
        raise PipelineError(
            f"{prepared}: no prepared data; run `dvc repro prepare@{model.dataset}` first"
        )
    kind = read_meta(prepared)["kind"]
    if kind != model.kind:
        raise PipelineError(
            f"models.{name}: arch '{model.arch}' takes {model.kind}s, but {prepared} holds {kind}s"
        )


def main(argv: list[str]) -> None:
    name = item_name(argv, "train", "model")
    params = load_params()
    model = params.model(name)
    paths = params.paths
    prepared = paths.prepared / model.dataset
    check_prepared(name, model, prepared)
    tags = {
        "git_commit": git_commit(),
        "data_dvc_md5": dvc_out_hash(f"prepare@{model.dataset}"),
    }
    from stages import training  # Lightning, torch, MLflow: imported once the inputs are good

    training.run(
        name,
        model,
        params.trainer,
        prepared=prepared,
        out=paths.models / name,
        metrics_file=paths.metrics / "train" / f"{name}.json",
        checkpoints=paths.checkpoints / name,
        mlflow_uri=tracking_uri(params.mlflow.tracking_uri),
        tags=tags,
        mlflow_cfg=params.mlflow,
    )


if __name__ == "__main__":
    cli(main)
