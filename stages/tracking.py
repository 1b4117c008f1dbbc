"""MLflow and provenance helpers shared by the stages: tracking URI, git commit, data hash."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from stages.config import MlflowConfig
from stages.errors import TransientError

if TYPE_CHECKING:
    from mlflow import MlflowClient

# `dvc exp run --temp` runs a copy of the repository under .dvc/tmp/exps/; runs it tracks
# belong in the store of the repository itself.
REPO_ROOT = Path(str(Path(__file__).resolve().parent.parent).split("/.dvc/tmp/exps/")[0])


def tracking_uri(configured: str | None, root: Path = REPO_ROOT) -> str:
    """MLFLOW_TRACKING_URI, else params' `mlflow.tracking_uri`, else `<root>/mlflow.db`.

    The default is absolute so that it also holds in DVC's temporary experiment directories.
    """
    return _without_credentials(
        os.environ.get("MLFLOW_TRACKING_URI") or configured or _default_uri(root)
    )


def _without_credentials(uri: str) -> str:
    """`uri` without a `user:password@`, which moves to MLFLOW_TRACKING_USERNAME/PASSWORD
    (MLflow's client sends those as basic auth): MLflow prints the URI it tracks to in its
    "View run at …" lines, so that URI must hold no password."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    os.environ["MLFLOW_TRACKING_USERNAME"] = urllib.parse.unquote(parts.username or "")
    os.environ["MLFLOW_TRACKING_PASSWORD"] = urllib.parse.unquote(parts.password)
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _default_uri(root: Path) -> str:
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def artifact_location(uri: str) -> str | None:
    """Where new experiments of a SQLite store keep artifacts: `mlruns` beside the database
    file (for the default store, `<repo>/mlruns`). MLflow would resolve its default against the
    working directory, scattering artifacts wherever a stage or test happened to run. A server
    decides for itself: None."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    return str(Path(uri.removeprefix(prefix)).parent / "mlruns")


def connect(uri: str, cfg: MlflowConfig) -> MlflowClient:
    """A client for `uri`; a server that does not answer is retried with exponential backoff,
    then a TransientError. MLflow's own retries for later requests use the same settings."""
    # Imported here: the flow imports this module, and with nothing to do it needs no client
    # (MLflow's import alone is a second).
    from mlflow import MlflowClient

    if uri.startswith(("http://", "https://")):
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(cfg.retries)
        os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(cfg.backoff_seconds)
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(cfg.timeout_seconds)
        _wait_for_server(uri, cfg)
    return MlflowClient(uri)


def redact(uri: str) -> str:
    """`uri` with its password (if any) masked, for every message and log line."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _health_url(uri: str) -> str:
    """<server>/health without the credentials (urllib refuses them inside a URL; the health
    endpoint needs none)."""
    parts = urllib.parse.urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(
        parts._replace(netloc=host, path=f"{parts.path.rstrip('/')}/health")
    )


def _wait_for_server(uri: str, cfg: MlflowConfig) -> None:
    last: Exception | None = None
    for attempt in range(cfg.retries + 1):
        if attempt:
            time.sleep(cfg.backoff_seconds * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(_health_url(uri), timeout=cfg.timeout_seconds):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:  # it answers; what it thinks of the request, MLflow will say
                return
            last = exc
        except (urllib.error.URLError, OSError) as exc:
            last = exc
    waited = sum(cfg.backoff_seconds * 2**i for i in range(cfg.retries))
    raise TransientError(
        f"MLflow tracking server {redact(uri)} does not answer ({last}); tried "
        f"{cfg.retries + 1} times over {waited} s. Start it, or set MLFLOW_TRACKING_URI / "
        "mlflow.tracking_uri"
    )


def git_commit(root: Path = REPO_ROOT) -> str:
    """HEAD's commit, with `-dirty` when code or params differ from it; `unknown` outside git.

    What the pipeline itself writes is left out: dvc.lock and the outputs it lists (the metrics
    files git tracks), which every run rewrites before the next training starts.
    """
    try:
        head, top = _git(root, "rev-parse", "HEAD", "--show-toplevel").splitlines()
        status = _git(root, "status", "--porcelain", "-z", "--untracked-files=no", "--no-renames")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    written = [root.resolve() / path for path in ("dvc.lock", *_locked_outs(root))]
    changed = [Path(top) / entry[3:] for entry in status.split("\0") if entry]
    dirty = any(not any(p == w or w in p.parents for w in written) for p in changed)
    return f"{head}-dirty" if dirty else head


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def _lock_stages(root: Path) -> dict[str, Any]:
    lock = root / "dvc.lock"
    return (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.exists() else {}


def _locked_outs(root: Path) -> list[str]:
    """Every output path dvc.lock records, relative to `root`."""
    return [out["path"] for stage in _lock_stages(root).values() for out in stage.get("outs", [])]


def dvc_out_hash(stage: str, root: Path = REPO_ROOT) -> str:
    """The md5 that dvc.lock records for `stage`'s first output; `unknown` when not locked yet."""
    outs = _lock_stages(root).get(stage, {}).get("outs") or [{}]
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
