"""Batch prediction with a dataset's champion.

    python -m flows.predict <dataset> <input> <out.csv>

The input is a folder of images (any size, grey or colour, 8 or 16 bits; hidden and OS files
skipped), a `.ts` file (labels optional) or a `.npy` array in the raw form the model takes.
The CSV has one row per input: `input` (the file, series or row), `label`, and `prob_<class>`
per class. Input of the wrong shape or type is an error that names the file; nothing is
written then. An unknown dataset, or one without a champion, is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from prefect import flow, get_run_logger, task

from flows.temporary_server import prefect_api
from stages.atomic import atomic_file
from stages.config import DatasetConfig, ImageSpec, Params, load_params
from stages.errors import BAD_INPUT_EXIT, TRANSIENT_EXIT, PipelineError, TransientError
from stages.files import visible_files
from stages.images import IMAGE_SUFFIXES, load_image
from stages.preprocess import MAX_INPUT_VALUES
from stages.register import CHAMPION, registered_name
from stages.tracking import connect, redact, tracking_uri
from stages.tsfile import read_ts

ROOT = Path(__file__).resolve().parent.parent


@task
def predict_file(model_uri: str, ds: DatasetConfig, source: Path) -> pd.DataFrame:
    """Predictions for every input in `source` with the pyfunc model at `model_uri`."""
    model = mlflow.pyfunc.load_model(model_uri)
    if source.is_dir():
        if ds.image is None:
            raise PipelineError(f"{source}: a folder of images, but the model takes sequences")
        return _predict_images(model, source, ds.image)
    if source.suffix == ".ts":
        if ds.kind != "sequence":
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
        if raw.ndim == 0:
            raise PipelineError(f"{source}: a single value; expected an array of inputs")
        return _predict(model, source, raw, [f"row_{i}" for i in range(len(raw))])
    if not source.exists():
        raise PipelineError(f"{source}: no such file or folder")
    raise PipelineError(f"{source}: expected a folder of images, a .ts file or a .npy array")


def _predict_images(model, folder: Path, image: ImageSpec) -> pd.DataFrame:  # noqa: ANN001
    files = [f for f in visible_files(folder) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise PipelineError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    # Each file is decoded as prepare decoded the training images (16-bit scaled, more than
    # image.max_pixels refused, the file named), to the size and channels the model takes.
    channels, height, width = model.unwrap_python_model().meta["input_shape"]
    spec = image.model_copy(update={"size": (height, width), "channels": channels})
    pixels = np.stack([load_image(f, spec) for f in files])
    # float64, grey as (N, H, W): what champions logged before models took uint8 accept too.
    raw = (pixels[..., 0] if channels == 1 else pixels).astype(np.float64)
    return _predict(model, folder, raw, [f.relative_to(folder).as_posix() for f in files])


def _predict(model, source: Path, raw: np.ndarray, names: list[str]) -> pd.DataFrame:  # noqa: ANN001
    # One call takes at most MAX_INPUT_VALUES numbers: send the rows in parts below that.
    rows = max(1, MAX_INPUT_VALUES // max(1, int(np.prod(raw.shape[1:]))))
    frames = []
    for start in range(0, len(raw), rows):
        try:
            frames.append(model.predict(raw[start : start + rows]))
        except MlflowException as exc:
            raise PipelineError(f"{source}: {exc.message.removeprefix('bad input: ')}") from None
    frame = pd.concat(frames, ignore_index=True)
    frame.insert(0, "input", names)
    return frame


def champion_uri(dataset: str, params: Params) -> str:
    """The model URI of `dataset`'s champion; an unknown dataset or none registered is a
    PipelineError, an MLflow server that does not answer a TransientError."""
    params.dataset(dataset)
    uri = tracking_uri(params.mlflow.tracking_uri, ROOT)
    name = registered_name(dataset)
    store = Path(uri.removeprefix("sqlite:///"))
    if uri.startswith("sqlite:///") and not store.is_file():  # MLflow would create it, empty
        raise PipelineError(f"dataset '{dataset}' has no champion: {store} does not exist")
    client = connect(uri, params.mlflow)
    try:
        client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise PipelineError(
            f"dataset '{dataset}' has no champion in {redact(uri)} ({name}@{CHAMPION}); "
            "run the pipeline first (make run)"
        ) from None
    return f"models:/{name}@{CHAMPION}"


@flow(name="batch-predict")
def predict(dataset: str, input_path: str, output_path: str) -> int:
    """Write the champion's predictions for `input_path` to the CSV `output_path`."""
    params = load_params(ROOT / "params.yaml")
    model_uri = champion_uri(dataset, params)
    mlflow.set_tracking_uri(tracking_uri(params.mlflow.tracking_uri, ROOT))
    frame = predict_file(model_uri, params.dataset(dataset), Path(input_path))
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
        # Checked before the flow starts too: inside it, Prefect would log each of these
        # errors with a traceback of hundreds of lines.
        champion_uri(args.dataset, load_params(ROOT / "params.yaml"))
        with prefect_api():
            predict(args.dataset, args.input, args.output)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(TRANSIENT_EXIT if isinstance(exc, TransientError) else BAD_INPUT_EXIT)


if __name__ == "__main__":
    main()
