"""A team stack on one machine: PostgreSQL, an S3 store, an MLflow server and a Prefect server
with a work pool and a worker, started detached under one folder (`python -m stack up`) and
stopped by `python -m stack down`. The same settings point a clone at shared servers elsewhere."""
