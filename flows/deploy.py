"""`make serve`: a Prefect server on 127.0.0.1 (started unless one answers), and this process
serving two deployments from it:

- `train-pipeline/scheduled`: the training flow on the cron schedule and timezone of
  `flow.schedule` in params.yaml. Runs never overlap: a run due while the last one still runs
  is cancelled (concurrency limit 1, CANCEL_NEW);
- `batch-predict/on-demand`: batch prediction, no schedule.

    python -m flows.deploy [--host 127.0.0.1] [--port 4200]

With `--pool`, the training deployment goes to a work pool of the server at PREFECT_API_URL
instead, with the same schedule and no-overlap rule, and this process ends: the pool's workers
run it, each run in a fresh clone of the git repository `--source` (default: this checkout's
`origin`) at `--branch` (default: its default branch), so a run sees what was pushed to git.

    python -m flows.deploy --pool training [--source GIT_URL] [--branch BRANCH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from flows.temporary_server import healthy

# Prefect is imported only once PREFECT_API_URL is set: it reads its settings on import.
ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = "flows/train_pipeline.py:pipeline"  # relative to a clone's root


def ensure_server(host: str, port: int, log: Path, timeout: float = 120.0) -> str:
    """The API URL of a Prefect server at host:port, started in the background if none answers."""
    api = f"http://{host}:{port}/api"
    if healthy(api):
        return api
    env = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The UI asks the server where its API is; unset, that is the default port 4200, not the
        # port this server listens on.
        "PREFECT_UI_API_URL": os.environ.get("PREFECT_UI_API_URL", api),
    }
    with log.open("ab") as out:
        subprocess.Popen(
            [
                str(Path(sys.executable).parent / "prefect"),
                "server",
                "start",
                "--host",
                host,
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while not healthy(api):
        if time.monotonic() > deadline:
            sys.exit(f"error: the Prefect server did not start in {timeout:.0f} s; see {log}")
        time.sleep(0.5)
    return api


def _training_settings() -> dict[str, Any]:
    """What the training deployment is, served or on a pool: the schedule of params.yaml and
    no overlap (a run due while the last one still runs is cancelled)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    from stages.config import load_params

    schedule = load_params(ROOT / "params.yaml").flow.schedule
    return {
        "name": "scheduled",
        "schedule": Cron(schedule.cron, timezone=schedule.timezone),
        "concurrency_limit": ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
        ),
        "description": "The DVC pipeline; unchanged stages are skipped by DVC.",
    }


def deployments():  # noqa: ANN201 (Prefect's RunnerDeployment)
    from flows.predict import predict
    from flows.train_pipeline import pipeline

    train = pipeline.to_deployment(**_training_settings())
    batch = predict.to_deployment(name="on-demand", description="Champion batch prediction.")
    return train, batch


def deploy_to_pool(pool: str, source: str, branch: str | None) -> UUID:
    """The training deployment on work pool `pool`, its code cloned from git `source`."""
    from prefect.runner.storage import GitRepository

    from flows.train_pipeline import pipeline

    # A workers' machine clones the repository for each run (Prefect's git_clone pull step)
    # into the run's own temporary folder: no run sees another's files.
    train = pipeline.from_source(GitRepository(url=source, branch=branch), entrypoint=ENTRYPOINT)
    return train.deploy(
        **_training_settings(),
        work_pool_name=pool,
        build=False,  # a process pool runs no image
        push=False,
        print_next_steps=False,
    )


def origin_url(root: Path) -> str:
    """The git URL of `root`'s `origin`, which workers clone; an error naming --source when
    there is none."""
    found = subprocess.run(
        ["git", "remote", "get-url", "origin"], cwd=root, capture_output=True, text=True
    )
    if found.returncode != 0:
        sys.exit(
            f"error: {root} has no git remote 'origin' for workers to clone: name the "
            "repository's git URL with --source"
        )
    return found.stdout.strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the scheduled training flow.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--pool", help="deploy to this work pool of $PREFECT_API_URL instead")
    parser.add_argument("--source", help="with --pool: the git URL workers clone")
    parser.add_argument("--branch", help="with --pool: the branch workers clone")
    args = parser.parse_args(argv)
    if args.pool:
        if not os.environ.get("PREFECT_API_URL"):
            sys.exit("error: --pool: set PREFECT_API_URL to the API of the server holding the pool")
        source = args.source or origin_url(ROOT)
        deployment = deploy_to_pool(args.pool, source, args.branch)
        print(f"train-pipeline/scheduled ({deployment}) on work pool {args.pool}, from {source}")
        return
    if args.source or args.branch:
        parser.error("--source and --branch go with --pool")
    os.environ["PREFECT_API_URL"] = ensure_server(
        args.host, args.port, ROOT / ".prefect-server.log"
    )
    from prefect import serve  # after PREFECT_API_URL, which Prefect reads on import

    serve(*deployments())


if __name__ == "__main__":
    main()
