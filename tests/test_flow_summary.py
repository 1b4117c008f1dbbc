"""What the flow shows a person, without running it: artifact contents, MLflow links, the task
log's filter and the retry backoff (tests/test_flow.py runs the flow itself)."""

import json

import pytest
from markdown_it import MarkdownIt
from mlflow import MlflowClient
from prefect.tasks import exponential_backoff

from flows.stage_log import is_noise, stage_env
from flows.summary import (
    DECISIONS_DESCRIPTION,
    METRICS_DESCRIPTION,
    metric_rows,
    registry_markdown,
    table_rows,
)
from flows.train_pipeline import BIN, backoff_rest
from stages.config import load_params
from stages.links import MAKE_UI, mlflow_ui_url, version_url
from tests.conftest import REPO

PARAMS = load_params(REPO / "params.yaml")
UI = "http://mlflow.example:8080"


@pytest.fixture(autouse=True)
def no_ui_override(monkeypatch):
    monkeypatch.delenv("MLFLOW_UI_URL", raising=False)


def test_mlflow_ui_is_the_tracking_server_or_make_ui_or_the_override(monkeypatch):
    assert mlflow_ui_url("https://tracking.example/mlflow/") == "https://tracking.example/mlflow"
    assert mlflow_ui_url("sqlite:////repo/mlflow.db") == MAKE_UI
    # Links land in logs and artifacts: never with the credentials of the tracking URI.
    assert (
        mlflow_ui_url("https://ann:s3cret@tracking.example:8443") == "https://tracking.example:8443"
    )
    monkeypatch.setenv("MLFLOW_UI_URL", "https://ui.example/")
    assert mlflow_ui_url("sqlite:////repo/mlflow.db") == "https://ui.example"
    assert mlflow_ui_url("http://127.0.0.1:5000") == "https://ui.example"


def test_version_url_quotes_the_model_name():
    assert version_url(UI, "my data-classifier", "3") == (
        f"{UI}/#/models/my%20data-classifier/versions/3"
    )


def _write_eval(root, model, run_id):
    folder = root / PARAMS.paths.metrics / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    evaluation = {
        "test_accuracy": 0.987654321,
        "test_macro_f1": 0.5,
        "test_loss": 0.123456789,
        "n_test": 360,
        "baselines": {"majority": {"test_accuracy": 1 / 3}},
        "mlflow_run_id": run_id,
    }
    (folder / f"{model}.json").write_text(json.dumps(evaluation))


def test_metric_rows_are_rounded_and_link_their_runs(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("digits")
    run_id = client.create_run(experiment).info.run_id
    model = sorted(PARAMS.models)[0]
    _write_eval(tmp_path, model, run_id)
    _write_eval(tmp_path, "not-evaluated-in-this-run", "x")
    rows = metric_rows(PARAMS, tmp_path, [model])
    assert [r["model"] for r in rows] == [model]
    assert rows[0]["test_accuracy"] == 0.9877 and rows[0]["test_loss"] == 0.1235
    assert rows[0]["majority"] == 0.3333 and rows[0]["1nn"] is None and rows[0]["n_test"] == 360
    [row] = table_rows(rows, client, UI)
    assert row["mlflow_run_id"] == f"[{run_id}]({UI}/#/experiments/{experiment}/runs/{run_id})"
    [unlinked] = table_rows(rows, None, UI)  # no tracking store answered
    assert unlinked["mlflow_run_id"] == run_id


def _write_registry(root):
    decisions = [
        {
            "version": "1",
            "model": "cnn",
            "action": "promoted",
            "reason": "first",
            "decided_now": False,
        },
        {
            "version": "2",
            "model": "cnn",
            "action": "rejected",
            "reason": "worse",
            "decided_now": True,
        },
    ]
    registry = {
        "digits": {
            "registered_model": "digits-classifier",
            "champion_version": "1",
            "champion_run_id": "abc",
            "champion_model": "cnn",
            "metric": "test_accuracy",
            "champion_metric": 0.991666666,
            "decisions": decisions,
        }
    }
    (root / PARAMS.paths.metrics).mkdir(parents=True, exist_ok=True)
    (root / PARAMS.paths.metrics / "registry.json").write_text(json.dumps(registry))


def test_registry_markdown_holds_only_this_runs_decisions(tmp_path):
    _write_registry(tmp_path)
    markdown = registry_markdown(PARAMS, tmp_path, "ran", None, UI)
    link = f"[version 2]({UI}/#/models/digits-classifier/versions/2)"
    assert f"- {link} (cnn): **rejected**: worse" in markdown
    assert "first" not in markdown  # decided by an earlier run
    assert f"Champion: [version 1]({UI}/#/models/digits-classifier/versions/1)" in markdown
    assert "test_accuracy 0.9917." in markdown


def test_registry_markdown_says_when_nothing_was_decided(tmp_path):
    _write_registry(tmp_path)
    markdown = registry_markdown(PARAMS, tmp_path, "skipped", None, UI)
    assert "Nothing changed in this run" in markdown and "DVC skipped it" in markdown
    assert "rejected" not in markdown and "Champion" not in markdown


def test_descriptions_render_their_paths_literally():
    html = MarkdownIt().render(METRICS_DESCRIPTION)
    assert "metrics/eval/&lt;model&gt;.json" in html
    assert "metrics/registry.json" in MarkdownIt().render(DECISIONS_DESCRIPTION)


@pytest.mark.parametrize(
    "line",
    [
        "To track the changes with git, run:",
        "\tgit add dvc.lock",
        "To enable auto staging, run:",
        "\tdvc config core.autostage true",
        "Use `dvc push` to send your updates to remote storage.",
        "💡 Tip: For seamless cloud logging and experiment tracking, try installing "
        "[litlogger](https://pypi.org/project/litlogger/) to enable LitLogger, which logs metrics "
        "and artifacts automatically to the Lightning Experiments platform.",
        "TPU available: False, using: 0 TPU cores",
        "Loading `train_dataloader` to estimate number of stepping batches.",
        "/repo/.venv/lib/python3.11/site-packages/lightning/pytorch/utilities/_pytree.py:21: "
        "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) "
        "and treespec.is_leaf()` instead.",
        "2026/12/07 05:23:17 INFO mlflow.pyfunc: Validating input example against model signature",
    ],
)
def test_tool_hints_are_noise(line):
    assert is_noise(line)


@pytest.mark.parametrize(
    "line",
    [
        "Running stage 'train@gru':",
        "Updating lock file 'dvc.lock'",
        "error: git add failed",
        "GPU available: True (cuda), used: True",
        "2026/12/07 05:23:17 WARNING mlflow.pyfunc: Failed to validate the input example",
    ],
)
def test_stage_output_is_not_noise(line):
    assert not is_noise(line)


def test_stage_env_has_no_progress_bars_and_this_environments_tools():
    env = stage_env(BIN)
    assert env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    assert env["PATH"].startswith(f"{BIN}:")


def test_retry_waits_add_up_to_an_exponential_backoff():
    waits = [5.0 + backoff_rest(tries, 5.0) for tries in (2, 3, 4)]  # before retries 1, 2, 3
    assert waits == exponential_backoff(5.0)(3)
    assert backoff_rest(1, 5.0) == 0.0
