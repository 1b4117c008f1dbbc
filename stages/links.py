"""Links into the MLflow UI that shows the tracking store the pipeline wrote to.

The UI's address is `MLFLOW_UI_URL` when set (a UI served elsewhere, behind a proxy, ...);
else a tracking server's own URL, since `mlflow server` serves the UI beside its API; else
(a SQLite file or any other backend store) the address `make ui` serves it on.
"""

from __future__ import annotations

import os
from urllib.parse import quote, urlsplit, urlunsplit

MAKE_UI = "http://127.0.0.1:5000"  # the Makefile's `ui` target


def mlflow_ui_url(tracking_uri: str) -> str:
    override = os.environ.get("MLFLOW_UI_URL")
    if override:
        return override.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        # Without the user and password a tracking URI may carry: the link lands in logs and
        # artifacts, and the browser asks for them.
        parts = urlsplit(tracking_uri)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])).rstrip("/")
    return MAKE_UI


def run_url(ui: str, experiment_id: str, run_id: str) -> str:
    return f"{ui}/#/experiments/{experiment_id}/runs/{run_id}"


def version_url(ui: str, registered_model: str, version: str) -> str:
    return f"{ui}/#/models/{quote(registered_model, safe='')}/versions/{version}"
