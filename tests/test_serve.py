"""`mlflow models serve` of the champion, and the tracking server that does not answer."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server

from stages import evaluate, register
from stages.config import MlflowConfig, RegisterConfig
from stages.errors import PipelineError
from stages.preprocess import raw_from_prepared
from tests.test_evaluate import evaluate_tiny
from tests.test_register import (  # noqa: F401
    _register,
    project,
    store,  # noqa: F401  (fixtures)
)
from tests.test_train import PARAMS, run_tiny


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


@contextmanager
def serving(model_uri: str, db: Path):
    """`mlflow models serve` of `model_uri` from the SQLite store `db`: its /invocations URL."""
    port = free_port()
    bin_dir = Path(sys.executable).parent  # mlflow starts uvicorn from PATH
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{db}",
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    server = subprocess.Popen(
        [
            str(bin_dir / "mlflow"),
            "models",
            "serve",
            "-m",
            model_uri,
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
        yield f"http://127.0.0.1:{port}/invocations"
    finally:
        server.terminate()
        server.wait(timeout=30)


def one_line(body: dict) -> bool:
    """An error body whose message is one line and carries no traceback."""
    return "\n" not in body["message"] and "Traceback" not in json.dumps(body)


@pytest.mark.server
def test_served_champion_answers_http(store):  # noqa: F811
    work, tmp, _ = store
    _register(store, ["eval_0.json"])
    with serving("models:/seq-classifier@champion", tmp / "mlflow.db") as url:
        x = np.load(work / "prepared" / "sequence" / "x_test.npy")
        meta = json.loads((work / "prepared" / "sequence" / "meta.json").read_text())
        raw = raw_from_prepared(work / "prepared" / "sequence", meta)
        payload = {"inputs": np.where(np.isnan(raw), None, raw).tolist()}
        status, body = _post(url, payload)
        assert status == 200, body
        labels = [row["label"] for row in body["predictions"]]
        truth = np.asarray(meta["classes"])[np.load(work / "prepared/sequence/y_test.npy")]
        accuracy = float(np.mean(np.array(labels) == truth))
        assert accuracy == pytest.approx(
            json.loads((work / "eval_0.json").read_text())["test_accuracy"]
        )
        assert len(labels) == len(x)

        status, body = _post(url, {"inputs": np.zeros((1, 4, 5)).tolist()})
        assert status == 400 and one_line(body)
        assert "sequences must have shape (N, T, 2)" in body["message"]
        status, body = _post(url, {"inputs": [["x"]]})
        assert status == 400 and one_line(body) and "numeric" in body["message"]


@pytest.fixture(scope="module")
def image_project(tmp_path_factory):
    """A tiny grey 8×8 cnn, evaluated: its folder and the URI of the pyfunc model it logged."""
    work = tmp_path_factory.mktemp("image_model")
    run_tiny(work, "cnn")
    return work, evaluate_tiny(work, "cnn")["mlflow_model_uri"]


@pytest.fixture
def image_model(image_project):
    """The same, with its store as MLflow's (other tests point MLflow elsewhere)."""
    work, uri = image_project
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    return work, uri


def _test_pixels(work: Path) -> np.ndarray:
    """The raw test images of the tiny image set: uint8 (N, 8, 8), as PIL gives them."""
    meta = json.loads((work / "prepared" / "image" / "meta.json").read_text())
    return raw_from_prepared(work / "prepared" / "image", meta).astype(np.uint8)


@pytest.mark.server
def test_served_image_model_converts_and_answers_errors_in_one_line(image_model):
    work, uri = image_model
    pixels = _test_pixels(work)
    with serving(uri, work / "mlflow.db") as url:
        status, grey = _post(url, {"inputs": pixels.tolist()})
        assert status == 200, grey
        colour = np.repeat(pixels[..., None], 3, axis=-1)  # colour to a grey model
        status, body = _post(url, {"inputs": colour.tolist()})
        assert status == 200 and body == grey

        status, body = _post(url, {"inputs": (pixels.astype(int) * 300).tolist()})
        assert status == 400 and one_line(body), body
        assert "pixel values must lie in 0..255" in body["message"]
        status, body = _post(url, {"inputs": np.zeros((1, 8, 8, 5), int).tolist()})
        assert status == 400 and one_line(body), body
        assert "with 1 channel(s)" in body["message"] and "(1, 8, 8, 5)" in body["message"]


def test_model_is_logged_as_code_and_loads_in_a_fresh_process(image_model, tmp_path):
    work, uri = image_model
    folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "model")))
    assert not list(folder.rglob("*.pkl")), "a pickled python_model"
    flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    assert "python_model" not in flavor and Path(flavor["model_code_path"]).name == "pyfunc_code.py"
    pixels = _test_pixels(work)
    np.save(tmp_path / "pixels.npy", pixels)
    script = f"""
import numpy as np, mlflow
model = mlflow.pyfunc.load_model({uri!r})
print(",".join(model.predict(np.load({str(tmp_path / "pixels.npy")!r}))["label"]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            # Unpickling a model is refused: loading must not need it.
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
        },
        cwd=tmp_path,  # outside the repository: `stages` comes from the model's code
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected = mlflow.pyfunc.load_model(uri).predict(pixels)["label"]
    assert done.stdout.split()[-1].split(",") == list(expected)


@pytest.mark.parametrize(
    "convert",
    [
        lambda p: p,  # uint8 (N, H, W), as np.asarray(PIL image) gives them
        lambda p: p.astype(np.float32),
        lambda p: p.astype(np.int64),
        lambda p: p.tolist(),
        lambda p: np.repeat(p[..., None], 3, axis=-1),  # colour to a grey model
    ],
)
def test_model_takes_input_as_users_have_it(image_model, convert):
    work, uri = image_model
    model = mlflow.pyfunc.load_model(uri)
    pixels = _test_pixels(work)
    expected = model.predict(pixels.astype(np.float64))
    pd.testing.assert_frame_equal(model.predict(convert(pixels)), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_model_takes_series_of_any_numeric_type(store, dtype):  # noqa: F811
    work, _, _ = store
    _register(store, ["eval_0.json"])
    model = mlflow.pyfunc.load_model("models:/seq-classifier@champion")
    meta = json.loads((work / "prepared" / "sequence" / "meta.json").read_text())
    raw = np.nan_to_num(raw_from_prepared(work / "prepared" / "sequence", meta))[:, :3]
    raw = np.rint(raw * 4)  # whole numbers, so that int64 is the same input
    expected = model.predict(raw)
    pd.testing.assert_frame_equal(model.predict(raw.astype(dtype)), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            np.full((2, 8, 8), 1000).tolist(),
            r"bad input: pixel values must lie in 0\.\.255; got 1000",
        ),
        (np.zeros((2, 8, 8, 5)).tolist(), r"got \(2, 8, 8, 5\) \(the model converts them to 8×8"),
        ([[1, 2], [3]], "inhomogeneous"),
        (np.zeros((20, 8, 8)).tolist(), "input has 1,280 values; at most 1,000 per call"),
    ],
)
def test_scoring_server_errors_are_one_line(image_model, monkeypatch, inputs, message):
    """What `mlflow models serve` answers, through its own request handler in this process:
    it puts the whole input in front of an MlflowException's message, unless predict()'s
    error keeps its own."""
    _, uri = image_model
    monkeypatch.setattr("stages.preprocess.MAX_INPUT_VALUES", 1000)
    model = mlflow.pyfunc.load_model(uri)
    payload = json.dumps({"inputs": inputs})
    with pytest.raises(MlflowException) as info:
        scoring_server.invocations(
            payload, "application/json", model, model.metadata.get_input_schema()
        )
    body = json.loads(info.value.serialize_as_json())
    assert info.value.get_http_status_code() == 400
    assert re.search(message, body["message"]) and "\n" not in body["message"], body


def test_unreachable_tracking_server_is_retried_then_a_clear_error(project, tmp_path):  # noqa: F811
    work, _ = project
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = MlflowConfig(retries=2, backoff_seconds=0, timeout_seconds=1)
    with pytest.raises(PipelineError, match=rf"{uri} does not answer .* tried 3 times"):
        register.run(
            {"seq": [("gru", work / "eval_0.json")]},
            {"seq": work / "prepared" / "sequence"},
            RegisterConfig(),
            register.connect(uri, cfg),
            tmp_path / "registry.json",
        )
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
