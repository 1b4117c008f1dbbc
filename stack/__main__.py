"""`python -m stack up|down|env [--folder DIR] [--host ADDRESS]`; ports from STACK_POSTGRES_PORT,
STACK_S3_PORT, STACK_MLFLOW_PORT and STACK_PREFECT_PORT (see stack.config)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stack.config import StackConfig, StackError
from stack.lifecycle import down, up
from stack.lines import shell_lines, summary
from stack.state import State

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "env"])
    parser.add_argument("--folder", help="the stack's folder (default: $STACK_DIR or .stack)")
    parser.add_argument("--host", help="address to bind (default: $STACK_HOST or 127.0.0.1)")
    args = parser.parse_args(argv)
    cfg = StackConfig.from_env(args.folder, args.host)
    try:
        if args.command == "up":
            state, already = up(cfg)
            print(
                f"The stack in {cfg.folder} is already running."
                if already
                else f"Started the stack in {cfg.folder} (logs in {cfg.folder / 'logs'})."
            )
            print(summary(state))
            # The package is not installed: `env` runs from this checkout, wherever the clone is.
            env_command = f"cd {REPO} && {sys.executable} -m stack env --folder {cfg.folder}"
            print("\n# Point a clone at the stack: run these lines in its shell, or there")
            print(f'# eval "$({env_command})"')
            print("\n".join(shell_lines(state)))
        elif args.command == "down":
            stopped = down(cfg.folder)
            print(f"{'Stopped the' if stopped else 'No'} stack in {cfg.folder}.")
        else:
            state = State.load(cfg.folder)
            if state is None:
                raise StackError(f"no stack runs in {cfg.folder}: start one with `make stack`")
            print("\n".join(shell_lines(state)))
    except StackError as e:
        print(f"stack: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
