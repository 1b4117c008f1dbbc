"""The pipeline against a real `mlflow server`, and the tracking URI's credentials."""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from stages.config import MlflowConfig
from stages.errors import TransientError
from stages.register import lost_server_is_transient
from stages.tracking import artifact_location, connect, redact, tracking_uri
from tests.conftest import copy_repo, shrink_params
from tests.servers import BIN, digits_champion_predicts, free_port, mlflow_server


def test_credentials_leave_the_uri_for_mlflows_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://ana:s3%40cret@mlflow.example:8443/x")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert tracking_uri(None) == "https://mlflow.example:8443/x"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "ana"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "s3@cret"


def test_credentials_are_masked_in_errors():
    uri = f"http://ana:s3cret@127.0.0.1:{free_port()}"  # nothing listens there
    assert redact(uri).startswith("http://ana:***@127.0.0.1:")
    with pytest.raises(TransientError) as info:
        connect(uri, MlflowConfig(retries=0, timeout_seconds=1))
    assert "s3cret" not in str(info.value) and "ana:***@127.0.0.1" in str(info.value)


def test_a_server_lost_after_connect_is_transient_for_register(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # Nothing listens there (any more); the credentials move to MLflow's environment.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://ana:s3cret@127.0.0.1:{free_port()}")
    uri = tracking_uri(None)
    client = MlflowClient(uri)
    lost = pytest.raises(TransientError, match="stopped answering")
    with lost as info, lost_server_is_transient(uri):
        client.search_registered_models()
    assert "s3cret" not in str(info.value)
    # Any other MLflow error is not retried: it says what is wrong.
    with pytest.raises(MlflowException, match="no such model"), lost_server_is_transient(uri):
        raise MlflowException("no such model")


class AnswerHalf(BaseHTTPRequestHandler):
    """Reads the whole request (closing with unread bytes would reset the connection, a
    different fault), then sends the headers of an answer and closes with its body unsent."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "926")
        self.end_headers()

    def log_message(self, *args) -> None:  # no request lines in the test's output
        pass


def test_a_server_killed_part_way_through_its_answer_is_transient_for_register(monkeypatch):
    """What a tracking server killed while it answers `create_model_version` leaves a client
    (seen in tests/test_team_faults.py under load): the headers, then the connection closed
    with the body unsent, which `requests` raises as a ChunkedEncodingError."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with HTTPServer(("127.0.0.1", 0), AnswerHalf) as server:
        uri = f"http://127.0.0.1:{server.server_port}"
        answering = threading.Thread(target=server.handle_request, daemon=True)
        answering.start()
        lost = pytest.raises(TransientError, match="stopped answering.*IncompleteRead")
        with lost, lost_server_is_transient(uri):
            MlflowClient(uri).create_model_version("digits-classifier", "models:/m-1")
        answering.join(10)


@pytest.mark.server
@pytest.mark.slow
def test_the_whole_pipeline_against_a_tracking_server(tmp_path):
    root = copy_repo(tmp_path / "repo")
    shrink_params(root)
    with mlflow_server(tmp_path / "mlflow") as url:
        # Credentials in the URI reach MLflow's client but no message (the server ignores them).
        uri = url.replace("http://", "http://ana:s3cret@")
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": uri,
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PATH": f"{BIN}:{os.environ['PATH']}",
        }
        env.pop("PREFECT_API_URL", None)
        done = subprocess.run(
            [sys.executable, "-m", "flows.pipeline"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
        assert "s3cret" not in done.stdout + done.stderr
        client = MlflowClient(url)
        registry = json.loads((root / "metrics/registry.json").read_text())
        for dataset in ("digits", "japanese_vowels"):
            champion = client.get_model_version_by_alias(f"{dataset}-classifier", "champion")
            assert champion.status == "READY"
            assert registry[dataset]["champion_version"] == str(champion.version)
        runs = client.search_runs(
            [e.experiment_id for e in client.search_experiments()], max_results=50
        )
        models = yaml.safe_load((root / "params.yaml").read_text())["models"]
        assert sorted(r.data.tags["model"] for r in runs) == sorted(models)
        assert all(r.info.status == "FINISHED" for r in runs)
        # The champion loads and predicts in a fresh process, through the server alone.
        assert digits_champion_predicts(url, tmp_path)


def test_artifacts_of_a_sqlite_store_lie_beside_its_database(tmp_path):
    assert artifact_location(f"sqlite:///{tmp_path}/store/mlflow.db") == str(
        tmp_path / "store" / "mlruns"
    )
    assert artifact_location("http://127.0.0.1:5000") is None  # a server decides
