"""The state file, `<folder>/state.json`: the ports and URLs a stack serves on and the processes it
started, written after each start so that `down` stops exactly those, even after a failed `up`."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from stack.config import DB_USER, StackConfig


@dataclass(frozen=True)
class Started:
    """A detached server: its process group (the leader's pid) and the leader's start time, which
    tells it from a later process that got the same pid."""

    pid: int
    created: float
    log: str

    @classmethod
    def of(cls, pid: int, log: Path) -> Started:
        return cls(pid=pid, created=psutil.Process(pid).create_time(), log=str(log))

    def alive(self) -> bool:
        try:
            process = psutil.Process(self.pid)
            return process.create_time() == self.created and process.status() not in (
                psutil.STATUS_ZOMBIE,
                psutil.STATUS_DEAD,
            )
        except psutil.NoSuchProcess:
            return False


@dataclass
class State:
    host: str
    address: str
    ports: dict[str, int]
    postgres_data: str
    postgres_password: str
    processes: dict[str, Started] = field(default_factory=dict)

    @classmethod
    def new(cls, cfg: StackConfig, password: str) -> State:
        return cls(
            host=cfg.host,
            address=cfg.address,
            ports=dict(cfg.ports),
            postgres_data=str(cfg.folder / "postgres"),
            postgres_password=password,
        )

    def url(self, server: str) -> str:
        return f"http://{self.address}:{self.ports[server]}"

    def database_url(self, database: str, driver: str) -> str:
        """Without the password, which goes in PGPASSWORD (psycopg2 and asyncpg read it): a
        command line is visible to every user in `ps`. On 127.0.0.1 (see stack.postgres)."""
        port = self.ports["postgres"]
        return f"postgresql+{driver}://{DB_USER}@127.0.0.1:{port}/{database}"

    def save(self, folder: Path) -> None:
        data = asdict(self) | {
            "urls": {name: self.url(name) for name in ("s3", "mlflow", "prefect")}
        }
        path = folder / "state.json"
        tmp = path.with_suffix(".tmp")
        # The PostgreSQL password is in it: readable by the owner only.
        tmp.touch(mode=0o600)
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, folder: Path) -> State | None:
        path = folder / "state.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data.pop("urls")
        data["processes"] = {k: Started(**v) for k, v in data["processes"].items()}
        return cls(**data)
