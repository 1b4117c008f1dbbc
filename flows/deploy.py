"""`make serve`: a Prefect server on 127.0.0.1 (started unless one answers), and this process
serving two deployments from it:

- `train-pipeline/scheduled`: the training flow on the cron schedule and timezone of
  `flow.schedule` in params.yaml. Runs never overlap: a run due while the last one still runs
  is cancelled (concurrency limit 1, CANCEL_NEW);
- `batch-predict/on-demand`: batch prediction, no schedule.

    python -m flows.deploy [--host 127.0.0.1] [--port 4200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# Prefect is imported only once PREFECT_API_URL is set: it reads its settings on import.
ROOT = Path(__file__).resolve().parent.parent


def ensure_server(host: str, port: int, log: Path, timeout: float = 120.0) -> str:
    """The API URL of a Prefect server at host:port, started in the background if none answers."""
    api = f"http://{host}:{port}/api"
    if _healthy(api):
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
    while not _healthy(api):
        if time.monotonic() > deadline:
            sys.exit(f"error: the Prefect server did not start in {timeout:.0f} s; see {log}")
        time.sleep(0.5)
    return api


def _healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def deployments():  # noqa: ANN201 (Prefect's RunnerDeployment)
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    from flows.pipeline import pipeline
    from flows.predict import predict
    from stages.config import load_params

    schedule = load_params(ROOT / "params.yaml").flow.schedule
    train = pipeline.to_deployment(
        name="scheduled",
        schedule=Cron(schedule.cron, timezone=schedule.timezone),
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
        ),
        description="The DVC pipeline; unchanged stages are skipped by DVC.",
    )
    batch = predict.to_deployment(name="on-demand", description="Champion batch prediction.")
    return train, batch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the scheduled training flow.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4200)
    args = parser.parse_args(argv)
    os.environ["PREFECT_API_URL"] = ensure_server(
        args.host, args.port, ROOT / ".prefect-server.log"
    )
    from prefect import serve  # after PREFECT_API_URL, which Prefect reads on import

    serve(*deployments())


if __name__ == "__main__":
    main()
