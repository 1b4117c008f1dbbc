"""Prefect flows over the DVC pipeline. Prefect here never re-implements a stage."""

import os

# No network here, and no telemetry wanted: set before Prefect reads its settings.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
