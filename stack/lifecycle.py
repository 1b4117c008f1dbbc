"""Starting and stopping a whole stack. `up` starts PostgreSQL, then the S3 store, MLflow and
Prefect side by side (each only needs PostgreSQL to start), then the worker once Prefect answers;
whatever fails, what it had started is stopped again."""

from __future__ import annotations

from pathlib import Path

from stack import postgres
from stack.config import StackConfig
from stack.processes import check_port_free, spawn, stop, wait_until
from stack.servers import (
    answers,
    create_buckets,
    mlflow_command,
    prefect_command,
    s3_command,
    worker_command,
    worker_online,
)
from stack.state import State

SERVERS = ("postgres", "s3", "mlflow", "prefect", "worker")
# First starts migrate the MLflow and Prefect databases: tens of seconds on two busy cores.
HEALTH_TIMEOUT = 180.0


def up(cfg: StackConfig, timeout: float = HEALTH_TIMEOUT) -> tuple[State, bool]:
    """Starts the stack in `cfg.folder`; returns its state and whether it was already running
    (then nothing is started, and the running stack's ports win over `cfg`'s)."""
    previous = State.load(cfg.folder)
    if previous is not None:
        stopped = [name for name in SERVERS if not _alive(previous, name)]
        if not stopped:
            return previous, True
        print(f"The stack in {cfg.folder} is partly stopped ({', '.join(stopped)}): restarting it.")
        down(cfg.folder)
    for server, port in cfg.ports.items():
        check_port_free(server, "127.0.0.1" if server == "postgres" else cfg.host, port)
    state = State.new(cfg, postgres.ensure_cluster(cfg.folder))
    state.save(cfg.folder)
    try:
        _start(state, cfg.folder, timeout)
    except BaseException:
        print("Stopping what had started.", flush=True)
        down(cfg.folder)
        raise
    return state, False


def _alive(state: State, name: str) -> bool:
    return name in state.processes and state.processes[name].alive()


def _start(state: State, folder: Path, timeout: float) -> None:
    logs = folder / "logs"

    def started(name: str, command: list[str], env: dict[str, str]) -> None:
        state.processes[name] = spawn(command, logs / f"{name}.log", env, cwd=Path.cwd())
        state.save(folder)

    print(f"Starting PostgreSQL on 127.0.0.1:{state.ports['postgres']}", flush=True)
    state.processes["postgres"] = postgres.start(state, logs / "postgres.log")
    state.save(folder)
    postgres.create_databases(state)

    print("Starting the S3 store, MLflow and Prefect", flush=True)
    started("s3", *s3_command(state))
    started("mlflow", *mlflow_command(state))
    started("prefect", *prefect_command(state, folder))
    # moto answers its own dashboard API once it serves S3.
    checks = {
        "s3": f"{state.url('s3')}/moto-api/",
        "mlflow": f"{state.url('mlflow')}/health",
        "prefect": f"{state.url('prefect')}/api/health",
    }
    for name, url in checks.items():
        wait_until(name, lambda url=url: answers(url), state.processes[name], timeout)
    create_buckets(state)

    print("Starting a worker on the work pool", flush=True)
    started("worker", *worker_command(state, folder))
    worker = state.processes["worker"]
    wait_until("worker", lambda: worker_online(state, worker), worker, timeout)


def down(folder: Path) -> bool:
    """Stops the stack's processes, newest first; False when no stack was recorded there."""
    state = State.load(folder)
    if state is None:
        return False
    for name in reversed(SERVERS[1:]):
        if name in state.processes:
            stop(state.processes[name])
    postgres.stop(Path(state.postgres_data))
    (folder / "state.json").unlink()
    return True
