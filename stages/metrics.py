"""Classification metrics from labels and predictions: what evaluate reports for a model and
its baselines, and what register measures a champion again with."""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall and the confusion matrix (rows: actual)."""
    k = len(classes)
    confusion = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    true_pos = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(true_pos, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(true_pos, actual, out=np.zeros(k), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    present = actual > 0  # macro-F1 over the classes the test split holds
    return {
        "test_accuracy": float(true_pos.sum() / len(y)),
        "test_macro_f1": float(f1[present].mean()),
        "n_test": int(len(y)),
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "support": int(actual[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion.tolist(),
    }
