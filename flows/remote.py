"""The DVC remote a flow pushes to: chosen by name (the flow's `remote`, else $DVC_REMOTE, else
DVC's default remote), from DVC's own configuration (`dvc remote add`, at any of its levels:
`--local` for one clone, `--global` for a worker machine), and checked before any stage runs.

The project configures no remote of its own: a laptop needs none, and a team's lives in the
configuration `make stack` prints (README "A team stack")."""

from __future__ import annotations

import os
from pathlib import Path

from stages.errors import PipelineError

ENV = "DVC_REMOTE"
HOW = (
    "add one with `dvc remote add --local --default NAME URL` (`make stack` prints the lines "
    "for the stack's bucket)"
)


def push_remote(root: Path, name: str | None) -> str:
    """The remote to push to, or an error naming what to configure."""
    from dvc.repo import Repo  # a second to import: only when pushing

    with Repo(str(root)) as repo:
        config = repo.config
        remotes = sorted(config.get("remote", {}))
        default = config.get("core", {}).get("remote")
    chosen = name or os.environ.get(ENV) or default
    if not chosen:
        raise PipelineError(
            f"push: no DVC remote to push to in {root}: {HOW}, or name one with --remote or "
            f"{ENV}" + (f" (configured: {', '.join(remotes)})" if remotes else "")
        )
    if chosen not in remotes:
        raise PipelineError(
            f"push: DVC remote '{chosen}' is not configured in {root} (configured: "
            f"{', '.join(remotes) or 'none'}): {HOW.replace('NAME', chosen)}"
        )
    return chosen
