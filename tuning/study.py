"""One model's search: what it searches (`Search`, from params.yaml), its Optuna study in a
persistent storage, its parent MLflow run, and how many of its trials are done.

The study's name is a digest of everything a trial's score depends on but the searched
values (the model's params, the trainer's, the metric, folds and space, the prepared data),
so running the same search again continues its study, and changing any of it starts another.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState

from lightning_modules.prepared import read_meta
from stages.config import MlflowConfig, ModelConfig, Params, TrainerConfig
from stages.errors import PipelineError
from stages.model_config import ARCH_SECTIONS, AugmentSpec
from stages.run_record import ensure_experiment
from stages.tracking import REPO_ROOT, artifact_location, redact, tracking_uri
from stages.tune_config import TuneConfig

# A running trial's worker proves it is alive this often; a trial silent for GRACE_SECONDS
# belonged to a killed worker: it is failed, and its params queued again.
HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 20
# The user attribute of a trial that failed by itself (a non-finite loss): unlike a killed
# worker's trial it counts toward the study's trials, and is not run again.
FAILURE = "failure"
PARENT_RUN = "mlflow_parent_run_id"  # the study's user attribute
SOURCE = "source"  # the user attribute of the trial of params.yaml's own recipe
STUDY_TAG = "tune.study"
# Heartbeats and their retry callback are "experimental" in Optuna 5, and said so on every use.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass(frozen=True)
class Search:
    """The search of model `name` as params.yaml declares it, and where it runs."""

    name: str
    model: ModelConfig
    tune: TuneConfig
    trainer: TrainerConfig
    mlflow: MlflowConfig
    prepared: Path
    mlflow_uri: str
    storage: str

    @property
    def meta(self) -> dict:
        if not (self.prepared / "meta.json").is_file():
            raise PipelineError(
                f"{self.prepared}: no prepared data; run `dvc repro prepare@{self.model.dataset}`"
            )
        return read_meta(self.prepared)

    @property
    def study_name(self) -> str:
        key = {
            "model": _without_searched(self.model.model_dump(), self.tune),
            "trainer": self.trainer.model_dump(),
            "tune": self.tune.model_dump(exclude={"trials", "storage"}),
            "data": self.meta["raw_fingerprint"],
            "counts": self.meta["counts"],
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode())
        return f"{self.name}-{digest.hexdigest()[:10]}"


def _without_searched(settings: dict, tune: TuneConfig) -> dict:
    """`settings` without the searched keys: applying a winner keeps the study's name."""
    kept = {k: dict(v) if isinstance(v, dict) else v for k, v in settings.items()}  # copies
    for key in tune.space:
        section, _, field = key.rpartition(".")
        holder = (kept.get(section) or {}) if section else kept
        holder.pop(field, None)
    return kept


def search_for(params: Params, name: str, root: Path = REPO_ROOT) -> Search:
    """Model `name`'s search from params.yaml; an error naming the section when it has none."""
    model = params.model(name)
    if name not in params.tune:
        raise PipelineError(
            f"params.yaml has no `tune.{name}` section: declare the search space there "
            "(README, 'Hyper-parameter search')"
        )
    tune = params.tune[name]
    return Search(
        name=name,
        model=model,
        tune=tune,
        trainer=params.trainer,
        mlflow=params.mlflow,
        prepared=root / params.paths.prepared / model.dataset,
        mlflow_uri=tracking_uri(params.mlflow.tracking_uri, root),
        storage=storage_url(tune.storage, root),
    )


def storage_url(configured: str | None, root: Path = REPO_ROOT) -> str:
    """$OPTUNA_STORAGE, else `tune.<model>.storage`, else a SQLite file at the repo root."""
    return (
        os.environ.get("OPTUNA_STORAGE")
        or configured
        or f"sqlite:///{(root / 'optuna.db').resolve()}"
    )


def open_study(search: Search, worker: int = 0) -> optuna.Study:
    """The search's study, created on first use. TPE samples with a seed of its own for each
    worker and each session of the study (a seed used again would draw the values of the
    first trials again), and with the constant liar, so that workers running at once do not
    pick the same values."""
    storage = optuna.storages.RDBStorage(
        search.storage,
        heartbeat_interval=HEARTBEAT_SECONDS,
        grace_period=GRACE_SECONDS,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=1
        ),
        # Two worker processes on one SQLite file wait for each other's writes.
        engine_kwargs={"connect_args": {"timeout": 60}}
        if search.storage.startswith("sqlite")
        else None,
    )
    tune = search.tune
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=_warmup(tune))
        if tune.prune
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        storage=storage,
        study_name=search.study_name,
        direction=tune.direction,
        pruner=pruner,
        load_if_exists=True,
    )
    seed = search.trainer.seed + 1000 * worker + len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return study


def enqueue_current(study: optuna.Study, search: Search) -> None:
    """A new study's first trial is the recipe params.yaml holds now (its values that lie in
    the space; the rest sampled), so the search moves away from it only where the score says
    the move is better."""
    if study.get_trials(deepcopy=False):
        return
    current = {}
    for key, dist in search.tune.space.items():
        section, _, field = key.rpartition(".")
        values = search.model.model_dump() if not section else _section(search.model, section)
        if dist.contains(values.get(field)):
            current[key] = values[field]
    study.enqueue_trial(current, user_attrs={SOURCE: "params.yaml"})


def _section(model: ModelConfig, section: str) -> dict:
    """The settings of `section` as the model uses them (its arch's defaults when unset)."""
    if section == ARCH_SECTIONS[model.arch]:
        return model.model_kwargs
    return (getattr(model, section) or AugmentSpec()).model_dump()


def _warmup(tune: TuneConfig) -> int:
    """Steps before pruning may stop a trial: epochs (the one-cycle warm-up's first ones say
    little), or folds when each step is a fold."""
    return 10 if tune.folds == 1 else 1


@dataclass(frozen=True)
class Progress:
    done: int  # complete, pruned, or failed by itself
    running: int
    waiting: int  # queued: a killed worker's trial, queued again with its params

    def left(self, trials: int) -> int:
        """Trials still to start: the running and queued ones are taken."""
        return max(0, trials - self.done - self.running - self.waiting)


def progress(study: optuna.Study) -> Progress:
    trials = study.get_trials(deepcopy=False)
    done = sum(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED) or FAILURE in t.user_attrs
        for t in trials
    )
    running = sum(t.state == TrialState.RUNNING for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    return Progress(done, running, waiting)


def parent_run(search: Search, study: optuna.Study, client: MlflowClient) -> str:
    """The study's parent MLflow run (in the dataset's experiment), created on first use."""
    found = study.user_attrs.get(PARENT_RUN)
    if found:
        try:
            client.get_run(found)
            return found
        except MlflowException:  # the run was deleted, or this is another tracking store
            pass
    dataset = search.model.dataset
    ensure_experiment(client, dataset, artifact_location(search.mlflow_uri), search.meta)
    experiment = client.get_experiment_by_name(search.model.dataset).experiment_id
    run = client.create_run(
        experiment,
        run_name=f"tune {search.name}",
        tags={
            STUDY_TAG: study.study_name,
            "tune.storage": redact(search.storage),
            "model": search.name,
            "arch": search.model.arch,
            "dataset": search.model.dataset,
        },
    )
    study.set_user_attr(PARENT_RUN, run.info.run_id)
    return run.info.run_id
