"""Stage `register`: every evaluated model becomes a version of `<dataset>-classifier`, once.

Reads `models`, `register` and `mlflow` of params.yaml and `<paths.metrics>/eval/<model>.json`.
Writes `<paths.metrics>/registry.json`: per dataset the registered model, the champion (version,
run id, metric) and the decision on each current model's version with its reason.

Aliases, not the deprecated stages: the newest version is the `challenger`; it becomes the
`champion` when it beats the best baseline of the evaluation (stages/baselines.py; unless
`register.beat_baselines` is off) and either there is no champion or it beats the champion, each
on the same test set by at least `register.min_delta`; otherwise it is `rejected` (below the
baselines) or the champion is kept. A version measured on another test set is measured again
on the current one first. An alias moves only after its version is READY. Each version is
decided exactly once: the decision is a tag on the version, written after the aliases moved,
and any version without one (its registration was interrupted) is decided by the next run. The
reason is the version's description too, and each version is linked to its logged model.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import requests
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from lightning_modules.prepared import read_meta
from stages.atomic import write_json
from stages.baselines import best_baseline
from stages.config import Params, RegisterConfig, load_params
from stages.errors import PipelineError, TransientError, cli
from stages.metrics import classification_metrics
from stages.preprocess import raw_from_prepared
from stages.tracking import connect, redact, tracking_uri

CHAMPION, CHALLENGER = "champion", "challenger"
DECISION, REASON = "decision", "decision_reason"  # version tags: decided once, then kept
LOGGED_MODEL_URI = re.compile(r"^models:/(m-[0-9a-f]+)$")  # models:/<model_id>


def registered_name(dataset: str) -> str:
    return f"{dataset}-classifier"


def run(
    candidates: dict[str, list[tuple[str, Path]]],
    prepared: dict[str, Path],
    cfg: RegisterConfig,
    client: MlflowClient,
    out: Path,
) -> dict[str, Any]:
    """`candidates`: dataset → [(model, eval json)]; `prepared`: dataset → prepared folder."""
    report = {}
    for dataset, models in sorted(candidates.items()):
        evaluations = [(model, _read_eval(path)) for model, path in models]
        report[dataset] = _register_dataset(
            client, dataset, evaluations, read_meta(prepared[dataset]), prepared[dataset], cfg
        )
    write_json(out, report)
    return report


def _read_eval(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PipelineError(f"{path}: missing; run its evaluate stage first")
    evaluation = json.loads(path.read_text())
    for key in ("mlflow_run_id", "mlflow_model_uri", "test_fingerprint", "baselines"):
        if not evaluation.get(key):
            raise PipelineError(f"{path}: no {key}; re-run its evaluate stage")
    return evaluation


def _register_dataset(client, dataset, evaluations, meta, prepared, cfg) -> dict[str, Any]:
    name = registered_name(dataset)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"Classifiers of the {dataset} dataset")
    current = [_version_for(client, name, model, evaluation) for model, evaluation in evaluations]
    # Every version is decided exactly once: the decision is recorded on the version itself,
    # after its aliases moved, so a version whose registration was interrupted (the process
    # died between creating it and moving the aliases) is decided by the next run.
    undecided = [
        v for v in client.search_model_versions(f"name='{name}'") if DECISION not in v.tags
    ]
    # Every evaluation of one dataset scored the baselines on its one current test split.
    baselines = evaluations[0][1]["baselines"]
    floor = best_baseline(baselines, cfg.metric) if cfg.beat_baselines else None
    decided_now = set()
    for version in sorted(undecided, key=lambda v: int(v.version)):
        decision = _decide(client, name, version, meta, prepared, cfg, floor)
        description = f"{decision['action']}: {decision['reason']}"
        client.update_model_version(name, version.version, description=description)
        client.set_model_version_tag(name, version.version, REASON, decision["reason"])
        client.set_model_version_tag(name, version.version, DECISION, decision["action"])
        decided_now.add(str(version.version))
    champion = _alias(client, name, CHAMPION)
    # The decisions on the current models' versions, whenever they were made: a run that
    # decides nothing keeps the last decisions visible.
    decisions = [
        {
            "version": str(v.version),
            "model": v.tags.get("model"),
            "action": v.tags[DECISION],
            "reason": v.tags[REASON],
            "decided_now": str(v.version) in decided_now,
        }
        for v in sorted(
            {str(v.version): client.get_model_version(name, v.version) for v in current}.values(),
            key=lambda v: int(v.version),
        )
    ]
    return {
        "registered_model": name,
        "champion_version": str(champion.version) if champion else None,
        "champion_run_id": champion.run_id if champion else None,
        "champion_model": champion.tags.get("model") if champion else None,
        "metric": cfg.metric,
        "champion_metric": float(champion.tags[cfg.metric]) if champion else None,
        "decisions": decisions,
    }


def _version_for(client, name, model, evaluation) -> ModelVersion:
    """The version of this training run, created from its logged model (`models:/<model_id>`)
    and awaited until READY if there is none, and linked to that logged model."""
    run_id = evaluation["mlflow_run_id"]
    found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    created = found[0] if found else _create_version(client, name, model, evaluation)
    version = _await_ready(client, name, created.version)
    _link_logged_model(client, version)
    return version


def _create_version(client, name, model, evaluation) -> ModelVersion:
    run_id = evaluation["mlflow_run_id"]
    run = client.get_run(run_id)
    tags = {
        "model": model,
        "test_accuracy": str(evaluation["test_accuracy"]),
        "test_macro_f1": str(evaluation["test_macro_f1"]),
        "test_fingerprint": evaluation["test_fingerprint"],
        "git_commit": run.data.tags.get("git_commit", "unknown"),
        "data_hash": run.data.tags.get("data_dvc_md5", "unknown"),
    }
    return client.create_model_version(
        name,
        evaluation["mlflow_model_uri"],
        run_id=run_id,
        tags=tags,
        model_id=evaluation.get("mlflow_model_id"),
    )


def _link_logged_model(client, version: ModelVersion) -> None:
    """List `version` in its logged model's `mlflow.modelVersions` tag, as mlflow.register_model
    does (mlflow/tracking/_model_registry/fluent.py): the UI's logged-model page shows a model as
    registered by that tag, and the version page finds its logged model from the source URI.
    Idempotent, so a registration interrupted before the link is linked by the next run."""
    source = LOGGED_MODEL_URI.match(version.source or "")
    if source is None:  # a version registered by hand from files: no logged model to link
        return
    model_id = source.group(1)
    listed = json.loads(client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
    entry = {"name": version.name, "version": int(version.version)}
    if entry not in listed:
        client.set_logged_model_tags(
            model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(listed + [entry])}
        )


def _await_ready(client, name, version, timeout=300.0) -> ModelVersion:
    deadline = time.monotonic() + timeout
    while True:
        mv = client.get_model_version(name, version)
        if mv.status == "READY":
            return mv
        if mv.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise PipelineError(f"{name} version {version} did not become ready ({mv.status})")
        time.sleep(0.5)


def _decide(client, name, version, meta, prepared, cfg, floor) -> dict[str, str]:
    """Move the aliases for `version` (a READY version not decided yet); return the decision.

    `floor`: the best baseline's (name, metric) on the current test split, which the version
    must beat by `min_delta` to be promoted; None when `register.beat_baselines` is off.
    """
    version = _await_ready(client, name, version.version)
    number = str(version.version)
    client.set_registered_model_alias(name, CHALLENGER, number)
    champion = _alias(client, name, CHAMPION)
    if champion is not None and str(champion.version) == number:
        # Promoted by a run that died before recording the decision.
        return {
            "action": "promoted",
            "reason": "already the champion (promoted before its decision was recorded)",
        }
    score, note = _score(client, name, version, meta, prepared, cfg)
    if floor is not None and score < floor[1] + cfg.min_delta:
        return {
            "action": "rejected",
            "reason": f"{cfg.metric} {score:.4f} does not beat the best baseline, {floor[0]}'s "
            f"{floor[1]:.4f}, by {cfg.min_delta}" + (f" ({note})" if note else ""),
        }
    if champion is None:
        client.set_registered_model_alias(name, CHAMPION, number)
        return {"action": "promoted", "reason": "no champion yet"}
    held, held_note = _score(client, name, champion, meta, prepared, cfg)
    notes = [n for n in (note, held_note and f"champion {held_note}") if n]
    note = f" ({'; '.join(notes)})" if notes else ""
    if score >= held + cfg.min_delta:
        client.set_registered_model_alias(name, CHAMPION, number)
        return {
            "action": "promoted",
            "reason": f"{cfg.metric} {score:.4f} beats champion v{champion.version}'s "
            f"{held:.4f} by at least {cfg.min_delta}{note}",
        }
    return {
        "action": "kept_champion",
        "reason": f"{cfg.metric} {score:.4f} does not beat champion v{champion.version}'s "
        f"{held:.4f} by {cfg.min_delta}{note}",
    }


def _score(client, name, version, meta, prepared, cfg) -> tuple[float, str]:
    """`version`'s metric on the current test split, and a note when it had to be measured
    again (it was measured on another test set)."""
    if version.tags.get("test_fingerprint") == meta["test_fingerprint"]:
        return float(version.tags[cfg.metric]), ""
    return _remeasure(
        client, name, version, meta, prepared, cfg
    ), "re-measured on the current test set"


def _remeasure(client, name, version, meta, prepared, cfg) -> float:
    """`version`'s metric on the current test split, through its own preprocessing."""
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    labels = model.predict(raw_from_prepared(prepared, meta))["label"]
    # A label the current classes lack (the model knew other classes) counts as wrong.
    classes = [*meta["classes"], "<not a current class>"]
    index = {c: i for i, c in enumerate(meta["classes"])}
    pred = np.array([index.get(label, len(classes) - 1) for label in labels])
    score = classification_metrics(np.load(prepared / "y_test.npy"), pred, classes)[cfg.metric]
    client.set_model_version_tag(name, version.version, cfg.metric, str(score))
    client.set_model_version_tag(
        name, version.version, "test_fingerprint", meta["test_fingerprint"]
    )
    return score


def _alias(client, name, alias) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


@contextmanager
def lost_server_is_transient(uri: str) -> Iterator[None]:
    """A tracking server that stops answering after `connect` (stopped, restarted, killed
    part-way through an answer, its network gone) is as transient as one that never answered:
    a TransientError, exit 75, which the flow retries, and the retry registers where this run
    stopped (each version is created and decided once). MLflow raises a plain MlflowException
    for it, with the `requests` error as its context (mlflow/utils/rest_utils.py: "API request
    to ... failed with exception ..."), which would end the stage like a bug, not retried.
    Here, not in stages.tracking: every train stage depends on that file, and this concerns
    register alone."""
    try:
        yield
    except MlflowException as exc:
        lost = (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.RetryError,
            # Killed while it answered: "Connection broken: IncompleteRead" (the request may
            # have been carried out; the retry finds what it made).
            requests.exceptions.ChunkedEncodingError,
        )
        if not isinstance(exc.__cause__ or exc.__context__, lost):
            raise
        raise TransientError(
            f"MLflow tracking server {redact(uri)} stopped answering: {exc.message}"
        ) from exc


def candidates_of(params: Params) -> dict[str, list[tuple[str, Path]]]:
    out: dict[str, list[tuple[str, Path]]] = {}
    for model, cfg in sorted(params.models.items()):
        out.setdefault(cfg.dataset, []).append(
            (model, params.paths.metrics / "eval" / f"{model}.json")
        )
    return out


def main(argv: list[str]) -> None:
    if argv:
        raise PipelineError("usage: python -m stages.register")
    params = load_params()
    candidates = candidates_of(params)
    uri = tracking_uri(params.mlflow.tracking_uri)
    client = connect(uri, params.mlflow)
    mlflow.set_tracking_uri(uri)
    prepared = {d: params.paths.prepared / d for d in candidates}
    with lost_server_is_transient(uri):
        run(candidates, prepared, params.registry, client, params.paths.metrics / "registry.json")


if __name__ == "__main__":
    cli(main)
