"""The Optuna search (flows/tune.py, tuning/) over tiny series in a copy of the repository:
nested MLflow runs, a study that continues, two workers, a NaN trial, applying the winner."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from bench.suite.repo import copy_repo
from flows.tune import tune
from lightning_modules.data import PreparedDataModule
from stages.config import load_params
from stages.tune_config import TuneConfig
from tests.conftest import tiny_cases, write_ts_pair
from tests.test_flow import artifacts
from tests.test_train import PARAMS, shrunk, tiny_prepared
from tuning.folds import FoldDataModule
from tuning.study import FAILURE, Search, open_study, search_for
from tuning.worker import run as run_worker

BIN = Path(sys.executable).parent
SPACE = {"lr": {"log_uniform": [1.0e-3, 3.0e-2]}, "rnn.hidden_size": {"choice": [8, 16]}}


def tiny_repo(root: Path, max_epochs: int = 3, space: dict = SPACE) -> Path:
    """A copy of the repository whose one dataset is tiny series and whose one model is a
    small lstm, with a 3-trial search of it."""
    repo = copy_repo(root)
    write_ts_pair(repo / "user_data" / "tiny", tiny_cases(16), tiny_cases(4, seed=1))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    lstm = params["models"]["lstm"] | {"dataset": "tiny", "max_epochs": max_epochs}
    lstm |= {"min_steps": 0, "batch_size": 8}
    lstm["rnn"] |= {"hidden_size": 16, "frontend": 8}
    params["datasets"] = {
        "tiny": {"source": "ts", "path": "user_data/tiny", "split": {"val": 0.25, "seed": 0}}
    }
    params["models"] = {"lstm": lstm}
    params["tune"] = {"lstm": {"trials": 3, "space": space}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


@pytest.fixture(scope="module")
def searched(tmp_path_factory, prefect_harness):
    """The tiny repo after `flows.tune lstm` with 3 trials; its MLflow client and flow state."""
    repo = tiny_repo(tmp_path_factory.mktemp("tune") / "repo")
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{repo / 'mlflow.db'}"
    state = tune("lstm", project_dir=str(repo), return_state=True)
    yield repo, mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"]), state
    if before is None:
        del os.environ["MLFLOW_TRACKING_URI"]
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def runs_of(client, repo: Path) -> tuple:
    """(parent run, trial runs by trial number) of the repo's one study."""
    experiment = client.get_experiment_by_name("tiny").experiment_id
    runs = client.search_runs([experiment])
    (parent,) = [r for r in runs if r.info.run_name == "tune lstm"]
    trials = {}
    for run in runs:
        if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id:
            number = int(run.data.tags["tune.trial"])
            assert number not in trials, f"trial {number} has two runs"
            trials[number] = run
    return parent, trials


def study_of(repo: Path) -> optuna.Study:
    return open_study(search_for(load_params(repo / "params.yaml"), "lstm", repo))


def test_trials_are_runs_nested_under_the_study(searched):
    repo, client, state = searched
    result = state.result()
    parent, trials = runs_of(client, repo)
    assert sorted(trials) == [0, 1, 2] and result["trials_done"] == 3
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["tune.study"] == result["study"]
    for number, run in trials.items():
        tags, params = run.data.tags, run.data.params
        assert tags["tune.study"] == result["study"] and run.info.status == "FINISHED"
        # Tagged with its values, and logged as ordinary training logs them.
        assert float(tags["tune.lr"]) == pytest.approx(float(params["model.lr"]))
        assert tags["tune.rnn.hidden_size"] == params["model.rnn.hidden_size"]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert steps == [0, 1, 2], f"trial {number}: one val_loss per epoch"
        assert {"train_loss", "train_acc", "val_acc", "val_f1"} <= set(run.data.metrics)
    # The first trial of a new study is the recipe of params.yaml.
    assert float(trials[0].data.tags["tune.lr"]) == 0.01
    assert trials[0].data.tags["tune.rnn.hidden_size"] == "16"
    best = min(trials.values(), key=lambda r: r.data.metrics["tune_val_loss"])
    assert parent.data.tags["best.trial"] == best.data.tags["tune.trial"]
    assert parent.data.metrics["best_val_loss"] == pytest.approx(result["best_value"])
    assert result["best_params"]["rnn.hidden_size"] == int(best.data.tags["tune.rnn.hidden_size"])
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"search_space.json", "optimization_history.png", "param_importances.png"} <= names


def test_the_flow_publishes_the_table_of_trials(searched):
    _, _, state = searched
    table = artifacts(state)["tune-lstm"]
    assert "**Best: trial" in table and state.result()["study"] in table
    assert table.count("| complete |") == 3 and table.count("| params.yaml |") == 1


def test_running_again_continues_the_study_with_two_workers(searched):
    repo, client, _ = searched
    before = {t.number: t for t in study_of(repo).trials}
    result = tune("lstm", trials=5, workers=2, project_dir=str(repo))
    study = study_of(repo)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert result["trials_done"] == len(done) and 5 <= len(done) <= 6  # one extra at most
    for number, trial in before.items():  # kept, not run again
        assert study.trials[number].datetime_complete == trial.datetime_complete
        assert study.trials[number].value == trial.value
    assert len({tuple(sorted(t.params.items())) for t in done}) == len(done)
    _, trials = runs_of(client, repo)  # one run per trial, none twice
    assert sorted(trials) == sorted(t.number for t in study.trials)


def test_apply_changes_the_swept_params_only_and_dvc_sees_train_stale(searched):
    repo, _, _ = searched
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}

    def dvc(*args: str) -> str:
        done = subprocess.run(
            [str(BIN / "dvc"), *args], cwd=repo, env=env, check=True, capture_output=True
        )
        return done.stdout.decode()

    # Trained with values no trial can have, so that the winner differs from them.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["models"]["lstm"]["lr"] = 0.5
    params["models"]["lstm"]["rnn"]["hidden_size"] = 12
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc("repro", "train@lstm")
    before = yaml.safe_load((repo / "params.yaml").read_text())
    result = tune("lstm", apply=True, project_dir=str(repo))
    best = result["best_params"]
    assert result["study"] == searched[2].result()["study"]  # the searched values left out
    after = yaml.safe_load((repo / "params.yaml").read_text())
    lstm = after["models"]["lstm"]
    assert lstm["lr"] == pytest.approx(best["lr"])
    assert lstm["rnn"]["hidden_size"] == best["rnn.hidden_size"]
    lstm["lr"] = before["models"]["lstm"]["lr"]
    lstm["rnn"]["hidden_size"] = before["models"]["lstm"]["rnn"]["hidden_size"]
    assert after == before  # nothing else changed
    status = dvc("status", "train@lstm")
    assert "train@lstm" in status and "models.lstm" in status


def tiny_search(work: Path, space: dict, **tune) -> Search:
    """A search of the real lstm, shrunk, on tiny prepared series, without a repo copy."""
    return Search(
        name="lstm",
        model=shrunk("lstm", max_epochs=3),
        tune=TuneConfig.model_validate({"space": space} | tune),
        trainer=PARAMS.trainer.model_copy(update={"accelerator": "cpu", "devices": 1}),
        mlflow=PARAMS.mlflow,
        prepared=tiny_prepared(work, "sequence"),
        mlflow_uri=f"sqlite:///{work / 'mlflow.db'}",
        storage=f"sqlite:///{work / 'optuna.db'}",
    )


def test_folds_split_train_and_val_only_and_are_runs_nested_under_their_trial(tmp_path):
    search = tiny_search(tmp_path, SPACE, trials=2, folds=2)
    whole = PreparedDataModule(search.prepared, 8)
    pooled = sum(len(whole.arrays[split][0]) for split in ("train", "val"))
    seen = []
    for fold in range(2):
        data = FoldDataModule(search.prepared, 8, seed=0, fold=fold, folds=2)
        n_train, n_val = len(data.arrays["train"][0]), len(data.arrays["val"][0])
        assert n_train + n_val == pooled and data.meta["counts"]["val"]["total"] == n_val
        assert set(data.arrays) == {"train", "val"}  # never the test split
        seen.append(data.arrays["val"][0])
    assert sum(len(v) for v in seen) == pooled  # each series validates exactly once
    run_worker(search, trials=2)
    client = mlflow.MlflowClient(search.mlflow_uri)
    for trial in open_study(search).trials:
        trial_run = trial.user_attrs["mlflow_run_id"]
        folds = client.search_runs(
            [client.get_run(trial_run).info.experiment_id],
            f"tags.mlflow.parentRunId = '{trial_run}'",
        )
        assert sorted(r.data.tags["tune.fold"] for r in folds) == ["0", "1"]
        scores = [r.data.metrics["val_loss"] for r in folds]  # the last epoch's (tiny val)
        assert trial.value == pytest.approx(sum(scores) / 2)


def test_a_trial_whose_loss_is_not_finite_fails_and_the_search_goes_on(tmp_path):
    search = tiny_search(tmp_path, {"lr": {"choice": [1.0e30, 1.0e-2]}}, trials=4, prune=False)
    run_worker(search, trials=4)
    trials = open_study(search).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(t.params["lr"] == 1.0e30 for t in failed)
    assert all("training loss is nan" in t.user_attrs[FAILURE] for t in failed)
    assert len(trials) == 4 and any(t.state == TrialState.COMPLETE for t in trials)
    client = mlflow.MlflowClient(search.mlflow_uri)
    for trial in failed:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FAILED" and run.data.tags["tune.state"] == "failed"


@pytest.mark.slow
def test_a_killed_search_continues_without_losing_or_rerunning_a_trial(tmp_path):
    repo = tiny_repo(tmp_path / "repo", max_epochs=40)
    env = os.environ | {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
    }
    subprocess.run([str(BIN / "dvc"), "repro", "prepare@tiny"], cwd=repo, env=env, check=True)
    command = [str(BIN / "python"), "-m", "tuning.worker", "lstm", "--trials", "5"]
    worker = subprocess.Popen(command, cwd=repo, env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    # Killed with two trials finished and the third part-way (its epochs take seconds).
    while not _killable(_trials(repo)):
        assert worker.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    finished = {t.number: t for t in _trials(repo) if t.state == TrialState.COMPLETE}
    (cut,) = [t for t in _trials(repo) if t.state == TrialState.RUNNING]
    subprocess.run(command, cwd=repo, env=env, check=True, timeout=300)
    trials = _trials(repo)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5
    for number, trial in finished.items():  # kept, not run again
        assert trials[number].state == TrialState.COMPLETE
        assert trials[number].datetime_complete == trial.datetime_complete
    # The trial cut short is failed, not by itself, and its values run again, once.
    assert trials[cut.number].state == TrialState.FAIL
    assert FAILURE not in trials[cut.number].user_attrs
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == cut.number]
    assert len(retried) == 1 and retried[0].params == cut.params
    assert retried[0].state == TrialState.COMPLETE


def _killable(trials: list) -> bool:
    states = [t.state for t in trials]
    return states.count(TrialState.COMPLETE) >= 2 and TrialState.RUNNING in states


def _trials(repo: Path) -> list:
    return study_of(repo).get_trials(deepcopy=False)
