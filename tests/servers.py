"""Real servers for `server` tests: started on a free 127.0.0.1 port, stopped afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(command: list[str], health_url: str, log: Path, timeout: float = 120.0, **popen):
    """`command` in a session of its own until the block ends; waits until `health_url`
    answers 200, and stops the whole process group afterwards."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **popen
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(health_url, timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    started = log.read_text()[-3000:]
                    raise RuntimeError(f"{command[0]} did not start:\n{started}") from None
                time.sleep(0.5)
        yield process
    finally:
        with_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with_group(process, signal.SIGKILL)
            process.wait(timeout=30)


def with_group(process: subprocess.Popen, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """`mlflow server` over a SQLite store in `folder`, serving artifacts; yields its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/health", folder / "server.log", env=env):
        yield url


# Only the tracking URI (no S3 credentials: the server proxies the artifacts), a home of its own
# and the system's PATH, not this environment's.
PREDICT = (
    "import mlflow, numpy as np\n"
    "m = mlflow.pyfunc.load_model('models:/digits-classifier@champion')\n"
    "print(len(m.predict(np.zeros((3, 8, 8)))))\n"
)


def digits_champion_predicts(tracking_uri: str, home: Path) -> bool:
    """Whether a fresh process that knows only `tracking_uri` loads the digits champion and
    labels three 8x8 images with it; its error is the assertion's message."""
    loaded = subprocess.run(
        [sys.executable, "-c", PREDICT],
        cwd=home,
        env={"MLFLOW_TRACKING_URI": tracking_uri, "HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    return loaded.stdout.split()[-1] == "3"
