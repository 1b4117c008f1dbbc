"""Helpers for tests that start a team stack (stack/): skipped cleanly without its packages or
PostgreSQL, on free 127.0.0.1 ports, in a folder PostgreSQL's user can enter."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port

MISSING = "the stack's packages: pip install -c requirements.lock -r stack/requirements.txt"


def require_stack() -> None:
    """Skips the test without the stack's packages or a PostgreSQL to run."""
    for module in ("moto", "psycopg2", "boto3"):
        pytest.importorskip(module, reason=MISSING)
    from stack import postgres
    from stack.config import StackError

    try:
        postgres.binaries()
    except StackError as e:
        pytest.skip(str(e))
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(postgres.OWNER)
        except KeyError:
            pytest.skip("running as root, and there is no postgres user to run PostgreSQL as")


def config(folder: Path):  # noqa: ANN201 (stack.config.StackConfig, imported once required)
    from stack.config import StackConfig

    ports = {name: free_port() for name in ("postgres", "s3", "mlflow", "prefect")}
    return StackConfig(folder=folder, host="127.0.0.1", ports=ports)


def open_folder() -> Iterator[Path]:
    # Not tmp_path: under root PostgreSQL runs as `postgres`, who cannot enter pytest's
    # /tmp/pytest-of-root (mode 700). A folder of its own in /tmp, open to it.
    path = Path(tempfile.mkdtemp(prefix="stack-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def running_stack(folder: Path) -> Iterator:
    """A stack started in `folder`, stopped afterwards; yields its State."""
    from stack.lifecycle import down, up

    require_stack()
    state, _ = up(config(folder))
    try:
        yield state
    finally:
        down(folder)


def point_at_stack(repo: Path, state) -> dict[str, str]:  # noqa: ANN001 (stack.state.State)
    """Runs in `repo` the `dvc remote` lines `make stack` prints; returns the environment
    its `export` lines set (on top of this process's)."""
    from stack.lines import shell_lines
    from stack.servers import client_env

    for line in shell_lines(state):
        if line.startswith("dvc "):
            subprocess.run(line, shell=True, cwd=repo, check=True, env=_with_venv())
    return _with_venv() | client_env(state)


def _with_venv() -> dict[str, str]:
    return os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
