"""What `up` and `env` print: the servers' URLs, and shell lines that point a clone at the stack
(`eval "$(python -m stack env)"` in the clone runs them)."""

from __future__ import annotations

import shlex

from stack.config import DATABASES, DVC_BUCKET, MLFLOW_BUCKET, S3_KEY_ID, S3_SECRET, WORK_POOL
from stack.servers import client_env
from stack.state import State

REMOTE = "stack"


def summary(state: State) -> str:
    port = state.ports["postgres"]
    return "\n".join(
        [
            f"PostgreSQL  127.0.0.1:{port}, databases {', '.join(DATABASES)}",
            f"S3 (moto)   {state.url('s3')}  buckets {MLFLOW_BUCKET}, {DVC_BUCKET}",
            f"MLflow      {state.url('mlflow')}  artifacts in s3://{MLFLOW_BUCKET}/",
            f"Prefect     {state.url('prefect')}  work pool {WORK_POOL}, one process worker",
        ]
    )


def shell_lines(state: State) -> list[str]:
    exports = [f"export {name}={shlex.quote(value)}" for name, value in client_env(state).items()]
    # --local: the remote and its credentials go to .dvc/config.local, which git ignores.
    remote = [
        f"dvc remote add --local --default --force {REMOTE} s3://{DVC_BUCKET}/",
        f"dvc remote modify --local {REMOTE} endpointurl {state.url('s3')}",
        f"dvc remote modify --local {REMOTE} access_key_id {S3_KEY_ID}",
        f"dvc remote modify --local {REMOTE} secret_access_key {S3_SECRET}",
    ]
    return exports + remote
