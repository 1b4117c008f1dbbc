"""The MLflow pyfunc form of a trained classifier: raw input in, labels and probabilities out.

It carries the exported weights (`models/<model>/`) and the dataset's `meta.json`, and applies
the same preprocessing as `prepare` (stages/preprocess.py), so a user sends images as pixels
or sequences of any length. It is logged as code (MLflow's "models from code":
stages/pyfunc_code.py), so loading it unpickles nothing. Bad input becomes an MLflow
INVALID_PARAMETER_VALUE error with a one-line message, which the scoring server returns as
HTTP 400 instead of a stack trace.
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
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, Schema

from lightning_modules.export import load_classifier
from stages.errors import PipelineError
from stages.preprocess import to_model_input

REQUIREMENTS = (
    "torch",
    "numpy",
    "pandas",
    "pillow",
    "pydantic",
    "pyyaml",
    "mlflow",
)
CODE_FILE = Path(__file__).with_name("pyfunc_code.py")


class BadInput(MlflowException):
    """Bad input, as HTTP 400 with one line.

    MLflow's scoring server puts the whole input in front of the message of any
    MlflowException that predict() raises (`invocations()` in mlflow/pyfunc/scoring_server),
    which for an image batch is thousands of lines; this message stays as it was made.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_message"):  # only MlflowException.__init__ sets it
            self._message = value


class ClassifierModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.module, self.spec = load_classifier(Path(context.artifacts["model"]))
        self.meta = json.loads(Path(context.artifacts["meta"]).read_text())

    # np.ndarray is a hint MLflow infers no schema from: another would override the signature
    # (and none at all is warned about whenever this module is imported).
    def predict(
        self, context: Any, model_input: np.ndarray, params: dict | None = None
    ) -> pd.DataFrame:
        try:
            inputs = to_model_input(model_input, self.meta)
        except PipelineError as exc:
            raise BadInput(f"bad input: {exc}") from None
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
    """The output columns only. An input schema would make MLflow refuse what predict()
    converts (uint8 pixels, int or float32 series, colour for a grey model: its tensor check
    wants one dtype and one rank) and answer a wrong shape with the whole input quoted back;
    predict() checks the input itself, in one line."""
    outputs = [ColSpec("string", "label")] + [
        ColSpec("double", f"prob_{c}") for c in meta["classes"]
    ]
    return ModelSignature(outputs=Schema(outputs))


def pinned_requirements() -> list[str]:
    """The running environment's exact versions of what the model needs to load and predict."""
    return [f"{name}=={version(name)}" for name in REQUIREMENTS]


def log_pyfunc(
    name: str, model_dir: Path, meta_file: Path, input_example: np.ndarray, step: int
) -> Any:
    """Log the pyfunc model, named `name`, into the active MLflow run at `step`; returns
    MLflow's ModelInfo."""
    meta = json.loads(meta_file.read_text())
    root = Path(__file__).resolve().parent.parent
    return mlflow.pyfunc.log_model(
        name=name,
        step=step,
        python_model=str(CODE_FILE),
        artifacts={"model": str(model_dir), "meta": str(meta_file)},
        code_paths=[str(root / "stages"), str(root / "lightning_modules")],
        signature=signature(meta),
        input_example=input_example,
        pip_requirements=pinned_requirements(),
    )
