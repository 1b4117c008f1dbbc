"""The Prefect API a command-line flow run reports to: the one configured, else a temporary
server of this process's own, stopped when the run ends.

Prefect starts such a server itself (its "ephemeral" mode), but only once the flow run has
begun, after Prefect's imports, and it first imports its whole server package into the flow's
process to do so: 1.8 s of a 6.5 s run with nothing to do, on 2 cores. `prefect_api()` starts
the same server (Prefect's own app, in a child process on a port in 8000–8999, as Prefect does)
before Prefect is imported, so it boots on the other core while the caller imports Prefect and
its flow, and drains Prefect's log and event workers into it before stopping it, so no log line
is lost and the exit does not wait on a server that is gone.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from stages.errors import PipelineError

PORTS = range(8000, 9000)  # Prefect's own range for its temporary server
PORT_IN_USE_EXIT = 3  # uvicorn's exit status when it cannot bind its port (or start its app)


@contextmanager
def prefect_api() -> Iterator[str | None]:
    """The block's Prefect API: PREFECT_API_URL (or a Prefect profile's) when set; else, unless
    Prefect's temporary server is turned off, a temporary server that the block and its threads
    see as PREFECT_API_URL. Yields that URL (None: left to Prefect, which then says that no API
    is configured).

    The server starts before Prefect's settings are read unless PREFECT_API_URL is in the
    environment: a server named only in a profile is found after Prefect's import, and the
    temporary one is stopped unused."""
    previous = os.environ.get("PREFECT_API_URL")
    server = None if previous else _Server()
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if server is None or settings.api.url or not settings.server.ephemeral.enabled:
        if server is not None:
            server.stop()
        yield settings.api.url
        return
    print(f"Starting a temporary Prefect server on {server.api}", file=sys.stderr, flush=True)
    try:
        server.wait_healthy(settings.server.ephemeral.startup_timeout_seconds)
    except BaseException:
        server.stop()
        raise
    os.environ["PREFECT_API_URL"] = server.api
    refresh_global_settings_context()  # Prefect read its settings on import
    try:
        yield server.api
    finally:
        _drain_workers()
        if previous is None:
            del os.environ["PREFECT_API_URL"]
        else:
            os.environ["PREFECT_API_URL"] = previous  # an empty one
        refresh_global_settings_context()
        server.stop()


class _Server:
    """Prefect's server app (API only) under uvicorn on 127.0.0.1, started at once."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._launch()

    def _launch(self) -> None:
        self.port = _free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "--factory"),
                "prefect.server.api.server:create_app",
                *("--host", "127.0.0.1", "--port", str(self.port)),
                *("--log-level", "error", "--lifespan", "on"),
            ],
            # What Prefect tells its own temporary server: no UI, a server for one process.
            env=os.environ
            | {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"}
            | {"PREFECT__SERVER_FINAL": "1"},
        )

    def wait_healthy(self, timeout: float) -> None:
        """Until the server answers its health check; a PipelineError after `timeout` seconds
        from its start, or when it exits (unless another process took its port meanwhile:
        then it starts again on another)."""
        while (code := self.process.poll()) is not None or not healthy(self.api):
            if code == PORT_IN_USE_EXIT and not _is_free(self.port):  # taken since chosen
                self._launch()
                print(f"Port taken: starting it on {self.api}", file=sys.stderr, flush=True)
            elif code is not None:
                raise PipelineError(
                    f"the temporary Prefect server exited with status {code} before it answered "
                    "(its error is above); or set PREFECT_API_URL to a running Prefect server"
                )
            elif time.monotonic() - self.started > timeout:
                raise PipelineError(
                    f"the temporary Prefect server did not answer in {timeout:g} s: set "
                    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS higher, or PREFECT_API_URL "
                    "to a running Prefect server"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    """A port of PORTS that nothing listens on now."""
    while not _is_free(port := random.choice(PORTS)):
        pass
    return port


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def healthy(api: str) -> bool:
    """Whether a Prefect server answers its health check at `api`."""
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _drain_workers() -> None:
    """Send what Prefect's log and event workers still hold, while the server answers."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()
    EventsWorker.drain_all()
