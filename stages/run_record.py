"""What the train stage records in MLflow beside Lightning's per-epoch metrics: the dataset's
experiment and its description, the params as the run used them, and the training data as an
MLflow dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from stages.config import ModelConfig, TrainerConfig
from stages.tracking import flatten

NOTE = "mlflow.note.content"  # the experiment tag MLflow's UI shows as its description
SPLITS = ("train", "val", "test")
SHOWN_CLASSES = 30  # a description lists at most this many class names


def ensure_experiment(client: MlflowClient, name: str, location: str | None, meta: dict) -> None:
    """Create the dataset's experiment unless it exists (two trainings of one dataset may race
    to create it when the flow runs them side by side), described by the data it holds now."""
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            client.create_experiment(name, artifact_location=location)
        except MlflowException:
            if client.get_experiment_by_name(name) is None:
                raise
        found = client.get_experiment_by_name(name)
    client.set_experiment_tag(found.experiment_id, NOTE, describe(name, meta))


def describe(name: str, meta: dict) -> str:
    """Markdown: the dataset, its source, classes and split sizes (from prepare's meta.json)."""
    classes = meta["classes"]
    shown = ", ".join(f"`{c}`" for c in classes[:SHOWN_CLASSES])
    more = f", … ({len(classes)} in all)" if len(classes) > SHOWN_CLASSES else ""
    sizes = ", ".join(f"{split} {meta['counts'][split]['total']}" for split in SPLITS)
    return (
        f"**{name}**: {meta['kind']}s from `{meta['source']}`.\n\n"
        f"{len(classes)} classes: {shown}{more}.\n\n"
        f"Split sizes: {sizes}."
    )


def run_params(
    model: ModelConfig, trainer_cfg: TrainerConfig, trainer: L.Trainer, meta: dict
) -> dict[str, Any]:
    """The flattened params as the run used them: what the Trainer chose for `auto` (device,
    precision, strategy, world size) instead of `auto`, and no unset (None) options."""
    used = {
        "accelerator": trainer.strategy.root_device.type,
        "devices": trainer.num_devices,
        "strategy": type(trainer.strategy).__name__,
        "precision": trainer.precision,
        "world_size": trainer.world_size,
    }
    params = flatten({"model": model.model_dump(), "trainer": trainer_cfg.model_dump() | used})
    return {k: v for k, v in params.items() if v is not None} | {
        "dataset": model.dataset,
        "n_train": meta["counts"]["train"]["total"],
    }


def log_training_data(
    client: MlflowClient, run_id: str, name: str, digest: str, prepared: Path, meta: dict
) -> None:
    """The prepared data as the run's training input (what `mlflow.log_input(..., context=
    "training")` logs): its DVC hash as the digest, so the runs table's Dataset column says
    what each run trained on, and the split sizes as its profile."""
    dataset = Dataset(
        name=name,
        digest=digest,
        # The form of MLflow's own source for a local path, so mlflow.data.get_source reads it.
        source_type="local",
        source=json.dumps({"uri": str(prepared)}),
        profile=json.dumps(
            {split: meta["counts"][split]["total"] for split in SPLITS}
            | {"classes": len(meta["classes"])}
        ),
    )
    context = InputTag(MLFLOW_DATASET_CONTEXT, "training")
    client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[context])])
