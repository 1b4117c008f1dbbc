"""One trial of a search: Optuna draws the searched values, and the train stage's own code
trains them (the same LightningModule, DataModule, Trainer settings and seeding) on the
prepared data, as an MLflow run nested under the study's parent run that logs the same
metric names as ordinary training. The trial's score is `metric` at the epoch the train stage
would keep, or its mean over the folds (each fold a run nested under the trial's)."""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import optuna
from lightning.pytorch.loggers import MLFlowLogger
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from optuna_integration import PyTorchLightningPruningCallback

from lightning_modules.data import PreparedDataModule
from lightning_modules.system import NonFiniteLossError
from stages.config import ModelConfig
from stages.run_record import log_training_data, run_params
from stages.training import at_epoch, build_classifier, build_trainer, kept_epoch
from stages.tune_config import Distribution, with_values
from tuning.folds import FoldDataModule
from tuning.study import FAILURE, STUDY_TAG, Search


def suggest(trial: optuna.Trial, space: dict[str, Distribution]) -> dict[str, Any]:
    """The trial's values for every key of `space`, drawn by the study's sampler."""
    values: dict[str, Any] = {}
    for key, dist in space.items():
        low_high = dist.values
        match dist.kind:
            case "uniform" | "log_uniform":
                values[key] = trial.suggest_float(
                    key, *map(float, low_high), log=dist.kind == "log_uniform"
                )
            case "int" | "log_int":
                values[key] = trial.suggest_int(key, *low_high, log=dist.kind == "log_int")
            case _:
                values[key] = trial.suggest_categorical(key, low_high)
    return values


def objective(
    search: Search, parent_run_id: str, client: MlflowClient, tags: dict[str, str]
) -> Callable[[optuna.Trial], float]:
    """Optuna's objective for `search`: each call is one trial, tracked in MLflow."""

    def run(trial: optuna.Trial) -> float:
        values = suggest(trial, search.tune.space)
        model = with_values(search.model, values)
        trial_tags = tags | {
            MLFLOW_PARENT_RUN_ID: parent_run_id,
            STUDY_TAG: trial.study.study_name,
            "tune.trial": str(trial.number),
            **{f"tune.{key}": str(value) for key, value in values.items()},
        }
        run_id = _new_run(client, search, f"{search.name} trial {trial.number}", trial_tags)
        trial.set_user_attr("mlflow_run_id", run_id)
        folds, seed = search.tune.folds, search.trainer.seed
        data_hash = tags.get("data_dvc_md5", "unknown")
        scores: list[float] = []
        try:
            for fold in range(folds):
                if folds == 1:
                    data = PreparedDataModule(search.prepared, model.batch_size, seed)
                    scores.append(_fit(search, model, data, client, run_id, trial, data_hash))
                    continue
                data = FoldDataModule(search.prepared, model.batch_size, seed, fold, folds)
                fold_tags = trial_tags | {MLFLOW_PARENT_RUN_ID: run_id, "tune.fold": str(fold)}
                fold_run = _new_run(client, search, f"trial {trial.number} fold {fold}", fold_tags)
                scores.append(_fit(search, model, data, client, fold_run, None, data_hash))
                trial.report(statistics.fmean(scores), fold)
                if search.tune.prune and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after fold {fold}")
        except optuna.TrialPruned:
            client.set_tag(run_id, "tune.state", "pruned")
            client.set_terminated(run_id, status="KILLED")
            raise
        except NonFiniteLossError as exc:
            trial.set_user_attr(FAILURE, str(exc))
            client.set_tag(run_id, "tune.state", "failed")
            client.set_terminated(run_id, status="FAILED")
            raise
        score = statistics.fmean(scores)
        client.log_metric(run_id, f"tune_{search.tune.metric}", score)
        client.set_tag(run_id, "tune.state", "complete")
        if folds > 1:  # a single fit ended its own run
            client.set_terminated(run_id, status="FINISHED")
        return score

    return run


def _new_run(client: MlflowClient, search: Search, name: str, tags: dict[str, str]) -> str:
    experiment = client.get_experiment_by_name(search.model.dataset).experiment_id
    return client.create_run(experiment, run_name=name, tags=tags).info.run_id


def _fit(
    search: Search,
    model: ModelConfig,
    data: PreparedDataModule,
    client: MlflowClient,
    run_id: str,
    trial: optuna.Trial | None,
    data_hash: str,
) -> float:
    """Train `model` on `data` into MLflow run `run_id`; `metric` at the kept epoch. With a
    trial, the epochs' figures go to its pruner."""
    L.seed_everything(search.trainer.seed, workers=True, verbose=False)
    system = build_classifier(model, data.meta)
    logger = MLFlowLogger(
        experiment_name=model.dataset, tracking_uri=search.mlflow_uri, run_id=run_id
    )
    callbacks = (
        [PyTorchLightningPruningCallback(trial, monitor=search.tune.metric)]
        if trial is not None and search.tune.prune
        else []
    )
    with tempfile.TemporaryDirectory(prefix="trial-") as root:
        trainer, selection = build_trainer(
            model, search.trainer, data.meta, logger, callbacks, Path(root)
        )
        logger.log_hyperparams(run_params(model, search.trainer, trainer, data.meta))
        log_training_data(client, run_id, model.dataset, data_hash, search.prepared, search.meta)
        trainer.fit(system, datamodule=data)
    return at_epoch(client, run_id, search.tune.metric, kept_epoch(client, run_id, selection))
