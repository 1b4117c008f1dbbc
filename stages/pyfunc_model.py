"""The MLflow pyfunc form of a trained classifier: raw input in, labels and probabilities out.

It carries the exported weights (`models/<model>/`) and the dataset's `meta.json`, and applies
the same preprocessing as `prepare` (stages/preprocess.py), so a user sends images as pixels
or sequences of any length. Bad input becomes an MLflow INVALID_PARAMETER_VALUE error with a
one-line message, which the scoring server returns as HTTP 400 instead of a stack trace.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec

from lightning_modules.export import load_classifier
from stages.errors import PipelineError
from stages.preprocess import to_model_input

REQUIREMENTS = (
    "torch",
    "lightning",
    "torchmetrics",
    "numpy",
    "pandas",
    "pillow",
    "pydantic",
    "pyyaml",
    "mlflow",
)


class ClassifierModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.module, self.spec = load_classifier(Path(context.artifacts["model"]))
        self.meta = json.loads(Path(context.artifacts["meta"]).read_text())

    # No type hints here: MLflow would read them as a schema and override the signature.
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        try:
            inputs = to_model_input(model_input, self.meta)
        except PipelineError as exc:
            raise MlflowException.invalid_parameter_value(f"bad input: {exc}") from None
        return predict_frame(self.module, inputs, self.meta["classes"])


def predict_frame(
    module: torch.nn.Module,
    inputs: tuple[np.ndarray, ...],
    classes: list[str],
    batch_size: int = 1024,
) -> pd.DataFrame:
    """Labels and class probabilities for model-ready inputs, in batches."""
    probs = []
    with torch.inference_mode():
        for start in range(0, len(inputs[0]), batch_size):
            batch = [torch.from_numpy(a[start : start + batch_size]) for a in inputs]
            probs.append(torch.softmax(module(*batch).float(), dim=1).numpy())
    p = np.concatenate(probs)
    frame = pd.DataFrame({"label": np.asarray(classes, dtype=object)[p.argmax(axis=1)]})
    for i, c in enumerate(classes):
        frame[f"prob_{c}"] = p[:, i].astype(np.float64)
    return frame


def signature(meta: dict) -> ModelSignature:
    # Only the number of dimensions is fixed here: MLflow's own check of a wrong size quotes
    # the whole input back, while predict() names the expected channels in one line.
    if meta["kind"] == "image":
        shape = (-1, -1, -1) if meta["channels"] == 1 else (-1, -1, -1, -1)
    else:
        shape = (-1, -1, -1)
    outputs = [ColSpec("string", "label")] + [
        ColSpec("double", f"prob_{c}") for c in meta["classes"]
    ]
    return ModelSignature(Schema([TensorSpec(np.dtype("float64"), shape)]), Schema(outputs))


def pinned_requirements() -> list[str]:
    """The running environment's exact versions of what the model needs to load and predict."""
    return [f"{name}=={version(name)}" for name in REQUIREMENTS]


def log_pyfunc(model_dir: Path, meta_file: Path, input_example: np.ndarray) -> Any:
    """Log the pyfunc model into the active MLflow run; returns MLflow's ModelInfo."""
    meta = json.loads(meta_file.read_text())
    root = Path(__file__).resolve().parent.parent
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=ClassifierModel(),
        artifacts={"model": str(model_dir), "meta": str(meta_file)},
        code_paths=[str(root / "stages"), str(root / "lightning_modules")],
        signature=signature(meta),
        input_example=input_example,
        pip_requirements=pinned_requirements(),
    )
