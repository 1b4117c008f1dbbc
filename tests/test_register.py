"""The register stage against a real SQLite registry: versions, aliases, re-measurement."""

import json
import shutil
import subprocess
import sys

import mlflow
import numpy as np
import pytest

from stages import register
from stages.config import RegisterConfig
from stages.errors import PipelineError
from tests.test_evaluate import evaluate_tiny
from tests.test_train import run_tiny, tiny_prepared


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Two trainings of gru (different learning rates) evaluated on one tiny sequence set."""
    work = tmp_path_factory.mktemp("registry")
    evals = {}
    for i, lr in enumerate((0.005, 0.02)):
        run_tiny(work, "gru", lr=lr)
        evals[i] = evaluate_tiny(work, "gru")
        shutil.copy(work / "eval" / "gru.json", work / f"eval_{i}.json")
    return work, evals


@pytest.fixture
def store(project, tmp_path):
    """A private copy of the project's store and eval files, so tests do not see each other."""
    work, evals = project
    shutil.copy(work / "mlflow.db", tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    for i in evals:
        shutil.copy(work / f"eval_{i}.json", tmp_path / f"eval_{i}.json")
    return work, tmp_path, mlflow.MlflowClient(uri)


def _set(path, **values):
    data = json.loads(path.read_text()) | values
    path.write_text(json.dumps(data))


def _register(store, files, min_delta=0.002, beat_baselines=False):
    """Register the eval files; the baseline gate is off unless asked, since these tests set
    the models' test figures by hand and are about the champion/challenger rules."""
    work, tmp, client = store
    candidates = {"seq": [(f"gru{i}", tmp / f) for i, f in enumerate(files)]}
    return register.run(
        candidates,
        {"seq": work / "prepared" / "sequence"},
        RegisterConfig(min_delta=min_delta, beat_baselines=beat_baselines),
        client,
        tmp / "registry.json",
    )


def test_first_version_becomes_champion_and_registering_twice_adds_nothing(store):
    _, tmp, client = store
    report = _register(store, ["eval_0.json"])["seq"]
    assert report["registered_model"] == "seq-classifier"
    assert report["champion_version"] == "1"
    first = {
        "version": "1",
        "model": "gru0",
        "action": "promoted",
        "reason": "no champion yet",
        "decided_now": True,
    }
    assert report["decisions"] == [first]
    again = _register(store, ["eval_0.json"])["seq"]
    assert again["decisions"] == [first | {"decided_now": False}]  # the last decision stays
    versions = client.search_model_versions("name='seq-classifier'")
    assert len(versions) == 1
    tags = versions[0].tags
    assert tags["model"] == "gru0" and tags["git_commit"] == "abc123"
    assert tags["data_hash"] == "d41d8cd9.dir" and float(tags["test_accuracy"]) >= 0
    assert (tags["decision"], tags["decision_reason"]) == ("promoted", "no champion yet")
    assert versions[0].description == "promoted: no champion yet"
    assert json.loads((tmp / "registry.json").read_text())["seq"]["champion_version"] == "1"


def test_each_version_is_linked_to_its_logged_model(store):
    """The version's source is the logged model (the UI's version page links it), and the
    logged model lists the version (the UI's logged-model page then says Registered)."""
    _, tmp, client = store
    _register(store, ["eval_0.json", "eval_1.json"])
    for number, name in ((1, "eval_0.json"), (2, "eval_1.json")):
        model_id = json.loads((tmp / name).read_text())["mlflow_model_id"]
        assert client.get_model_version("seq-classifier", str(number)).source == (
            f"models:/{model_id}"
        )
        listed = client.get_logged_model(model_id).tags["mlflow.modelVersions"]
        assert json.loads(listed) == [{"name": "seq-classifier", "version": number}]
    # A link lost (the registration was interrupted before it) is made by the next run, once.
    model_id = json.loads((tmp / "eval_0.json").read_text())["mlflow_model_id"]
    client.delete_logged_model_tag(model_id, "mlflow.modelVersions")
    _register(store, ["eval_0.json", "eval_1.json"])
    _register(store, ["eval_0.json", "eval_1.json"])
    listed = client.get_logged_model(model_id).tags["mlflow.modelVersions"]
    assert json.loads(listed) == [{"name": "seq-classifier", "version": 1}]


def test_a_version_left_undecided_by_a_crash_is_decided_by_the_next_run(store, monkeypatch):
    _, tmp, client = store
    _set(tmp / "eval_0.json", test_accuracy=0.80)
    _set(tmp / "eval_1.json", test_accuracy=0.90)
    _register(store, ["eval_0.json"])

    def die(*args):
        raise KeyboardInterrupt("killed between create_model_version and the aliases")

    monkeypatch.setattr(client, "set_registered_model_alias", die)
    with pytest.raises(KeyboardInterrupt):
        _register(store, ["eval_0.json", "eval_1.json"])
    monkeypatch.undo()
    assert "decision" not in client.get_model_version("seq-classifier", "2").tags

    report = _register(store, ["eval_0.json", "eval_1.json"])["seq"]
    assert report["champion_version"] == "2"
    assert [(d["version"], d["action"], d["decided_now"]) for d in report["decisions"]] == [
        ("1", "promoted", False),
        ("2", "promoted", True),
    ]
    assert str(client.get_model_version_by_alias("seq-classifier", "challenger").version) == "2"
    again = _register(store, ["eval_0.json", "eval_1.json"])["seq"]
    assert [d["decided_now"] for d in again["decisions"]] == [False, False]
    assert [d["reason"] for d in again["decisions"]] == [d["reason"] for d in report["decisions"]]


def test_a_champion_moved_before_its_decision_was_recorded_stays(store, monkeypatch):
    _, tmp, client = store
    real = client.set_model_version_tag

    def die_on_decision(name, version, key, value):
        if key == "decision":
            raise KeyboardInterrupt("killed after the aliases moved")
        real(name, version, key, value)

    monkeypatch.setattr(client, "set_model_version_tag", die_on_decision)
    with pytest.raises(KeyboardInterrupt):
        _register(store, ["eval_0.json"])
    monkeypatch.undo()
    report = _register(store, ["eval_0.json"])["seq"]
    assert report["champion_version"] == "1"
    assert report["decisions"][0]["action"] == "promoted"
    assert report["decisions"][0]["decided_now"]


def test_better_challenger_is_promoted(store):
    _, tmp, client = store
    _set(tmp / "eval_0.json", test_accuracy=0.80)
    _set(tmp / "eval_1.json", test_accuracy=0.90)
    report = _register(store, ["eval_0.json", "eval_1.json"], min_delta=0.05)["seq"]
    assert report["champion_version"] == "2"
    assert report["decisions"][1]["action"] == "promoted"
    assert str(client.get_model_version_by_alias("seq-classifier", "challenger").version) == "2"


def test_challenger_below_min_delta_is_not_promoted(store):
    _, tmp, client = store
    _set(tmp / "eval_0.json", test_accuracy=0.80)
    _set(tmp / "eval_1.json", test_accuracy=0.82)
    report = _register(store, ["eval_0.json", "eval_1.json"], min_delta=0.05)["seq"]
    assert report["champion_version"] == "1"
    assert report["decisions"][1]["action"] == "kept_champion"
    assert "does not beat champion v1's 0.8000 by 0.05" in report["decisions"][1]["reason"]
    description = client.get_model_version("seq-classifier", "2").description
    assert description == f"kept_champion: {report['decisions'][1]['reason']}"
    assert str(client.get_model_version_by_alias("seq-classifier", "challenger").version) == "2"


def test_champion_is_remeasured_when_the_test_set_changed(store):
    work, tmp, client = store
    _set(tmp / "eval_0.json", test_accuracy=0.0)  # as if measured on a test set it failed
    _register(store, ["eval_0.json"])
    client.set_model_version_tag("seq-classifier", "1", "test_fingerprint", "an older test set")
    _set(tmp / "eval_1.json", test_accuracy=0.0)
    report = _register(store, ["eval_0.json", "eval_1.json"])["seq"]
    decision = report["decisions"][1]
    assert decision["version"] == "2"
    assert "champion re-measured on the current test set" in decision["reason"]
    # Re-measured through the champion's pyfunc on the current raw test inputs:
    measured = float(client.get_model_version("seq-classifier", "1").tags["test_accuracy"])
    assert measured == pytest.approx(
        json.loads((work / "eval_0.json").read_text())["test_accuracy"]
    )
    assert decision["action"] == "kept_champion"


def test_eval_without_run_id_is_an_error(store):
    _, tmp, _ = store
    _set(tmp / "eval_0.json", mlflow_run_id="")
    with pytest.raises(PipelineError, match="eval_0.json: no mlflow_run_id"):
        _register(store, ["eval_0.json"])
    assert not (tmp / "registry.json").exists()


def test_champion_pyfunc_predicts_raw_sequences(store):
    work, _, _ = store
    _register(store, ["eval_0.json"])
    model = mlflow.pyfunc.load_model("models:/seq-classifier@champion")
    prepared = work / "prepared" / "sequence"
    test_ts = next((work / "raw_seqs").glob("*_TEST.ts"))
    from stages.tsfile import read_ts

    data = read_ts(test_ts)
    longest = max(len(s) for s in data.series)
    raw = np.full((len(data.series), longest + 3, data.series[0].shape[1]), np.nan)
    for i, s in enumerate(data.series):
        raw[i, : len(s)] = s
    frame = model.predict(raw)
    classes = json.loads((prepared / "meta.json").read_text())["classes"]
    assert list(frame.columns) == ["label"] + [f"prob_{c}" for c in classes]
    assert np.allclose(frame[[f"prob_{c}" for c in classes]].sum(axis=1), 1.0)
    accuracy = (frame["label"].to_numpy() == np.array(data.labels)).mean()
    assert accuracy == pytest.approx(
        json.loads((work / "eval_0.json").read_text())["test_accuracy"]
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((2, 5, 3)), r"sequences must have shape \(N, T, 2\)"),
        ([["a", "b"]], "input must be numeric"),
        (np.array([[[1.0, np.nan], [1.0, 2.0]]]), "series \\[0\\] have NaN or infinite"),
    ],
)
def test_bad_input_to_the_model_is_a_clear_error(store, bad, message):
    work, _, _ = store
    _register(store, ["eval_0.json"])
    model = mlflow.pyfunc.load_model("models:/seq-classifier@champion")
    with pytest.raises(mlflow.exceptions.MlflowException, match=message):
        model.unwrap_python_model().predict(None, bad)


def test_champion_loads_in_a_fresh_process_and_predicts_raw_images(tmp_path):
    """The digits-like path end to end: raw PNG files in, the accuracy evaluation reported."""
    run_tiny(tmp_path, "cnn")
    evaluation = evaluate_tiny(tmp_path, "cnn")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    register.run(
        {"img": [("cnn", tmp_path / "eval" / "cnn.json")]},
        {"img": tmp_path / "prepared" / "image"},
        RegisterConfig(beat_baselines=False),  # about loading the champion, not the gate
        client,
        tmp_path / "registry.json",
    )
    script = f"""
import numpy as np, mlflow
from pathlib import Path
from PIL import Image
files = (Path({str(tmp_path / "prepared/image")!r}) / "files_test.txt").read_text().split()
raw_root = Path({str(tmp_path / "raw_images")!r})
pixels = np.stack([np.asarray(Image.open(raw_root / f)) for f in files]).astype(float)
model = mlflow.pyfunc.load_model("models:/img-classifier@champion")
labels = model.predict(pixels)["label"].to_numpy()
print((labels == np.array([f.split("/")[0] for f in files])).mean())
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
        },
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.split()[-1]) == pytest.approx(evaluation["test_accuracy"])


def test_a_model_below_the_best_baseline_is_never_promoted(store):
    _, tmp, client = store
    baselines = json.loads((tmp / "eval_0.json").read_text())["baselines"]
    best = max(b["test_accuracy"] for b in baselines.values())
    _set(tmp / "eval_0.json", test_accuracy=best - 0.01)
    report = _register(store, ["eval_0.json"], beat_baselines=True)["seq"]
    assert report["champion_version"] is None
    decision = report["decisions"][0]
    assert decision["action"] == "rejected"
    assert f"does not beat the best baseline, 1nn_euclidean's {best:.4f}" in decision["reason"]
    _set(tmp / "eval_1.json", test_accuracy=best + 0.01)
    report = _register(store, ["eval_0.json", "eval_1.json"], beat_baselines=True)["seq"]
    assert report["champion_version"] == "2"
    assert [d["action"] for d in report["decisions"]] == ["rejected", "promoted"]


def test_a_model_trained_on_shuffled_labels_is_rejected(tmp_path):
    """One epoch on shuffled training labels: no better than chance, so below 1-NN."""
    prepared = tiny_prepared(tmp_path, "sequence")
    labels = np.load(prepared / "y_train.npy")
    np.save(prepared / "y_train.npy", np.random.default_rng(0).permutation(labels))
    run_tiny(tmp_path, "gru", max_epochs=1)
    np.save(prepared / "y_train.npy", labels)  # the baselines see the true labels
    evaluation = evaluate_tiny(tmp_path, "gru")
    assert evaluation["baselines"]["1nn_euclidean"]["test_accuracy"] > 0.8
    report = register.run(
        {"seq": [("gru", tmp_path / "eval" / "gru.json")]},
        {"seq": prepared},
        RegisterConfig(),  # the defaults: the gate is on
        mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"),
        tmp_path / "registry.json",
    )["seq"]
    assert report["decisions"][0]["action"] == "rejected"
    assert report["champion_version"] is None


@pytest.mark.parametrize("module", ["stages.register", "stages.baselines"])
def test_starts_without_torch_or_lightning(module):
    """They read the prepared arrays with NumPy (lightning_modules/prepared.py): Lightning and
    torch would add seconds to every flow run that registers."""
    code = f"import sys, {module}; print(sorted({{'lightning', 'torch'}} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
