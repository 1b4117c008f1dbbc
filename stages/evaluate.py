"""Stage `evaluate@<model>`: test-split metrics, a confusion-matrix plot, the MLflow model.

Reads `models.<model>` and `mlflow` of params.yaml, `<paths.models>/<model>/`,
`<paths.prepared>/<dataset>/` and `<paths.metrics>/train/<model>.json` (for the MLflow run).
Writes `<paths.metrics>/eval/<model>.json` (a DVC metric: the headline figures only, so
`dvc metrics show` stays readable), `<model>_per_class.json` (each class's precision, recall
and support, and the confusion matrix), `<model>_confusion.csv` (actual/predicted per test
example, a DVC plot) and `<model>_confusion.png`. Logs the same metrics, per-class ones
included, and the PNG (as `confusion.png` at the top of every run's artifacts, so MLflow's
compare view shows them side by side) to the model's training run, and the pyfunc model
(stages/pyfunc_model.py) that takes raw input, named after the model and holding the test
metrics. Beside the model's, the scores of simple baselines on the same test split
(stages/baselines.py). The four files replace the old ones together, once the logging has
succeeded; a failure leaves the old ones and ends the run FAILED.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from lightning_modules.export import load_classifier
from lightning_modules.prepared import load_split, read_meta
from stages.atomic import atomic_outputs, json_text
from stages.baselines import baseline_metrics
from stages.config import MlflowConfig, ModelConfig, load_params
from stages.errors import PipelineError, cli, item_name
from stages.metrics import classification_metrics
from stages.preprocess import raw_from_prepared
from stages.pyfunc_model import log_pyfunc
from stages.tracking import connect, redact, tracking_uri

# What metric_keys replaces in a class name.
UNSAFE_IN_METRIC_NAMES = re.compile(r"[^\w.\- ]")
# One name in every run, at the top of its artifacts: MLflow's compare view pairs artifacts of
# the same name, and looks into no folder.
CONFUSION_ARTIFACT = "confusion.png"
# What classification_metrics gives per class: `<model>_per_class.json`, not the DVC metric.
PER_CLASS_KEYS = ("per_class", "confusion_matrix")


def _timed_logits(module: torch.nn.Module, arrays: tuple[np.ndarray, ...], batch_size: int):
    """Logits of the whole split, and (seconds, size) of each batch (after one warm-up batch)."""
    tensors = [torch.from_numpy(np.array(a)) for a in arrays]
    with torch.inference_mode():
        module(*(t[:batch_size] for t in tensors))
        logits, batches = [], []
        for start in range(0, len(tensors[0]), batch_size):
            began = time.perf_counter()
            logits.append(module(*(t[start : start + batch_size] for t in tensors)).float())
            batches.append((time.perf_counter() - began, len(logits[-1])))
    return torch.cat(logits), batches


def run(
    name: str,
    model: ModelConfig,
    prepared: Path,
    model_dir: Path,
    train_metrics: Path,
    out_dir: Path,
    mlflow_uri: str,
    mlflow_cfg: MlflowConfig | None = None,
) -> dict[str, Any]:
    """Evaluate model `name` on the test split; write `out_dir/<name>*`; log to MLflow.

    Returns the headline metrics (`<name>.json`); the per-class ones are `<name>_per_class.json`.
    """
    run_id, kept_epoch = _training_run(train_metrics)
    if not (model_dir / "model.json").is_file():
        raise PipelineError(f"{model_dir}: no trained model; run `dvc repro train@{name}` first")
    meta = read_meta(prepared)
    module, spec = load_classifier(model_dir)
    if (
        spec["dataset"] != model.dataset
        or spec["classes"] != meta["classes"]
        or list(spec["hparams"]["input_shape"]) != list(meta["input_shape"])
    ):
        raise PipelineError(
            f"{model_dir} was trained on '{spec['dataset']}' ({len(spec['classes'])} classes, "
            f"input {list(spec['hparams']['input_shape'])}); {prepared} holds "
            f"'{meta['dataset']}' ({len(meta['classes'])} classes, input {meta['input_shape']})"
        )
    client = connect(mlflow_uri, mlflow_cfg or MlflowConfig())
    try:
        client.get_run(run_id)
    except MlflowException:
        raise PipelineError(
            f"{train_metrics}: MLflow run {run_id} does not exist in {redact(mlflow_uri)}"
        ) from None
    *inputs, y = load_split(prepared, "test")
    logits, batches = _timed_logits(module, tuple(inputs), model.batch_size)
    y, pred = np.array(y), logits.argmax(dim=1).numpy()
    # Latency per sample at one stated batch size (the last, partial batch left out), so
    # models evaluated in other batch sizes compare.
    batch_size = min(model.batch_size, len(y))
    per_sample = [seconds / n for seconds, n in batches if n == batch_size]
    metrics = classification_metrics(y, pred, meta["classes"])
    per_class = {"classes": meta["classes"]} | {k: metrics.pop(k) for k in PER_CLASS_KEYS}
    metrics |= {
        "test_loss": float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))),
        "mlflow_run_id": run_id,
        "test_fingerprint": meta["test_fingerprint"],
        "inference_samples_per_second": round(len(y) / sum(s for s, _ in batches), 1),
        "latency_ms_per_sample": round(1000 * statistics.median(per_sample), 4),
        "inference_batch_size": batch_size,
        "baselines": baseline_metrics(prepared, meta["classes"]),
    }
    names = (
        f"{name}.json",
        f"{name}_per_class.json",
        f"{name}_confusion.csv",
        f"{name}_confusion.png",
    )
    mlflow.set_tracking_uri(mlflow_uri)
    # The training run is re-opened (RUNNING) and ends FINISHED, or FAILED on any exception,
    # including one while the outputs replace the old ones: those are renamed into place
    # together, last, so a failure leaves the previous evaluation whole.
    with (
        mlflow.start_run(run_id=run_id),
        atomic_outputs(*(out_dir / n for n in names)) as (json_tmp, per_class_tmp, table, picture),
    ):
        _write_plots(
            metrics, per_class["confusion_matrix"], y, pred, meta["classes"], table, picture
        )
        # Logged at the kept epoch, so the logged model also holds the kept weights' training
        # and validation figures (MLflow attaches the run's metrics at the model's step).
        example = raw_from_prepared(prepared, meta)[:2]
        info = log_pyfunc(name, model_dir, prepared / "meta.json", example, step=kept_epoch)
        metrics |= {"mlflow_model_uri": info.model_uri, "mlflow_model_id": info.model_id}
        _log_metrics(client, run_id, metrics, per_class["per_class"], kept_epoch)
        _log_picture(client, run_id, picture)
        json_tmp.write_text(json_text(metrics))
        per_class_tmp.write_text(json_text(per_class))
    return metrics


def _log_metrics(
    client: MlflowClient,
    run_id: str,
    metrics: dict[str, Any],
    per_class: dict[str, dict[str, float]],
    step: int,
) -> None:
    """The scalar metrics and the precision and recall of each class, which the logged model
    holds too, and the baselines', in one request."""
    own = {
        k: v
        for k, v in metrics.items()
        if k.startswith(("test_", "inference_", "latency")) and isinstance(v, float | int)
    }
    keys = metric_keys(list(per_class))
    own |= {
        f"test_{score}_{keys[c]}": v[score]
        for c, v in per_class.items()
        for score in ("precision", "recall")
    }
    baselines = {
        f"baseline_{baseline}_{k}": v
        for baseline, scores in metrics["baselines"].items()
        for k, v in scores.items()
    }
    now, model_id = int(time.time() * 1000), metrics["mlflow_model_id"]
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, step, model_id=model_id) for k, v in own.items()]
        + [Metric(k, float(v), now, step) for k, v in baselines.items()],
    )


def _log_picture(client: MlflowClient, run_id: str, picture: Path) -> None:
    """The confusion matrix as `confusion.png` (the DVC plot keeps its own name)."""
    with tempfile.TemporaryDirectory() as folder:
        logged = Path(folder) / CONFUSION_ARTIFACT
        shutil.copyfile(picture, logged)
        client.log_artifact(run_id, str(logged))


def metric_keys(classes: list[str]) -> dict[str, str]:
    """Class name → a form MLflow takes in a metric name, one per class.

    MLflow refuses characters other than alphanumerics, `_`, `-`, `.`, space, `/` (and `:`
    except on Windows servers); a `/` would also make a path of the name. Those become `_`, and
    a name that changed gets a digest of the real one, so `a,b` and `a;b` stay apart and a
    class keeps its key whatever the other classes are.
    """
    keys = {}
    for name in classes:
        safe = UNSAFE_IN_METRIC_NAMES.sub("_", name)
        keys[name] = safe if safe == name else f"{safe}-{_digest(name)}"
    return keys


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _training_run(train_metrics: Path) -> tuple[str, int]:
    """The MLflow run of the training and the epoch of the weights it kept."""
    if not train_metrics.is_file():
        raise PipelineError(f"{train_metrics}: missing; the model has no training run")
    training = json.loads(train_metrics.read_text())
    for key in ("mlflow_run_id", "kept_epoch"):
        if training.get(key) in (None, ""):
            raise PipelineError(f"{train_metrics}: no {key}; re-run its train stage")
    return training["mlflow_run_id"], training["kept_epoch"]


def _write_plots(
    metrics: dict,
    confusion: list[list[int]],
    y: np.ndarray,
    pred: np.ndarray,
    classes: list[str],
    table: Path,
    picture: Path,
) -> None:
    """The CSV that DVC plots as a confusion matrix, and a PNG of the same matrix. Both put
    the actual class on the y axis and the predicted one on the x axis (dvc.yaml: `x: predicted`,
    `y: actual`), as scikit-learn's ConfusionMatrixDisplay does."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with table.open("w", newline="") as f:  # quoted where a class name holds a comma or quote
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("actual", "predicted"))
        writer.writerows((classes[a], classes[p]) for a, p in zip(y, pred, strict=True))

    matrix = np.array(confusion)
    size = 2.0 + 0.5 * len(classes)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xticklabels=classes,
        yticklabels=classes,
        xlabel="predicted",
        ylabel="actual",
        title=f"{picture.stem.removesuffix('_confusion')}: accuracy "
        f"{metrics['test_accuracy']:.2%} on {metrics['n_test']}",
    )
    for (i, j), n in np.ndenumerate(matrix):
        if n:
            ax.text(
                j,
                i,
                str(n),
                ha="center",
                va="center",
                color="white" if n > matrix.max() / 2 else "black",
            )
    fig.tight_layout()
    fig.savefig(picture, dpi=100, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str]) -> None:
    name = item_name(argv, "evaluate", "model")
    params = load_params()
    model = params.model(name)
    paths = params.paths
    run(
        name,
        model,
        prepared=paths.prepared / model.dataset,
        model_dir=paths.models / name,
        train_metrics=paths.metrics / "train" / f"{name}.json",
        out_dir=paths.metrics / "eval",
        mlflow_uri=tracking_uri(params.mlflow.tracking_uri),
        mlflow_cfg=params.mlflow,
    )


if __name__ == "__main__":
    cli(main)
