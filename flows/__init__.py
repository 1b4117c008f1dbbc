"""Prefect flows over the DVC pipeline. Prefect here never re-implements a stage."""

import os

# No network here, and no telemetry wanted: set before Prefect reads its settings.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A machine's first temporary Prefect server migrates its database: 20.9 s on 2 cores, past
# Prefect's 20 s start-up limit (a loaded machine's later starts too). Here, so that every
# `python -m flows.…` gets it, with make or without. (Not [tool.prefect] in pyproject.toml:
# there, a served deployment's server answered 503 to create_flow_run in test_schedule.py.)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
