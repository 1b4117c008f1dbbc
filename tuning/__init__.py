"""Hyper-parameter search: Optuna studies over a model's params, trials trained by the train
stage's own code and tracked as nested MLflow runs (flows/tune.py orchestrates them)."""
