"""The stack's servers after PostgreSQL: their commands, environments and health checks, the S3
buckets, and the environment that points a clone (or the stack's own worker) at the stack."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from datetime import datetime
from pathlib import Path

import boto3

from stack.config import (
    DVC_BUCKET,
    MLFLOW_BUCKET,
    S3_KEY_ID,
    S3_REGION,
    S3_SECRET,
    WORK_POOL,
    WORKER_NAME,
)
from stack.state import Started, State

BIN = Path(sys.executable).parent


def client_env(state: State) -> dict[str, str]:
    """What a clone sets to use the stack. MLflow clients need no S3 settings (the server proxies
    artifacts); the S3 ones are for DVC, boto3 and the AWS CLI."""
    return {
        "MLFLOW_TRACKING_URI": state.url("mlflow"),
        "PREFECT_API_URL": f"{state.url('prefect')}/api",
        "AWS_ACCESS_KEY_ID": S3_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_DEFAULT_REGION": S3_REGION,
        "AWS_ENDPOINT_URL": state.url("s3"),
    }


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def s3_command(state: State) -> tuple[list[str], dict[str, str]]:
    return [str(BIN / "moto_server"), "-H", state.host, "-p", str(state.ports["s3"])], _env()


def mlflow_command(state: State) -> tuple[list[str], dict[str, str]]:
    command = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri", state.database_url("mlflow", "psycopg2"),
        "--artifacts-destination", f"s3://{MLFLOW_BUCKET}/",
        "--serve-artifacts",
        "--host", state.host,
        "--port", str(state.ports["mlflow"]),
        # Two request workers: uploads do not block the UI, and a 2-core machine keeps up.
        "--workers", "2",
    ]  # fmt: skip
    env = _env(
        PGPASSWORD=state.postgres_password,
        # Its job runners (GenAI scorers, trace archival) are 7 more processes of ~250 MB each
        # that a classifier pipeline never uses.
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_S3_ENDPOINT_URL=state.url("s3"),
        AWS_ACCESS_KEY_ID=S3_KEY_ID,
        AWS_SECRET_ACCESS_KEY=S3_SECRET,
        AWS_DEFAULT_REGION=S3_REGION,
    )
    return command, env


def prefect_command(state: State, folder: Path) -> tuple[list[str], dict[str, str]]:
    port = str(state.ports["prefect"])
    command = [str(BIN / "prefect"), "server", "start", "--host", state.host, "--port", port]
    env = _env(
        PREFECT_HOME=str(folder / "prefect"),
        PGPASSWORD=state.postgres_password,
        PREFECT_SERVER_DATABASE_CONNECTION_URL=state.database_url("prefect", "asyncpg"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # The UI's browser side calls this, which a wildcard bind address would not be.
        PREFECT_SERVER_UI_API_URL=f"{state.url('prefect')}/api",
        PREFECT_API_URL=f"{state.url('prefect')}/api",
    )
    return command, env


def worker_command(state: State, folder: Path) -> tuple[list[str], dict[str, str]]:
    """One process worker; it creates the `training` pool when the server has none yet. Its runs
    get the clone environment, so they track into the stack's MLflow and S3."""
    command = [
        str(BIN / "prefect"), "worker", "start",
        "--pool", WORK_POOL, "--type", "process", "--name", WORKER_NAME,
    ]  # fmt: skip
    return command, _env(PREFECT_HOME=str(folder / "prefect"), **client_env(state))


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def worker_online(state: State, worker: Started) -> bool:
    """The pool lists our worker with a heartbeat since it started (not one from a last run)."""
    request = urllib.request.Request(
        f"{state.url('prefect')}/api/work_pools/{WORK_POOL}/workers/filter",
        data=b"{}",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            workers = json.load(response)
    except OSError:
        return False
    return any(
        w["name"] == WORKER_NAME
        and w["last_heartbeat_time"]
        and datetime.fromisoformat(w["last_heartbeat_time"]).timestamp() >= worker.created
        for w in workers
    )


def s3_client(state: State):
    return boto3.client(
        "s3",
        endpoint_url=state.url("s3"),
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
        region_name=S3_REGION,
    )


def create_buckets(state: State) -> None:
    s3 = s3_client(state)
    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for bucket in (MLFLOW_BUCKET, DVC_BUCKET):
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
