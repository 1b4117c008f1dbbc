"""The training flow's command line (the flow is flows/train_pipeline.py):

    python -m flows.pipeline [--stages S ...] [--models M ...] [--force] [--push [--remote R]]

Prefect is imported only inside `prefect_api()`: without a configured API, the temporary
Prefect server starts first and boots while this process imports Prefect and the flow.
"""

from __future__ import annotations

import argparse
import sys

from flows.temporary_server import prefect_api
from stages.errors import PipelineError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the DVC pipeline as a Prefect flow.")
    parser.add_argument("--stages", nargs="+", help="stages or groups (e.g. train@cnn, train)")
    parser.add_argument("--models", nargs="+", help="only these models' train/evaluate stages")
    parser.add_argument("--force", action="store_true", help="re-run even when unchanged")
    parser.add_argument("--push", action="store_true", help="dvc push the outputs at the end")
    parser.add_argument(
        "--remote",
        help="the DVC remote to push to (default: $DVC_REMOTE, else DVC's default remote)",
    )
    args = parser.parse_args(argv)
    if args.remote and not args.push:
        parser.error("--remote names where --push pushes: give --push too")
    try:
        with prefect_api():
            from flows.train_pipeline import pipeline

            pipeline(
                stages=args.stages,
                models=args.models,
                force=args.force,
                push=args.push,
                remote=args.remote,
            )
    except (PipelineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
