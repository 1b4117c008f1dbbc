"""The train stage on tiny prepared data, against a temporary SQLite MLflow store."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
import pytest
import torch

import lightning_modules.data as data_module
from lightning_modules.data import PreparedDataModule
from lightning_modules.export import load_classifier, weights_sha256
from stages import prepare, training
from stages.config import load_params, parse_params
from stages.errors import PipelineError
from stages.links import MAKE_UI
from tests.conftest import REPO, tiny_cases, write_image_folder, write_ts_pair

PARAMS = load_params(REPO / "params.yaml")


def tiny_prepared(work: Path, kind: str, classes: tuple[str, ...] = ("a", "b", "c")) -> Path:
    """Prepared data made by the real prepare stage from tiny raw files (`classes`: the image
    class folders)."""
    out = work / "prepared" / kind
    if (out / "meta.json").is_file():
        return out
    if kind == "image":
        raw = write_image_folder(work / "raw_images", dict.fromkeys(classes, 12))
        ds = {
            "source": "folder",
            "path": str(raw),
            "image": {"size": [8, 8]},
            "split": {"val": 0.25, "test": 0.25, "seed": 0},
        }
    else:
        raw = write_ts_pair(work / "raw_seqs", tiny_cases(16), tiny_cases(4, seed=1))
        ds = {"source": "ts", "path": str(raw), "split": {"val": 0.25, "seed": 0}}
    prepare.run(kind, parse_params({"datasets": {kind: ds}}).datasets[kind], out)
    return out


def shrunk(name: str, **changes):
    """The real model config, shrunk to a couple of small epochs."""
    model = PARAMS.models[name]
    return model.model_copy(update={"max_epochs": 3, "batch_size": 8, "min_steps": 0} | changes)


def run_tiny(work: Path, name: str, callbacks=(), trainer_changes=None, **changes) -> dict:
    model = shrunk(name, **changes)
    prepared = tiny_prepared(work, model.kind)
    return training.run(
        name,
        model,
        PARAMS.trainer.model_copy(
            update={"accelerator": "cpu", "devices": 1} | (trainer_changes or {})
        ),
        prepared=prepared,
        out=work / "models" / name,
        metrics_file=work / "metrics" / f"{name}.json",
        checkpoints=work / "checkpoints" / name,
        mlflow_uri=f"sqlite:///{work / 'mlflow.db'}",
        tags={"git_commit": "abc123", "data_dvc_md5": "d41d8cd9.dir"},
        callbacks=callbacks,
    )


@pytest.mark.parametrize("name", sorted(PARAMS.models))
def test_fast_dev_run_every_configured_model(tmp_path, name):
    model = PARAMS.models[name]
    data = PreparedDataModule(tiny_prepared(tmp_path, model.kind), batch_size=4)
    system = training.build_classifier(model, data.meta)
    trainer = L.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(system, datamodule=data)
    assert trainer.state.finished


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_stage_writes_model_and_metrics(tmp_path, name):
    metrics = run_tiny(tmp_path, name)
    written = json.loads((tmp_path / "metrics" / f"{name}.json").read_text())
    assert written == metrics
    for key in (
        "mlflow_run_id",
        "best_val_accuracy",
        "epochs",
        "train_seconds",
        "samples_per_second",
        "device",
        "weights_sha256",
    ):
        assert key in metrics
    assert metrics["device"] == "cpu" and metrics["epochs"] == 3
    assert 0.0 <= metrics["best_val_accuracy"] <= 1.0
    module, spec = load_classifier(tmp_path / "models" / name)
    assert weights_sha256(module) == metrics["weights_sha256"] == spec["weights_sha256"]
    assert not (tmp_path / "checkpoints" / name).exists()  # finished: nothing to resume
    # A SQLite store keeps its artifacts beside the database, wherever the stage runs from.
    experiment = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name(
        PARAMS.models[name].dataset
    )
    assert experiment.artifact_location == str(tmp_path / "mlruns")


def test_same_seed_same_weights(tmp_path):
    first = run_tiny(tmp_path / "a", "cnn")
    second = run_tiny(tmp_path / "b", "cnn")
    assert first["weights_sha256"] == second["weights_sha256"]
    for name in ("model.pt", "model.json"):  # byte for byte, so dvc.lock agrees across clones
        a = (tmp_path / "a" / "models" / "cnn" / name).read_bytes()
        assert a == (tmp_path / "b" / "models" / "cnn" / name).read_bytes()
    other = run_tiny(tmp_path / "c", "cnn", lr=0.01)
    assert other["weights_sha256"] != first["weights_sha256"]


@pytest.fixture(scope="module")
def tracked_lstm(tmp_path_factory):
    """lstm trained on tiny sequences: its metrics and the client of its store."""
    work = tmp_path_factory.mktemp("tracked")
    metrics = run_tiny(work, "lstm")
    return metrics, mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}"), work


def test_mlflow_run_holds_params_metrics_and_tags(tracked_lstm):
    metrics, client, _ = tracked_lstm
    experiment = client.get_experiment_by_name(PARAMS.models["lstm"].dataset)
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [metrics["mlflow_run_id"]]  # exactly one run
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["model.arch"] == "lstm"
    assert run.data.params["model.rnn.hidden_size"] == str(PARAMS.models["lstm"].rnn.hidden_size)
    assert run.data.params["trainer.seed"] == str(PARAMS.trainer.seed)
    # Per epoch, with the epoch as the step, whatever the batch size.
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "val_f1"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [0, 1, 2], key
    assert run.data.tags["model"] == "lstm"
    assert run.data.tags["dataset"] == PARAMS.models["lstm"].dataset
    assert run.data.tags["git_commit"] == "abc123"
    assert run.data.tags["data_dvc_md5"] == "d41d8cd9.dir"
    assert run.data.tags["device"] == "cpu"


def test_params_are_what_the_run_used(tracked_lstm):
    metrics, client, _ = tracked_lstm
    params = client.get_run(metrics["mlflow_run_id"]).data.params
    assert "None" not in params.values()
    assert "model.cnn" not in params and "trainer.precision" in params  # unset: left out
    # The Trainer's choices, not `auto` (run_tiny sets accelerator cpu, devices 1).
    assert params["trainer.accelerator"] == "cpu"
    assert params["trainer.devices"] == "1" and params["trainer.world_size"] == "1"
    assert params["trainer.precision"] == metrics["precision"] == "32-true"
    assert params["trainer.strategy"] == "SingleDeviceStrategy"


def test_run_records_its_training_data_and_the_experiment_is_described(tracked_lstm):
    metrics, client, work = tracked_lstm
    run = client.get_run(metrics["mlflow_run_id"])
    [training] = run.inputs.dataset_inputs
    assert {t.key: t.value for t in training.tags} == {"mlflow.data.context": "training"}
    dataset = training.dataset
    assert (dataset.name, dataset.digest) == (PARAMS.models["lstm"].dataset, "d41d8cd9.dir")
    meta = json.loads((work / "prepared" / "sequence" / "meta.json").read_text())
    sizes = {split: meta["counts"][split]["total"] for split in ("train", "val", "test")}
    assert json.loads(dataset.profile) == sizes | {"classes": 2}
    assert mlflow.data.get_source(training).uri == str(work / "prepared" / "sequence")

    experiment = client.get_experiment(run.info.experiment_id)
    note = experiment.tags["mlflow.note.content"]
    assert f"**{PARAMS.models['lstm'].dataset}**: sequences from `ts`" in note
    assert "2 classes: `a`, `b`." in note
    assert f"train {sizes['train']}, val {sizes['val']}, test {sizes['test']}" in note


def test_kept_epoch_is_the_step_of_the_figures_reported(tracked_lstm):
    metrics, client, _ = tracked_lstm
    kept = metrics["kept_epoch"]
    history = client.get_metric_history(metrics["mlflow_run_id"], "val_acc")
    assert {m.step: m.value for m in history}[kept] == metrics["best_val_accuracy"]
    [best] = client.get_metric_history(metrics["mlflow_run_id"], "best_val_accuracy")
    assert (best.step, best.value) == (kept, metrics["best_val_accuracy"])


def test_logged_accuracy_is_the_kept_models_on_the_validation_split(tracked_lstm):
    """The epoch's accuracy is counted on the device, batch by batch: the kept weights, loaded
    as evaluate loads them, score exactly that on the validation split."""
    metrics, _, work = tracked_lstm
    module, _ = load_classifier(work / "models" / "lstm")
    data = PreparedDataModule(work / "prepared" / "sequence", batch_size=3)
    hits = seen = 0
    with torch.no_grad():
        for x, lengths, y in data.loader("val", shuffle=False):
            hits += int((module(x, lengths).argmax(dim=1) == y).sum())
            seen += len(y)
    assert seen == data.meta["counts"]["val"]["total"] > 1
    assert metrics["best_val_accuracy"] == pytest.approx(hits / seen)


def _val_history(work: Path, run_id: str, metric: str) -> list[float]:
    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    return [
        m.value for m in sorted(client.get_metric_history(run_id, metric), key=lambda m: m.step)
    ]


@pytest.mark.parametrize(
    ("n_val", "threshold", "expected"),
    [
        (8, 100, "last_epoch"),
        (99, 100, "last_epoch"),
        (100, 100, "best_val_loss"),
        (6, 0, "best_val_loss"),
    ],
)
def test_selection_rule_on_the_validation_size(n_val, threshold, expected):
    trainer_cfg = PARAMS.trainer.model_copy(update={"min_val_for_selection": threshold})
    assert training._selection(n_val, trainer_cfg) == expected


@pytest.mark.parametrize(
    ("n_train", "batch_size", "max_epochs", "min_steps", "epochs"),
    [
        (42, 64, 60, 300, 300),  # GunPoint: one batch an epoch
        (170, 64, 60, 300, 100),  # OSULeaf: three
        (229, 32, 60, 300, 60),  # JapaneseVowels' gru: 8 × 60 steps already
        (42, 64, 60, 0, 60),
    ],
)
def test_epochs_sized_by_the_data(n_train, batch_size, max_epochs, min_steps, epochs):
    model = PARAMS.models["lstm"].model_copy(
        update={"batch_size": batch_size, "max_epochs": max_epochs, "min_steps": min_steps}
    )
    assert training.epochs_for(model, n_train) == epochs


def test_tiny_validation_trains_the_whole_schedule_and_keeps_the_last_weights(tmp_path):
    """8 validation series (< trainer.min_val_for_selection): no early stopping, the last
    weights, and the validation figures reported are the last epoch's."""
    # 24 training series in batches of 8: 3 steps an epoch, so 12 steps need 4 epochs.
    metrics = run_tiny(tmp_path, "lstm", min_steps=12, trainer_changes={"patience": 1})
    assert metrics["selection"] == "last_epoch" and metrics["epochs"] == 4
    run_id = metrics["mlflow_run_id"]
    assert metrics["best_val_accuracy"] == _val_history(tmp_path, run_id, "val_acc")[-1]
    assert metrics["best_val_loss"] == pytest.approx(_val_history(tmp_path, run_id, "val_loss")[-1])
    module, _ = load_classifier(tmp_path / "models" / "lstm")
    assert weights_sha256(module) == metrics["weights_sha256"]


def test_large_enough_validation_keeps_the_best_epoch(tmp_path):
    metrics = run_tiny(tmp_path, "lstm", trainer_changes={"min_val_for_selection": 0})
    assert metrics["selection"] == "best_val_loss"
    losses = _val_history(tmp_path, metrics["mlflow_run_id"], "val_loss")
    assert metrics["best_val_loss"] == pytest.approx(min(losses))


def kill_training(work: Path, epoch: int, streamed: bool = False) -> None:
    """Train gru in a child process that SIGKILLs itself in the middle of `epoch`."""
    tiny_prepared(work, "sequence")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = str(REPO / "tests" / "interrupted_training.py")
    args = [sys.executable, script, str(work), str(epoch)] + (["streamed"] if streamed else [])
    killed = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (work / "checkpoints" / "gru" / "weights" / "last.ckpt").is_file()
    assert not (work / "models" / "gru").exists()


def test_killed_training_resumes_from_last_checkpoint(tmp_path):
    kill_training(tmp_path, 2)
    run_id = json.loads((tmp_path / "checkpoints" / "gru" / "run.json").read_text())[
        "mlflow_run_id"
    ]

    resumed = run_tiny(tmp_path, "gru")
    assert resumed["resumed_at_epoch"] == 2  # epochs 0 and 1 were done, 2 was cut short
    assert resumed["epochs"] == 3
    assert resumed["mlflow_run_id"] == run_id  # the same run continues
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert sorted(m.step for m in client.get_metric_history(run_id, "val_loss")) == [0, 1, 2]

    fresh = run_tiny(tmp_path, "gru")  # finished: the next run starts over
    assert fresh["resumed_at_epoch"] is None
    assert fresh["mlflow_run_id"] != run_id


@pytest.mark.slow
@pytest.mark.parametrize("streamed", [False, True], ids=["device_batches", "dataloader"])
def test_resumed_training_gives_the_uninterrupted_weights(tmp_path, monkeypatch, streamed):
    """Killed in epoch 1 and resumed from the end of epoch 0: the same shuffles and dropout
    masks as one uninterrupted training, so the same weights."""
    if streamed:
        monkeypatch.setattr(data_module, "DEVICE_MEMORY_SHARE", 0.0)
    whole = run_tiny(tmp_path / "whole", "gru")
    kill_training(tmp_path / "killed", 1, streamed)
    resumed = run_tiny(tmp_path / "killed", "gru")
    assert resumed["resumed_at_epoch"] == 1
    assert resumed["weights_sha256"] == whole["weights_sha256"]


def test_checkpoint_of_other_params_is_not_resumed(tmp_path):
    folder = tmp_path / "checkpoints" / "gru"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"fingerprint": "other", "mlflow_run_id": "x"}))
    (folder / "weights").mkdir()
    (folder / "weights" / "last.ckpt").write_bytes(b"stale")
    assert run_tiny(tmp_path, "gru")["resumed_at_epoch"] is None


def test_nan_loss_stops_with_the_epoch_and_writes_nothing(tmp_path):
    prepared = tiny_prepared(tmp_path, "image")
    x = np.load(prepared / "x_train.npy")
    x[0, 0, 0, 0] = np.nan
    np.save(prepared / "x_train.npy", x)
    with pytest.raises(PipelineError, match="train@cnn: training loss is nan at epoch 0"):
        run_tiny(tmp_path, "cnn")
    assert not (tmp_path / "models" / "cnn").exists()
    assert not (tmp_path / "metrics" / "cnn.json").exists()


def raising(exc: BaseException):
    """A stand-in for any function or method that raises `exc`: an injected fault."""

    def fail(*args, **kwargs):
        raise exc

    return fail


@pytest.mark.parametrize("fault", ["before_fit", "after_fit"])
def test_failed_training_keeps_old_outputs_and_ends_its_run_failed(tmp_path, monkeypatch, fault):
    """Failures outside Lightning's fit (which ends the run FAILED by itself): setting up the
    Trainer, or a full disk while the model is written."""
    old_model, old_metrics = (
        tmp_path / "models" / "cnn" / "model.pt",
        tmp_path / "metrics" / "cnn.json",
    )
    for old in (old_model, old_metrics):
        old.parent.mkdir(parents=True)
        old.write_text("old")
    if fault == "before_fit":
        monkeypatch.setattr(training, "ModelCheckpoint", raising(RuntimeError("injected")))
        expected = pytest.raises(RuntimeError, match="injected")
    else:
        full_disk = OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(training, "save_classifier", raising(full_disk))
        expected = pytest.raises(
            PipelineError, match=r"models/cnn, .*cnn.json: not written: .*space"
        )
    with expected:
        run_tiny(tmp_path, "cnn")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(PARAMS.models["cnn"].dataset)
    assert [r.info.status for r in client.search_runs([experiment.experiment_id])] == ["FAILED"]
    assert old_model.read_text() == old_metrics.read_text() == "old"
    for old, name in ((old_model.parent, "cnn"), (old_metrics, "cnn.json")):
        assert [p.name for p in old.parent.iterdir()] == [name]  # no temporary left beside it


def test_missing_prepared_data_names_the_stage(tmp_path):
    with pytest.raises(PipelineError, match=r"run `dvc repro prepare@digits` first"):
        training.run(
            "cnn",
            PARAMS.models["cnn"],
            PARAMS.trainer,
            tmp_path / "nope",
            tmp_path / "m",
            tmp_path / "m.json",
            tmp_path / "c",
            f"sqlite:///{tmp_path}/db",
            {},
        )


def test_stage_command_checks_its_inputs_before_importing_lightning(tmp_path):
    """`python -m stages.train` answers a missing prepared folder before it imports Lightning,
    torch or MLflow (seconds of imports): -X importtime lists every module the process loaded."""
    raw = PARAMS.model_dump(mode="json", by_alias=True)
    raw["paths"] = {name: str(tmp_path / name) for name in raw["paths"]}
    for name, dataset in raw["datasets"].items():
        dataset["path"] = str(tmp_path / "raw" / name)
    raw["tune"] = {}  # JSON writes 1e-05, which YAML reads as a string
    (tmp_path / "params.yaml").write_text(json.dumps(raw))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stages.train", "train@cnn"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]  # bad input, not a transient failure
    assert f"{tmp_path / 'prepared' / 'digits'}: no prepared data" in done.stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert {"stages.config", "lightning_modules.prepared"} <= loaded  # what the checks read
    assert not loaded & {"lightning", "torch", "mlflow", "stages.training"}


def test_model_that_does_not_fit_its_data_is_refused_before_training(tmp_path):
    with pytest.raises(PipelineError, match="arch 'cnn' takes images, but .* holds sequences"):
        training.run(
            "cnn",
            shrunk("cnn"),
            PARAMS.trainer,
            tiny_prepared(tmp_path, "sequence"),
            tmp_path / "m",
            tmp_path / "m.json",
            tmp_path / "c",
            f"sqlite:///{tmp_path}/db",
            {},
        )
    with pytest.raises(PipelineError, match="models.cnn: arch 'cnn' takes images, but dataset"):
        raw = PARAMS.model_dump(mode="json", by_alias=True)
        raw["models"]["cnn"]["dataset"] = "japanese_vowels"
        parse_params(raw)
    with pytest.raises(PipelineError, match="unknown model 'resnet'.*known: cnn, fcn, gru, lstm"):
        PARAMS.model("resnet")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_gpu_training_loads_on_cpu(tmp_path):
    model = shrunk("cnn")
    metrics = training.run(
        "cnn",
        model,
        PARAMS.trainer.model_copy(update={"accelerator": "gpu"}),
        tiny_prepared(tmp_path, "image"),
        tmp_path / "m",
        tmp_path / "m.json",
        tmp_path / "c",
        f"sqlite:///{tmp_path}/db",
        {},
    )
    assert metrics["device"].startswith("cuda") and metrics["precision"] == "bf16-mixed"
    module, _ = load_classifier(tmp_path / "m")
    assert next(module.parameters()).device.type == "cpu"


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tmp_path):
    """The stage's CLI under DDP: Lightning starts a second process that re-runs the command."""
    prepared = tiny_prepared(tmp_path, "image")
    raw = PARAMS.model_dump(mode="json", by_alias=True)
    raw["paths"] = {name: str(tmp_path / name) for name in raw["paths"]}
    raw["paths"]["prepared"] = str(prepared.parent)
    raw["datasets"]["digits"]["path"] = str(tmp_path / "raw" / "digits")
    raw["datasets"]["japanese_vowels"]["path"] = str(tmp_path / "raw" / "japanese_vowels")
    raw["trainer"] |= {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}
    raw["models"] = {"cnn": raw["models"]["cnn"] | {"dataset": "digits", "max_epochs": 2}}
    raw["tune"] = {}  # its searches name the models left out here
    (prepared.parent / "digits").symlink_to(prepared)
    (tmp_path / "params.yaml").write_text(json.dumps(raw))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "stages.train", "cnn"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distributed_backend=gloo" in done.stderr and "All distributed processes" in done.stderr
    metrics = json.loads((tmp_path / "metrics" / "train" / "cnn.json").read_text())
    assert metrics["epochs"] == 2
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    assert len(client.search_runs([experiment.experiment_id])) == 1  # one run, not one per rank
    load_classifier(tmp_path / "models" / "cnn")


def test_one_line_per_epoch_with_its_figures(tmp_path, capsys):
    metrics = run_tiny(tmp_path, "cnn")
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if line.startswith("epoch ")]
    # Then the kept epoch's figures, and the run's page in the MLflow UI.
    assert out[-2].startswith(f"train@cnn: kept epoch {metrics['kept_epoch'] + 1}/3 ")
    assert f"val_acc {metrics['best_val_accuracy']:.4f}" in out[-2]
    assert out[-1].startswith(f"MLflow run: {MAKE_UI}/#/experiments/")
    assert out[-1].endswith(f"/runs/{metrics['mlflow_run_id']}")
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    for line in lines:
        words = line.split()
        figures = dict(zip(words[2:-2:2], map(float, words[3:-2:2]), strict=True))
        assert sorted(figures) == ["train_acc", "train_loss", "val_acc", "val_f1", "val_loss"]
        assert words[-1] == "s" and float(words[-2]) >= 0.0
