"""Prefect flows over the DVC pipeline. Prefect here never re-implements a stage."""

import os

# No network here, and no telemetry wanted: set before Prefect reads its settings.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A machine's first temporary Prefect server creates and migrates its database: 20.9 s on 2
# cores, past Prefect's 20 s start-up limit, so a fresh clone's first run failed; on a loaded
# 2-core machine a later start can take as long. Set here, not only in the Makefile, so that
# `python -m flows.…` run directly waits as long. (Not [tool.prefect] in pyproject.toml: with
# it there, a served deployment's server answered 503 to create_flow_run in
# tests/test_schedule.py.)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
