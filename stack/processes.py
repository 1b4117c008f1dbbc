"""Detached server processes: started in a session of their own with a log file, waited on until
they answer, and stopped as a whole process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import psutil

from stack.config import StackError
from stack.state import Started


def check_port_free(server: str, host: str, port: int) -> None:
    with socket.socket() as s:
        # As the servers themselves bind: a port left in TIME_WAIT by a stopped stack is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            variable = f"STACK_{server.upper()}_PORT"
            raise StackError(
                f"port {port} for {server} on {host} is in use ({e.strerror}): stop what "
                f"listens there or pick another port with {variable}=N"
            ) from None


def spawn(command: list[str], log: Path, env: dict[str, str], cwd: Path | None = None) -> Started:
    """`command` detached from this process (its own session, so it outlives `up` and a signal
    to its group reaches the workers it forks), output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    return Started.of(process.pid, log)


def log_tail(log: Path | str, lines: int = 30) -> str:
    path = Path(log)
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty)"


def wait_until(server: str, ready: Callable[[], bool], started: Started, timeout: float) -> None:
    """Polls `ready` until it is true; a server that exits or takes longer than `timeout` is an
    error carrying the end of its log."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not started.alive():
            raise StackError(
                f"{server} exited while starting; {started.log} ends:\n{log_tail(started.log)}"
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"{server} did not become healthy in {timeout:.0f} s; "
                f"{started.log} ends:\n{log_tail(started.log)}"
            )
        time.sleep(0.5)


def stop(started: Started, timeout: float = 30.0) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left after `timeout`."""
    with suppress(psutil.NoSuchProcess):
        if psutil.Process(started.pid).create_time() != started.created:
            return  # the pid is another process's now; the group it led has ended
    _signal_group(started.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _members(started.pid):
        if time.monotonic() > deadline:
            _signal_group(started.pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.2)
    # When `up` ran in this process (tests), the leader is a child of it: reap it.
    with suppress(ChildProcessError):
        os.waitpid(started.pid, os.WNOHANG)


def _signal_group(pgid: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _members(pgid: int) -> list[psutil.Process]:
    """The live processes of a process group (zombies waiting for a parent are stopped)."""
    members = []
    for process in psutil.process_iter():
        with suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
    return members
