"""MLflow and provenance helpers shared by the stages: tracking URI, git commit, data hash."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

# `dvc exp run --temp` runs a copy of the repository under .dvc/tmp/exps/; runs it tracks
# belong in the store of the repository itself.
REPO_ROOT = Path(str(Path(__file__).resolve().parent.parent).split("/.dvc/tmp/exps/")[0])


def tracking_uri(configured: str | None, root: Path = REPO_ROOT) -> str:
    """MLFLOW_TRACKING_URI, else params' `mlflow.tracking_uri`, else `<root>/mlflow.db`.

    The default is absolute so that it also holds in DVC's temporary experiment directories.
    """
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or configured
        or f"sqlite:///{(root / 'mlflow.db').resolve()}"
    )


def git_commit(root: Path = REPO_ROOT) -> str:
    """HEAD's commit, with `-dirty` when tracked files differ from it; `unknown` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def dvc_out_hash(stage: str, root: Path = REPO_ROOT) -> str:
    """The md5 that dvc.lock records for `stage`'s first output; `unknown` when not locked yet."""
    lock = root / "dvc.lock"
    if not lock.exists():
        return "unknown"
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    outs = stages.get(stage, {}).get("outs") or [{}]
    return str(outs[0].get("md5", "unknown"))


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} → {"a.b": 1}; lists and tuples become their string form."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = str(list(value)) if isinstance(value, list | tuple) else value
    return flat
