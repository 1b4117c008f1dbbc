"""Batch prediction with a dataset's champion.

    python -m flows.predict <dataset> <input> <out.csv>

The input is a folder of images (any size, grey or colour), a `.ts` file (labels optional) or a
`.npy` array in the raw form the model takes. The CSV has one row per input: `input` (the file,
series or row), `label`, and `prob_<class>` per class. Input of the wrong shape or type is an
error that names the file; nothing is written then.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from PIL import Image, UnidentifiedImageError
from prefect import flow, get_run_logger, task

from flows.pipeline import ROOT
from stages.atomic import atomic_file
from stages.config import load_params
from stages.errors import PipelineError
from stages.images import IMAGE_SUFFIXES
from stages.register import registered_name
from stages.tracking import connect, tracking_uri
from stages.tsfile import read_ts


@task
def predict_file(model_uri: str, kind: str, source: Path) -> pd.DataFrame:
    """Predictions for every input in `source` with the pyfunc model at `model_uri`."""
    model = mlflow.pyfunc.load_model(model_uri)
    grey = len(model.metadata.get_input_schema().inputs[0].shape) == 3
    if source.is_dir():
        if kind != "image":
            raise PipelineError(f"{source}: a folder of images, but the model takes sequences")
        return _predict_images(model, source, grey)
    if source.suffix == ".ts":
        if kind != "sequence":
            raise PipelineError(f"{source}: a .ts file, but the model takes images")
        series = read_ts(source, labelled=False).series
        raw = np.full((len(series), max(len(s) for s in series), series[0].shape[1]), np.nan)
        for i, s in enumerate(series):
            raw[i, : len(s)] = s
        return _predict(model, source, raw, [f"series_{i}" for i in range(len(series))])
    if source.suffix == ".npy":
        try:
            raw = np.load(source, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise PipelineError(f"{source}: not a readable .npy array: {exc}") from None
        return _predict(model, source, raw, [f"row_{i}" for i in range(len(raw))])
    if not source.exists():
        raise PipelineError(f"{source}: no such file or folder")
    raise PipelineError(f"{source}: expected a folder of images, a .ts file or a .npy array")


def _predict_images(model, folder: Path, grey: bool) -> pd.DataFrame:  # noqa: ANN001
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PipelineError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    groups: dict[tuple, list[tuple[str, np.ndarray]]] = {}
    for f in files:  # one batch per image size: the model takes one shape per call
        try:
            with Image.open(f) as img:
                pixels = np.asarray(img.convert("L" if grey else "RGB"), dtype=np.float64)
        except (OSError, UnidentifiedImageError) as exc:
            raise PipelineError(f"{f}: unreadable image: {exc}") from None
        groups.setdefault(pixels.shape, []).append((f.relative_to(folder).as_posix(), pixels))
    frames = [
        _predict(model, folder, np.stack([p for _, p in group]), [n for n, _ in group])
        for group in groups.values()
    ]
    return pd.concat(frames).sort_values("input", kind="stable").reset_index(drop=True)


def _predict(model, source: Path, raw: np.ndarray, names: list[str]) -> pd.DataFrame:  # noqa: ANN001
    try:
        frame = model.predict(raw)
    except MlflowException as exc:
        # MLflow's schema errors quote the whole input before the reason: keep the reason.
        raise PipelineError(f"{source}: {exc.message.rsplit('Error: ', 1)[-1]}") from None
    frame.insert(0, "input", names)
    return frame


@flow(name="batch-predict")
def predict(dataset: str, input_path: str, output_path: str) -> int:
    """Write the champion's predictions for `input_path` to the CSV `output_path`."""
    params = load_params(ROOT / "params.yaml")
    kind = params.dataset(dataset).kind
    uri = tracking_uri(params.mlflow.tracking_uri, ROOT)
    connect(uri, params.mlflow)
    mlflow.set_tracking_uri(uri)
    model_uri = f"models:/{registered_name(dataset)}@champion"
    frame = predict_file(model_uri, kind, Path(input_path))
    out = Path(output_path)
    with atomic_file(out) as tmp:
        frame.to_csv(tmp, index=False)
    get_run_logger().info(f"{len(frame)} predictions of {model_uri} → {out}")
    return len(frame)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Batch prediction with a dataset's champion.")
    parser.add_argument("dataset")
    parser.add_argument("input", help="a folder of images, a .ts file or a .npy array")
    parser.add_argument("output", help="the CSV to write")
    args = parser.parse_args(argv)
    try:
        predict(args.dataset, args.input, args.output)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
