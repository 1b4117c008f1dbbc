"""`mlflow models serve` of the champion, and the tracking server that does not answer."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from stages import evaluate, register
from stages.config import MlflowConfig, RegisterConfig
from stages.errors import PipelineError
from tests.test_register import (  # noqa: F401
    _register,
    project,
    store,  # noqa: F401  (fixtures)
)
from tests.test_train import PARAMS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, payload: object) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.server
def test_served_champion_answers_http(store):  # noqa: F811
    work, tmp, _ = store
    _register(store, ["eval_0.json"])
    port = free_port()
    bin_dir = Path(sys.executable).parent  # mlflow starts uvicorn from PATH
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    server = subprocess.Popen(
        [
            str(bin_dir / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/seq-classifier@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()[-3000:]
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.5)
        x = np.load(work / "prepared" / "sequence" / "x_test.npy")
        meta = json.loads((work / "prepared" / "sequence" / "meta.json").read_text())
        from stages.preprocess import raw_from_prepared

        raw = raw_from_prepared(work / "prepared" / "sequence", meta)
        payload = {"inputs": np.where(np.isnan(raw), None, raw).tolist()}
        status, body = _post(f"http://127.0.0.1:{port}/invocations", payload)
        assert status == 200, body
        labels = [row["label"] for row in body["predictions"]]
        truth = np.asarray(meta["classes"])[np.load(work / "prepared/sequence/y_test.npy")]
        accuracy = float(np.mean(np.array(labels) == truth))
        assert accuracy == pytest.approx(
            json.loads((work / "eval_0.json").read_text())["test_accuracy"]
        )
        assert len(labels) == len(x)

        status, body = _post(
            f"http://127.0.0.1:{port}/invocations", {"inputs": np.zeros((1, 4, 5)).tolist()}
        )
        assert status == 400
        assert "shape" in body["message"] and "Traceback" not in json.dumps(body)
        status, body = _post(f"http://127.0.0.1:{port}/invocations", {"inputs": [["x"]]})
        assert status == 400 and "Traceback" not in json.dumps(body)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_unreachable_tracking_server_is_retried_then_a_clear_error(project, tmp_path):  # noqa: F811
    work, _ = project
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = MlflowConfig(retries=2, backoff_seconds=0.05, timeout_seconds=1)
    started = time.monotonic()
    with pytest.raises(PipelineError, match=rf"{uri} does not answer .* tried 3 times"):
        register.run(
            {"seq": [("gru", work / "eval_0.json")]},
            {"seq": work / "prepared" / "sequence"},
            RegisterConfig(),
            register.connect(uri, cfg),
            tmp_path / "registry.json",
        )
    assert time.monotonic() - started >= 0.15  # 0.05 + 0.1 of backoff
    assert not (tmp_path / "registry.json").exists()
    with pytest.raises(PipelineError, match="does not answer"):
        evaluate.run(
            "gru",
            PARAMS.models["gru"],
            work / "prepared" / "sequence",
            work / "models" / "gru",
            work / "metrics" / "gru.json",
            tmp_path / "out",
            uri,
            cfg,
        )
    assert not (tmp_path / "out").exists()
