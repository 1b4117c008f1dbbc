"""The evaluate stage: metrics against hand-computed values, plots, and the MLflow model."""

import csv
import errno
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import matplotlib.figure
import mlflow
import numpy as np
import pytest
import yaml

from stages import atomic, evaluate
from stages.errors import PipelineError
from stages.metrics import classification_metrics
from tests.conftest import REPO
from tests.test_train import PARAMS, raising, run_tiny, tiny_prepared


def test_metrics_match_a_hand_computed_confusion_matrix():
    classes = ["a", "b", "c"]
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 1, 0, 1, 1, 2, 0, 2, 1])
    m = classification_metrics(y, pred, classes)
    # rows actual, columns predicted
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 1, 2]]
    assert m["test_accuracy"] == pytest.approx(6 / 9)
    assert m["per_class"]["a"] == {"precision": 2 / 3, "recall": 2 / 3, "support": 3}
    assert m["per_class"]["b"] == {"precision": 2 / 4, "recall": 1.0, "support": 2}
    assert m["per_class"]["c"] == {"precision": 1.0, "recall": 2 / 4, "support": 4}
    f1 = [2 / 3, 2 * 0.5 * 1.0 / 1.5, 2 * 1.0 * 0.5 / 1.5]
    assert m["test_macro_f1"] == pytest.approx(sum(f1) / 3)
    assert m["n_test"] == 9


def evaluate_tiny(work, name):
    model = PARAMS.models[name].model_copy(update={"max_epochs": 3, "batch_size": 8})
    kind = model.kind
    return evaluate.run(
        name,
        model,
        prepared=work / "prepared" / kind,
        model_dir=work / "models" / name,
        train_metrics=work / "metrics" / f"{name}.json",
        out_dir=work / "eval",
        mlflow_uri=f"sqlite:///{work / 'mlflow.db'}",
    )


# Image class folders whose names MLflow refuses in a metric name; the last two differ only
# in characters it refuses.
ODD_CLASSES = ("a", "big, dog", 'say "hi"', "big; dog")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """cnn and gru trained and evaluated on tiny data, in one SQLite store."""
    work = tmp_path_factory.mktemp("evaluated")
    tiny_prepared(work, "image", ODD_CLASSES)
    results = {}
    for name in ("cnn", "gru"):
        run_tiny(work, name)
        results[name] = evaluate_tiny(work, name)
    return work, results


def per_class(work: Path, name: str) -> dict:
    return json.loads((work / "eval" / f"{name}_per_class.json").read_text())


def test_writes_metrics_and_plots(evaluated):
    work, results = evaluated
    for name, metrics in results.items():
        written = json.loads((work / "eval" / f"{name}.json").read_text())
        assert written == metrics
        for key in (
            "test_accuracy",
            "test_macro_f1",
            "test_loss",
            "n_test",
            "mlflow_run_id",
            "inference_samples_per_second",
            "latency_ms_per_sample",
            "mlflow_model_uri",
        ):
            assert key in metrics, key
        # Per sample, at a batch size the evaluation states (no larger than the test split).
        assert metrics["inference_batch_size"] == min(8, metrics["n_test"])
        assert "latency_ms_per_batch" not in metrics
        with (work / "eval" / f"{name}_confusion.csv").open(newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["actual", "predicted"] and len(rows) == 1 + metrics["n_test"]
        correct = sum(a == p for a, p in rows[1:])
        assert correct / metrics["n_test"] == pytest.approx(metrics["test_accuracy"])
        assert (work / "eval" / f"{name}_confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_metrics_file_holds_headline_figures_and_the_per_class_file_the_rest(evaluated):
    """`dvc metrics show` gets one column per headline figure, none per class."""
    work, results = evaluated
    for name, metrics in results.items():
        assert not set(metrics) & {"per_class", "confusion_matrix"}
        assert not any(isinstance(v, list) for v in metrics.values())
        detail = per_class(work, name)
        assert set(detail) == {"classes", "per_class", "confusion_matrix"}
        classes = detail["classes"]  # the order of the matrix's rows and columns
        assert set(detail["per_class"]) == set(classes)
        for scores in detail["per_class"].values():
            assert set(scores) == {"precision", "recall", "support"}
        # The matrix counts the CSV's (actual, predicted) pairs: rows actual, columns predicted.
        with (work / "eval" / f"{name}_confusion.csv").open(newline="") as f:
            pairs = Counter(tuple(row) for row in list(csv.reader(f))[1:])
        assert detail["confusion_matrix"] == [[pairs[a, p] for p in classes] for a in classes]
        assert [sum(row) for row in detail["confusion_matrix"]] == [
            detail["per_class"][c]["support"] for c in classes
        ]


def test_the_png_and_the_dvc_plot_put_actual_and_predicted_on_the_same_axes(monkeypatch, tmp_path):
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["evaluate"]["do"]
    (declared,) = (
        props for plot in stage["plots"] for path, props in plot.items() if "_confusion.csv" in path
    )
    drawn = []
    save = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(
        matplotlib.figure.Figure,
        "savefig",
        lambda fig, *args, **kw: (drawn.append(fig.axes[0]), save(fig, *args, **kw)),
    )
    classes = ["a", "b", "c"]
    y, pred = np.array([0, 0, 1, 2, 2, 2]), np.array([1, 0, 1, 0, 2, 2])
    confusion = classification_metrics(y, pred, classes)["confusion_matrix"]
    headline = {"test_accuracy": 4 / 6, "n_test": 6}
    evaluate._write_plots(
        headline, confusion, y, pred, classes, tmp_path / "m.csv", tmp_path / "m.png"
    )
    (ax,) = drawn
    assert (ax.get_xlabel(), ax.get_ylabel()) == (declared["x"], declared["y"])
    assert (declared["x"], declared["y"]) == ("predicted", "actual")
    # imshow draws row 0 at the top, as Vega-Lite's ascending y axis does: rows are actual.
    assert ax.images[0].get_array().tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert [t.get_text() for t in ax.get_xticklabels()] == classes
    assert ax.yaxis_inverted()


def test_logs_to_the_training_run(evaluated):
    work, results = evaluated
    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    run = client.get_run(results["cnn"]["mlflow_run_id"])
    assert run.data.metrics["test_accuracy"] == pytest.approx(results["cnn"]["test_accuracy"])
    assert "test_loss" in run.data.metrics and "test_macro_f1" in run.data.metrics
    assert run.data.metrics["latency_ms_per_sample"] == results["cnn"]["latency_ms_per_sample"]
    experiment = client.get_experiment(run.info.experiment_id)
    assert len(client.search_runs([experiment.experiment_id])) == 1  # no second run
    logged = client.get_logged_model(results["cnn"]["mlflow_model_id"])
    assert logged.source_run_id == run.info.run_id


def test_every_run_logs_the_confusion_matrix_under_one_name(evaluated, tmp_path):
    """MLflow's compare view shows artifacts of the same name side by side (top level only)."""
    work, results = evaluated
    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    for name, metrics in results.items():
        files = [a.path for a in client.list_artifacts(metrics["mlflow_run_id"]) if not a.is_dir]
        assert files == ["confusion.png"], name
        artifacts = files
        logged = client.download_artifacts(metrics["mlflow_run_id"], artifacts[0], str(tmp_path))
        assert Path(logged).read_bytes() == (work / "eval" / f"{name}_confusion.png").read_bytes()


def test_the_logged_model_is_named_after_the_model_and_holds_its_metrics(evaluated):
    work, results = evaluated
    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    for name, metrics in results.items():
        logged = client.get_logged_model(metrics["mlflow_model_id"])
        assert logged.name == name
        held = {m.key: m for m in logged.metrics}
        expected = {k: metrics[k] for k in ("test_accuracy", "test_macro_f1", "test_loss")}
        expected["test_precision_a"] = per_class(work, name)["per_class"]["a"]["precision"]
        for key, value in expected.items():
            assert held[key].value == pytest.approx(value), key
        assert not any(key.startswith("baseline_") for key in held)  # the baselines' own
        # Logged at the kept epoch: the kept weights' validation figures too.
        training = json.loads((work / "metrics" / f"{name}.json").read_text())
        assert held["val_acc"].step == training["kept_epoch"]
        assert held["val_acc"].value == training["best_val_accuracy"]


def test_class_names_mlflow_refuses_become_distinct_metric_names(evaluated):
    work, results = evaluated
    scores = per_class(work, "cnn")["per_class"]
    assert list(scores) == sorted(ODD_CLASSES)  # the JSON keeps them
    run = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}").get_run(
        results["cnn"]["mlflow_run_id"]
    )
    for score in ("precision", "recall"):
        logged = {k: v for k, v in run.data.metrics.items() if k.startswith(f"test_{score}_")}
        assert len(logged) == len(ODD_CLASSES), score
        assert logged[f"test_{score}_a"] == scores["a"][score]
    keys = evaluate.metric_keys(list(ODD_CLASSES))
    assert keys == evaluate.metric_keys(list(reversed(ODD_CLASSES)))  # not order-dependent
    assert keys["big, dog"].startswith("big_ dog-") and keys["a"] == "a"


@pytest.mark.parametrize("fault", ["mlflow", "rename"])
def test_failed_evaluation_keeps_old_outputs_and_ends_its_run_failed(
    evaluated, tmp_path, monkeypatch, fault
):
    """A failure while logging, or while the new outputs replace the old ones."""
    work = tmp_path / "work"
    shutil.copytree(evaluated[0], work)
    out = work / "eval"
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    run_id = evaluated[1]["cnn"]["mlflow_run_id"]
    assert client.get_run(run_id).info.status == "FINISHED"  # as training left it
    if fault == "mlflow":
        monkeypatch.setattr(mlflow.MlflowClient, "log_artifact", raising(RuntimeError("injected")))
        raised = RuntimeError
    else:
        full_disk = SimpleNamespace(replace=raising(OSError(errno.ENOSPC, "No space")))
        monkeypatch.setattr(atomic, "os", full_disk)  # the renames at the end, and only them
        raised = PipelineError
    with pytest.raises(raised, match="injected|cnn.json, .*cnn_confusion.csv, .*: not written"):
        evaluate_tiny(work, "cnn")
    assert client.get_run(run_id).info.status == "FAILED"
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before  # and no temporaries

    monkeypatch.undo()
    again = evaluate_tiny(work, "cnn")
    assert client.get_run(run_id).info.status == "FINISHED"
    assert json.loads((out / "cnn.json").read_text()) == again


def test_model_of_another_dataset_is_refused(evaluated, tmp_path):
    work, _ = evaluated
    cnn = PARAMS.models["cnn"]
    with pytest.raises(PipelineError, match="was trained on 'digits'.*holds 'sequence'"):
        evaluate.run(
            "cnn",
            cnn,
            work / "prepared" / "sequence",
            work / "models" / "cnn",
            work / "metrics" / "cnn.json",
            tmp_path,
            f"sqlite:///{work / 'mlflow.db'}",
        )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("training", "missing"),
    [({"best_val_accuracy": 1.0}, "mlflow_run_id"), ({"mlflow_run_id": "0" * 32}, "kept_epoch")],
)
def test_metrics_file_without_run_id_or_kept_epoch(evaluated, tmp_path, training, missing):
    work, _ = evaluated
    bad = tmp_path / "cnn.json"
    bad.write_text(json.dumps(training))
    with pytest.raises(PipelineError, match=f"cnn.json: no {missing}; re-run its train stage"):
        evaluate.run(
            "cnn",
            PARAMS.models["cnn"],
            work / "prepared" / "image",
            work / "models" / "cnn",
            bad,
            tmp_path / "out",
            "sqlite:///unused.db",
        )


def test_missing_training_run(evaluated, tmp_path):
    work, _ = evaluated
    shutil.copy(work / "mlflow.db", tmp_path / "other.db")
    metrics = json.loads((work / "metrics" / "cnn.json").read_text())
    metrics["mlflow_run_id"] = "0" * 32
    (tmp_path / "cnn.json").write_text(json.dumps(metrics))
    with pytest.raises(PipelineError, match=f"MLflow run {'0' * 32} does not exist"):
        evaluate.run(
            "cnn",
            PARAMS.models["cnn"],
            work / "prepared" / "image",
            work / "models" / "cnn",
            tmp_path / "cnn.json",
            tmp_path / "out",
            f"sqlite:///{tmp_path / 'other.db'}",
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("module", ["stages.evaluate", "stages.pyfunc_model"])
def test_evaluating_and_serving_import_no_lightning(module):
    """A trained model loads as its network alone (lightning_modules/export.py): Lightning and
    torchmetrics cost seconds in every evaluate process and served model's start-up."""
    heavy = "{'lightning', 'torchmetrics'}"
    code = f"import sys, {module}; print(sorted({heavy} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
