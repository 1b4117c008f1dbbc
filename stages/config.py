"""`params.yaml`, parsed once into strict typed models.

Unknown keys, wrong types and out-of-range values are errors that name the key path and
what is allowed. Each stage receives only its section.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, Strict, ValidationError, model_validator

from stages.errors import PipelineError
from stages.model_config import ModelConfig
from stages.section import FilePath, Section
from stages.tune_config import TuneConfig, check_space

PARAMS_FILE = Path("params.yaml")
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class Paths(Section):
    """Where each stage writes. Each folder is owned by one stage: no two may be the same or
    nested (a checkpoints folder inside models would delete the trained model)."""

    raw: FilePath = Path("data/raw")
    prepared: FilePath = Path("data/prepared")
    models: FilePath = Path("models")
    metrics: FilePath = Path("metrics")
    checkpoints: FilePath = Path("checkpoints")

    @model_validator(mode="after")
    def _disjoint(self) -> Paths:
        folders = self.model_dump()
        for a, b in itertools.combinations(folders, 2):
            if _nested(folders[a], folders[b]):
                raise ValueError(
                    f"paths.{a} ('{folders[a]}') and paths.{b} ('{folders[b]}') overlap: "
                    "each stage needs a folder of its own"
                )
        return self


def _nested(a: Path, b: Path) -> bool:
    """Whether one folder is, or lies inside, the other (compared as normalised paths)."""
    a, b = Path(os.path.normpath(a)), Path(os.path.normpath(b))
    return a == b or a in b.parents or b in a.parents


class ImageSpec(Section):
    """What every image becomes: height × width pixels with 1 (grey) or 3 (RGB) channels."""

    size: Annotated[
        tuple[Annotated[int, Field(ge=8, le=1024)], Annotated[int, Field(ge=8, le=1024)]],
        Strict(False),  # a YAML list; its items stay strict ints
    ]
    channels: Literal[1, 3] = 1
    # A file with more pixels is refused (a decompression bomb). The default is PIL's own
    # Image.MAX_IMAGE_PIXELS; PIL refuses more than twice that whatever is allowed here.
    max_pixels: Annotated[int, Field(ge=1, le=2 * 89_478_485)] = 89_478_485


class SequenceSpec(Section):
    """Expected channel count of every series (None accepts whatever the train file has), and
    the normalisation: `series` gives the model each series' shape, z-normalised per channel
    over its own steps, and its level and scale as channels of their own; `dataset` scales each
    channel by the train split's mean and deviation alone. Either way the train split's
    statistics come last. `series` is the default: chosen by cross-validation over the
    sequence suite (BENCHMARKS.md), where series of very different amplitudes (PLAID) defeat
    `dataset`."""

    channels: Annotated[int, Field(ge=1)] | None = None
    normalize: Literal["series", "dataset"] = "series"


class SplitSpec(Section):
    """Stratified, seeded splits. `test` is for sources without their own test split."""

    val: Fraction = 0.15
    test: Fraction | None = None
    seed: int = 0


SOURCE_PATTERN = re.compile(r"^(sklearn:digits|sktime:[A-Za-z0-9_]+|folder|ts)$")


class DatasetConfig(Section):
    """One dataset: where it comes from (`source`), where its raw files live (`path`)."""

    source: Annotated[
        str,
        Field(
            pattern=SOURCE_PATTERN.pattern,
            description="sklearn:digits | sktime:<Name> | folder | ts",
        ),
    ]
    path: FilePath
    image: ImageSpec | None = None
    sequence: SequenceSpec | None = None
    split: SplitSpec = SplitSpec()

    @property
    def kind(self) -> Literal["image", "sequence"]:
        return "image" if self.source in ("sklearn:digits", "folder") else "sequence"

    @property
    def builtin(self) -> bool:
        return self.source not in ("folder", "ts")

    @model_validator(mode="after")
    def _sections_match_kind(self) -> DatasetConfig:
        if self.kind == "image":
            if self.image is None:
                raise ValueError("image datasets need an `image` section (size, channels)")
            if self.sequence is not None:
                raise ValueError("`sequence` is for sequence datasets; this source gives images")
            if self.split.test is None:
                raise ValueError("split.test is required: an image folder has no test split")
        else:
            if self.image is not None:
                raise ValueError("`image` is for image datasets; this source gives sequences")
            if self.split.test is not None:
                raise ValueError(
                    "split.test is not allowed: a .ts archive's own TEST file is the test split"
                )
        return self


class TrainerConfig(Section):
    """Lightning Trainer settings shared by every model (defaults: a GPU when present)."""

    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    num_nodes: Annotated[int, Field(ge=1)] = 1
    strategy: Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true"] = "auto"
    # null: bf16-mixed on CUDA, 32-true on CPU.
    precision: Literal["32-true", "16-mixed", "bf16-mixed", "64-true"] | None = None
    deterministic: bool = True
    seed: int = 0
    patience: Annotated[int, Field(ge=1)] = 10
    # A validation split smaller than this cannot pick an epoch (one series moves accuracy by
    # more than a point): below it, every model trains its whole schedule and keeps the last
    # weights, with validation still logged. 0: always early stopping and the best epoch.
    min_val_for_selection: Annotated[int, Field(ge=0)] = 100


class MlflowConfig(Section):
    """`tracking_uri: null` means MLFLOW_TRACKING_URI, else `sqlite:///<repo>/mlflow.db`.

    A tracking server that does not answer is retried `retries` times, waiting
    backoff_seconds × 2^k between tries.
    """

    tracking_uri: str | None = None
    # Whole seconds: MLflow reads its MLFLOW_HTTP_REQUEST_* settings as integers.
    retries: Annotated[int, Field(ge=0, le=10)] = 4
    backoff_seconds: Annotated[int, Field(ge=0, le=120)] = 1
    timeout_seconds: Annotated[int, Field(ge=1)] = 10


class RegisterConfig(Section):
    """Champion/challenger: the newest version replaces the champion when it beats it, and the
    best baseline, on the same test set by at least `min_delta` of `metric`."""

    metric: Literal["test_accuracy", "test_macro_f1"] = "test_accuracy"
    min_delta: Annotated[float, Field(ge=0.0, le=1.0)] = 0.002
    # A model that does not beat the best simple baseline (majority class, 1-NN) by min_delta
    # is never promoted.
    beat_baselines: bool = True


class ScheduleConfig(Section):
    cron: str = "0 3 * * *"
    timezone: str = "UTC"


class FlowConfig(Section):
    """The Prefect flow over the DVC stages (flows/train_pipeline.py) and its schedule."""

    max_parallel: Annotated[int, Field(ge=1, le=64)] = 2
    # A training already uses every core (or the GPU); two at once on the same cores only slow
    # each other down, and capping their threads instead would change their float results.
    max_parallel_train: Annotated[int, Field(ge=1, le=64)] = 1
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_backoff_seconds: Annotated[float, Field(ge=0.0)] = 5.0
    schedule: ScheduleConfig = ScheduleConfig()


class Params(Section):
    paths: Paths = Paths()
    datasets: dict[Annotated[str, Field(pattern=NAME_PATTERN)], DatasetConfig]
    models: dict[Annotated[str, Field(pattern=NAME_PATTERN)], ModelConfig] = {}
    trainer: TrainerConfig = TrainerConfig()
    mlflow: MlflowConfig = MlflowConfig()
    # `register` would shadow pydantic's ABC `register` method; the YAML key stays `register`.
    registry: RegisterConfig = Field(default=RegisterConfig(), alias="register")
    flow: FlowConfig = FlowConfig()
    # Optuna searches, one per model (`python -m flows.tune <model>`); no stage reads them.
    tune: dict[str, TuneConfig] = {}

    @model_validator(mode="after")
    def _spaces_fit_models(self) -> Params:
        for name, tune in self.tune.items():
            if name not in self.models:
                known = ", ".join(sorted(self.models)) or "none"
                raise ValueError(f"tune.{name}: unknown model '{name}'; known: {known}")
            check_space(name, self.models[name], tune)
        return self

    @model_validator(mode="after")
    def _models_fit_datasets(self) -> Params:
        for name, model in self.models.items():
            if model.dataset not in self.datasets:
                known = ", ".join(sorted(self.datasets))
                raise ValueError(
                    f"models.{name}.dataset: unknown dataset '{model.dataset}'; known: {known}"
                )
            kind = self.datasets[model.dataset].kind
            if kind != model.kind:
                raise ValueError(
                    f"models.{name}: arch '{model.arch}' takes {model.kind}s, but dataset "
                    f"'{model.dataset}' holds {kind}s"
                )
        return self

    @model_validator(mode="after")
    def _builtin_paths(self) -> Params:
        for name, ds in self.datasets.items():
            expected = self.paths.raw / name
            if ds.builtin and ds.path != expected:
                raise ValueError(
                    f"datasets.{name}.path: a built-in source is written by ingest to "
                    f"'{expected}' (paths.raw/<dataset>); got '{ds.path}'"
                )
            if ds.builtin:
                continue
            if _nested(ds.path, expected):
                raise ValueError(
                    f"datasets.{name}.path: your own data must live outside '{expected}', "
                    f"which ingest owns; got '{ds.path}'"
                )
            for key, folder in self.paths.model_dump().items():
                if key != "raw" and _nested(ds.path, folder):
                    raise ValueError(
                        f"datasets.{name}.path: '{ds.path}' overlaps paths.{key} "
                        f"('{folder}'), which a stage writes"
                    )
        return self

    def model(self, name: str) -> ModelConfig:
        if name not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise PipelineError(f"unknown model '{name}' in {PARAMS_FILE}; known: {known}")
        return self.models[name]

    def dataset(self, name: str) -> DatasetConfig:
        if name not in self.datasets:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise PipelineError(f"unknown dataset '{name}' in {PARAMS_FILE}; known: {known}")
        return self.datasets[name]


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Parse and validate `path`; every problem becomes one PipelineError naming its key path."""
    return parse_params(read_raw_params(path), source=str(path))


def read_raw_params(path: Path) -> Any:
    """`path`'s YAML, unvalidated; a missing file or bad YAML is a PipelineError naming it."""
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {exc}") from None


def parse_params(raw: Any, source: str = str(PARAMS_FILE)) -> Params:
    if not isinstance(raw, dict):
        raise PipelineError(f"{source}: expected a mapping at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(err) for err in exc.errors()]
        raise PipelineError(f"{source}: invalid params:\n  " + "\n  ".join(lines)) from None


def _describe(err: Any) -> str:
    loc = [str(part) for part in err["loc"]]
    key = ".".join(loc)
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(err["loc"][:-1]))
        return f"{key}: unknown key; allowed here: {allowed}"
    msg = err["msg"].removeprefix("Value error, ")
    if not key:  # a check across sections: its message names the keys itself
        return msg
    if err["type"] == "string_pattern_mismatch" and loc and loc[-1] == "source":
        msg = "unknown source; allowed: sklearn:digits, sktime:<Name>, folder, ts"
    if isinstance(err.get("input"), dict):  # a whole section: repeating it only adds noise
        return f"{key}: {msg}"
    return f"{key}: {msg} (got {err.get('input')!r})"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model at `loc`, walking Params' annotations (dict keys are names)."""
    annotation: Any = Params
    for part in loc:
        if get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
            continue
        model = _model_in(annotation)
        fields = {f.alias or n: f for n, f in model.model_fields.items()} if model else {}
        if part not in fields:
            return []
        annotation = fields[part].annotation
    model = _model_in(annotation)
    return sorted(f.alias or n for n, f in model.model_fields.items()) if model else []


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside `annotation` (itself, or an arm of an Optional/Union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
