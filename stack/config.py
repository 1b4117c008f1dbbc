"""Where the stack lives and which ports it takes: one typed object, from options or the
environment (STACK_DIR, STACK_HOST, STACK_*_PORT), with the defaults declared here only."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

# Beside, not on, `make ui` (5000), `make serve` (4200) and a system PostgreSQL (5432).
DEFAULT_PORTS = {"postgres": 5433, "s3": 9000, "mlflow": 5001, "prefect": 4201}
DEFAULT_DIR = ".stack"
DEFAULT_HOST = "127.0.0.1"

# moto accepts any credentials; fixed ones can be printed and pasted. A real S3 API gets its own.
S3_KEY_ID = "testing"
S3_SECRET = "testing"
S3_REGION = "us-east-1"  # moto's default: buckets need no LocationConstraint there
MLFLOW_BUCKET = "mlflow"
DVC_BUCKET = "dvc"
WORK_POOL = "training"  # the pool README's work-pool text names
WORKER_NAME = "stack"
DB_USER = "stack"
DATABASES = ("mlflow", "prefect")


class StackError(Exception):
    """A stack that cannot start or stop, with what to do about it."""


@dataclass(frozen=True)
class StackConfig:
    folder: Path
    host: str
    ports: dict[str, int]

    @classmethod
    def from_env(cls, folder: str | None = None, host: str | None = None) -> StackConfig:
        ports = {
            name: int(os.environ.get(f"STACK_{name.upper()}_PORT", default))
            for name, default in DEFAULT_PORTS.items()
        }
        return cls(
            folder=Path(folder or os.environ.get("STACK_DIR") or DEFAULT_DIR).resolve(),
            host=host or os.environ.get("STACK_HOST") or DEFAULT_HOST,
            ports=ports,
        )

    @property
    def address(self) -> str:
        """The address clients (and the stack's own servers) use: a wildcard bind is reached
        through this machine's name."""
        return socket.getfqdn() if self.host in ("0.0.0.0", "::") else self.host
