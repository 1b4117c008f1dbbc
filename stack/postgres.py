"""A PostgreSQL cluster of the stack's own in `<folder>/postgres`, never the system one: `initdb`
once, `pg_ctl start`/`stop`, and the databases MLflow and Prefect keep their stores in.

PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres` user and
its commands run through `runuser`. It listens on 127.0.0.1 only, whatever the stack's host:
only the stack's own servers talk to it."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from stack.config import DATABASES, DB_USER, StackError
from stack.state import Started, State

OWNER = "postgres"


def binaries() -> Path:
    """STACK_POSTGRES_BIN, else the newest Debian/Ubuntu install, else `initdb` on PATH."""
    if configured := os.environ.get("STACK_POSTGRES_BIN"):
        return Path(configured)
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if installed:
        return installed[-1].parent
    if found := shutil.which("initdb"):
        return Path(found).parent
    raise StackError(
        "PostgreSQL's initdb and pg_ctl were not found: install PostgreSQL (apt-get install "
        "postgresql) or set STACK_POSTGRES_BIN to the folder that holds them"
    )


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", OWNER, "--", *command] if os.geteuid() == 0 else command


def _give_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user=OWNER, group=OWNER)


def _run(command: list[str], what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(_as_owner(command), capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"{what} failed (exit {result.returncode}):\n{result.stderr.strip()}")
    return result


def ensure_cluster(folder: Path) -> str:
    """Creates the cluster on first use; returns the password of its user."""
    data = folder / "postgres"
    password_file = folder / "postgres.password"
    if (data / "PG_VERSION").exists():
        return password_file.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    data.mkdir(mode=0o700, exist_ok=True)
    _give_to_owner(data)
    password_file.touch(mode=0o600)
    password_file.write_text(secrets.token_urlsafe(18) + "\n")
    _give_to_owner(password_file)  # initdb reads it as the owner
    if os.geteuid() == 0:
        _check_reachable(data)
    command = [
        str(binaries() / "initdb"),
        "--pgdata", str(data),
        "--username", DB_USER,
        "--pwfile", str(password_file),
        "--auth", "scram-sha-256",
        "--encoding", "UTF8",
        "--locale", "C",
    ]  # fmt: skip
    try:
        _run(command, "initdb")
    except StackError:
        # initdb needs an empty folder: leave none half-made for the next try.
        shutil.rmtree(data)
        raise
    return password_file.read_text().strip()


def _check_reachable(data: Path) -> None:
    if subprocess.run(_as_owner(["test", "-w", str(data)])).returncode != 0:
        raise StackError(
            f"PostgreSQL runs as the {OWNER} user, who cannot reach {data}: give its parent "
            "folders search permission (chmod o+x) or put the stack in another folder"
        )


def start(state: State, log: Path) -> Started:
    data = Path(state.postgres_data)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    _give_to_owner(log)
    # No Unix socket (-k ''): its path would be the system cluster's /var/run/postgresql.
    options = f"-h 127.0.0.1 -p {state.ports['postgres']} -k ''"
    command = [str(binaries() / "pg_ctl"), "start", "--wait", "--timeout", "60"]
    result = subprocess.run(
        _as_owner([*command, "--pgdata", str(data), "--log", str(log), "--options", options]),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(
            f"PostgreSQL did not start: {result.stdout.strip()} {result.stderr.strip()}\n"
            f"{log} ends:\n{_tail(log)}"
        )
    pid = int((data / "postmaster.pid").read_text().split()[0])
    return Started.of(pid, log)


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:])


def connect(state: State, database: str):  # noqa: ANN201 (a psycopg2 connection)
    """A connection to `database` of the stack's cluster, as the stack's user."""
    import psycopg2  # the stack's own package (stack/requirements.txt): not in every venv

    return psycopg2.connect(
        host="127.0.0.1",
        port=state.ports["postgres"],
        user=DB_USER,
        password=state.postgres_password,
        dbname=database,
    )


def create_databases(state: State) -> None:
    connection = connect(state, "postgres")
    connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with connection.cursor() as cursor:
            for database in DATABASES:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{database}"')
    finally:
        connection.close()


def stop(data: Path) -> None:
    if not (data / "postmaster.pid").exists():
        return
    pg_ctl = str(binaries() / "pg_ctl")
    _run([pg_ctl, "stop", "--pgdata", str(data), "--mode", "fast", "--wait"], "pg_ctl stop")
