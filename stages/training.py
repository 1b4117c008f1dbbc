"""The train stage's training run (`run`) and the Trainer and LightningModule it builds.

The stage's command line, its inputs and outputs are in stages/train.py, which checks the
params and the prepared data before importing this module (Lightning is seconds of imports).
Tuning trials (tuning/trial.py) and the benchmarks build their Trainer and Classifier here too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from mlflow import MlflowClient

from lightning_modules.data import PreparedDataModule
from lightning_modules.export import save_classifier, weights_sha256
from lightning_modules.system import Classifier, NonFiniteLossError
from stages.atomic import atomic_outputs, json_text, write_json
from stages.config import MlflowConfig, ModelConfig, TrainerConfig
from stages.errors import PipelineError
from stages.links import mlflow_ui_url, run_url
from stages.run_record import ensure_experiment, log_training_data, run_params
from stages.tracking import artifact_location, connect
from stages.train import check_prepared

RUN_FILE = "run.json"  # beside the weights/ folder of Lightning's checkpoints


class _Throughput(Callback):
    """Counts training samples and wall time of this process's fit (validation included)."""

    def __init__(self) -> None:
        self.samples, self.start, self.seconds = 0, 0.0, 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.samples += len(batch[-1]) * trainer.world_size

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.start


def run(
    name: str,
    model: ModelConfig,
    trainer_cfg: TrainerConfig,
    prepared: Path,
    out: Path,
    metrics_file: Path,
    checkpoints: Path,
    mlflow_uri: str,
    tags: dict[str, str],
    callbacks: Sequence[Callback] = (),
    mlflow_cfg: MlflowConfig | None = None,
) -> dict[str, Any]:
    """Train model `name` on `prepared`; write `out` and `metrics_file`; return the metrics."""
    check_prepared(name, model, prepared)
    data = PreparedDataModule(prepared, batch_size=model.batch_size, seed=trainer_cfg.seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    L.seed_everything(trainer_cfg.seed, workers=True, verbose=False)
    system = build_classifier(model, data.meta)
    client: MlflowClient | None = None
    if rank_zero_only.rank == 0:
        # An unreachable tracking server fails here, before any training.
        client = connect(mlflow_uri, mlflow_cfg or MlflowConfig())
        ensure_experiment(client, model.dataset, artifact_location(mlflow_uri), data.meta)
    fingerprint = _fingerprint(model, trainer_cfg, data.meta)
    resume = _resumable(checkpoints, fingerprint)
    # Only rank 0 talks to MLflow. The other DDP processes (torchrun's other nodes) get no
    # logger: MLFlowLogger opens a client as it is built, and on a new SQLite store two
    # processes that do so at once both create its tables, and one fails.
    logger = (
        MLFlowLogger(
            experiment_name=model.dataset,
            run_name=name,
            tracking_uri=mlflow_uri,
            run_id=resume.get("mlflow_run_id"),
            tags=tags | {"model": name, "arch": model.arch, "dataset": model.dataset},
        )
        if client is not None
        else None
    )
    run_id = logger.run_id if logger is not None else None
    with _ends_failed_on_error(client, run_id):
        if rank_zero_only.rank == 0:
            write_json(
                checkpoints / RUN_FILE, {"fingerprint": fingerprint, "mlflow_run_id": run_id}
            )
        best = ModelCheckpoint(
            dirpath=checkpoints / "weights", filename="best", monitor="val_loss", save_last=True
        )
        throughput = _Throughput()
        trainer, selection = build_trainer(
            model, trainer_cfg, data.meta, logger, [best, throughput, *callbacks], checkpoints
        )
        if client is not None and logger is not None and not resume:  # a resumed run has them
            logger.log_hyperparams(run_params(model, trainer_cfg, trainer, data.meta))
            data_hash = tags.get("data_dvc_md5", "unknown")
            log_training_data(client, run_id, model.dataset, data_hash, prepared, data.meta)
        try:
            with warnings.catch_warnings():
                # A resumed training reads this folder's checkpoints (_resumable cleared
                # anything else): Lightning's warning that the folder is not empty is noise.
                warnings.filterwarnings("ignore", "Checkpoint directory .* exists and is not empty")
                trainer.fit(system, datamodule=data, ckpt_path=resume.get("last"))
        except NonFiniteLossError as exc:
            shutil.rmtree(checkpoints, ignore_errors=True)  # a diverged run is not worth resuming
            raise PipelineError(f"train@{name}: {exc}; no model was written") from None
        if client is None:
            return {}
        device = str(trainer.strategy.root_device)
        if selection == SELECT_BEST:
            best_state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
            system.load_state_dict(best_state["state_dict"])
        # else the weights in memory are the last epoch's, resumed or not
        kept = kept_epoch(client, run_id, selection)
        digest = weights_sha256(system)
        metrics = {
            "mlflow_run_id": run_id,
            "selection": selection,
            # The validation figures of the kept weights (the last epoch's under `last_epoch`).
            "best_val_loss": at_epoch(client, run_id, "val_loss", kept),
            "best_val_accuracy": at_epoch(client, run_id, "val_acc", kept),
            "kept_epoch": kept,  # evaluate logs the model at this step, beside these figures
            "epochs": trainer.current_epoch,
            "resumed_at_epoch": resume.get("epoch"),
            "train_seconds": round(throughput.seconds, 3),
            "samples_per_second": round(throughput.samples / max(throughput.seconds, 1e-9), 1),
            "device": device if device == "cpu" else f"{device} ({torch.cuda.get_device_name()})",
            "precision": str(trainer.precision),
            "weights_sha256": digest,
        }
        # No run id or timing in here: the same weights give the same bytes, so dvc.lock agrees
        # across clones (the run id lives in the metrics file).
        spec = {"dataset": model.dataset, "classes": data.meta["classes"], "weights_sha256": digest}
        # Both outputs replace the old ones together, once the run holds what it should.
        with atomic_outputs(out, metrics_file) as (model_tmp, metrics_tmp):
            save_classifier(system, model_tmp, spec)
            metrics_tmp.write_text(json_text(metrics))
            for key in ("device", "weights_sha256"):
                client.set_tag(run_id, key, metrics[key])
            client.log_metric(run_id, "best_val_accuracy", metrics["best_val_accuracy"], step=kept)
        shutil.rmtree(checkpoints, ignore_errors=True)
        experiment = client.get_run(run_id).info.experiment_id
        print(_done_line(name, metrics, selection), flush=True)
        print(f"MLflow run: {run_url(mlflow_ui_url(mlflow_uri), experiment, run_id)}", flush=True)
        return metrics


def _done_line(name: str, metrics: dict[str, Any], selection: str) -> str:
    """What the train log ends with: the kept epoch and its validation figures, the time."""
    kept = "best val_loss" if selection == SELECT_BEST else "the last"
    return (
        f"train@{name}: kept epoch {metrics['kept_epoch'] + 1}/{metrics['epochs']} ({kept}): "
        f"val_loss {metrics['best_val_loss']:.4f}  val_acc {metrics['best_val_accuracy']:.4f}  "
        f"{metrics['train_seconds']:.0f} s, {metrics['samples_per_second']:g} samples/s "
        f"on {metrics['device']}"
    )


@contextmanager
def _ends_failed_on_error(client: MlflowClient | None, run_id: str | None) -> Iterator[None]:
    """End the run FAILED when the block raises.

    Lightning's MLFlowLogger ends it FAILED when `fit` raises and FINISHED when `fit` returns;
    a failure outside `fit` (a bad Trainer setting before it, writing the outputs after it)
    would leave it RUNNING, or FINISHED with no model.
    """
    try:
        yield
    except BaseException:
        if client is not None and run_id:  # rank 0 only
            client.set_terminated(run_id, status="FAILED")
        raise


SELECT_BEST, SELECT_LAST = "best_val_loss", "last_epoch"


def _selection(n_val: int, cfg: TrainerConfig) -> str:
    """How the kept weights are chosen. Early stopping and the best checkpoint need a
    validation split that can tell epochs apart: with 6-8 series (ArrowHead, GunPoint) the
    validation accuracy moves in steps of 1/6 and the loss of a handful of series picks an
    epoch by chance. Below `min_val_for_selection` the model trains its whole schedule (sized by
    the data: `epochs_for`) and the last weights are kept, as a one-cycle schedule intends."""
    return SELECT_LAST if n_val < cfg.min_val_for_selection else SELECT_BEST


def build_trainer(
    model: ModelConfig,
    trainer_cfg: TrainerConfig,
    meta: dict,
    logger: MLFlowLogger | None,
    callbacks: Sequence[Callback],
    root: Path,
) -> tuple[L.Trainer, str]:
    """The Trainer of `model` on the prepared data described by `meta`, and how it keeps its
    weights (`SELECT_BEST` adds early stopping). Checkpoints are saved only by a
    ModelCheckpoint among `callbacks`. Tuning trials train through this too."""
    selection = _selection(meta["counts"]["val"]["total"], trainer_cfg)
    stopping = (
        [EarlyStopping(monitor="val_loss", patience=trainer_cfg.patience)]
        if selection == SELECT_BEST
        else []
    )
    trainer = L.Trainer(
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.num_nodes,
        strategy=trainer_cfg.strategy,
        precision=trainer_cfg.precision or _default_precision(trainer_cfg),
        deterministic=trainer_cfg.deterministic,
        max_epochs=epochs_for(model, meta["counts"]["train"]["total"]),
        gradient_clip_val=model.gradient_clip,
        logger=logger if logger is not None else False,
        callbacks=[*stopping, *callbacks],
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        default_root_dir=root,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    return trainer, selection


def build_classifier(model: ModelConfig, meta: dict) -> Classifier:
    """The LightningModule of `model` for the prepared data described by `meta`."""
    return Classifier(
        model=model.arch,
        input_shape=tuple(meta["input_shape"]),
        num_classes=len(meta["classes"]),
        model_kwargs=model.model_kwargs,
        lr=model.lr,
        weight_decay=model.weight_decay,
        scheduler=model.scheduler,
        label_smoothing=model.label_smoothing,
        augment=model.augment.settings(model.kind) if model.augment else None,
    )


def epochs_for(model: ModelConfig, n_train: int) -> int:
    """max_epochs, or more when that gives fewer than `min_steps` optimiser steps (batches per
    epoch counted on one device): 42 training series in batches of 64 are one step an epoch."""
    batches = math.ceil(n_train / model.batch_size)
    return max(model.max_epochs, math.ceil(model.min_steps / batches))


def kept_epoch(client: Any, run_id: str, selection: str) -> int:
    """The epoch of the kept weights (the step its validation is logged at): the lowest
    val_loss, or the last one, from the run's history (resumes included)."""
    losses = client.get_metric_history(run_id, "val_loss")
    if selection == SELECT_BEST:
        return min(losses, key=lambda m: m.value).step
    return max(m.step for m in losses)


def at_epoch(client: Any, run_id: str, metric: str, epoch: int) -> float:
    """`metric` logged at `epoch` (its step), from the run's history."""
    values = {m.step: m.value for m in client.get_metric_history(run_id, metric)}
    return float(values[epoch])


def _default_precision(cfg: TrainerConfig) -> str:
    on_cuda = cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_cuda else "32-true"


def _fingerprint(model: ModelConfig, trainer_cfg: TrainerConfig, meta: dict) -> str:
    """What a checkpoint must match to be resumed: the params and the prepared data."""
    key = {
        "model": model.model_dump(),
        "trainer": trainer_cfg.model_dump(),
        "data": meta["raw_fingerprint"],
        "counts": meta["counts"],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _resumable(checkpoints: Path, fingerprint: str) -> dict[str, Any]:
    """The last checkpoint and MLflow run of an unfinished training with the same fingerprint.

    Anything else left in `checkpoints` belongs to other params or data and is cleared (by
    rank 0 only: DDP's other processes start while rank 0 already trains into the folder).
    """
    last = checkpoints / "weights" / "last.ckpt"
    run_file = checkpoints / RUN_FILE
    if last.is_file() and run_file.is_file():
        saved = json.loads(run_file.read_text())
        if saved.get("fingerprint") == fingerprint:
            # A checkpoint is saved at the end of epoch N; training goes on at epoch N + 1.
            done = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
            return {"last": str(last), "mlflow_run_id": saved["mlflow_run_id"], "epoch": done + 1}
    if rank_zero_only.rank == 0:
        shutil.rmtree(checkpoints, ignore_errors=True)
        checkpoints.mkdir(parents=True)
    return {}
