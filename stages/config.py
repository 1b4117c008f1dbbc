"""`params.yaml`, parsed once into strict typed models.

Unknown keys, wrong types and out-of-range values are errors that name the key path and
what is allowed. Each stage receives only its section.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stages.errors import PipelineError

PARAMS_FILE = Path("params.yaml")
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Paths(Strict):
    raw: Path = Path("data/raw")
    prepared: Path = Path("data/prepared")
    models: Path = Path("models")
    metrics: Path = Path("metrics")
    checkpoints: Path = Path("checkpoints")


class ImageSpec(Strict):
    """What every image becomes: height × width pixels with 1 (grey) or 3 (RGB) channels."""

    size: tuple[Annotated[int, Field(ge=8, le=1024)], Annotated[int, Field(ge=8, le=1024)]]
    channels: Literal[1, 3] = 1


class SequenceSpec(Strict):
    """Expected channel count of every series; None accepts whatever the train file has."""

    channels: Annotated[int, Field(ge=1)] | None = None


class SplitSpec(Strict):
    """Stratified, seeded splits. `test` is for sources without their own test split."""

    val: Fraction = 0.15
    test: Fraction | None = None
    seed: int = 0


SOURCE_PATTERN = re.compile(r"^(sklearn:digits|sktime:[A-Za-z0-9_]+|folder|ts)$")


class DatasetConfig(Strict):
    """One dataset: where it comes from (`source`), where its raw files live (`path`)."""

    source: Annotated[
        str,
        Field(
            pattern=SOURCE_PATTERN.pattern,
            description="sklearn:digits | sktime:<Name> | folder | ts",
        ),
    ]
    path: Path
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


class CNNSpec(Strict):
    channels: list[Annotated[int, Field(ge=1)]] = Field(default=[32, 64], min_length=1)
    kernel_size: Annotated[int, Field(ge=1, le=11)] = 3
    hidden: Annotated[int, Field(ge=1)] = 128
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.25
    batch_norm: bool = True


class RNNSpec(Strict):
    hidden_size: Annotated[int, Field(ge=1)] = 64
    num_layers: Annotated[int, Field(ge=1, le=8)] = 1
    bidirectional: bool = False
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    pooling: Literal["last", "mean"] = "last"


class ModelConfig(Strict):
    """One trained model: its architecture, the dataset it learns, and how it is optimised."""

    dataset: str
    arch: Literal["cnn", "rnn", "lstm", "gru"]
    cnn: CNNSpec | None = None
    rnn: RNNSpec | None = None
    batch_size: Annotated[int, Field(ge=1)] = 64
    max_epochs: Annotated[int, Field(ge=1)] = 30
    lr: Annotated[float, Field(gt=0.0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    scheduler: Literal["none", "cosine", "onecycle"] = "none"
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0

    @property
    def kind(self) -> Literal["image", "sequence"]:
        return "image" if self.arch == "cnn" else "sequence"

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the network (lightning_modules.registry)."""
        if self.arch == "cnn":
            spec = self.cnn or CNNSpec()
            return spec.model_dump() | {"channels": tuple(spec.channels)}
        return (self.rnn or RNNSpec()).model_dump()

    @model_validator(mode="after")
    def _section_matches_arch(self) -> ModelConfig:
        wrong = "rnn" if self.arch == "cnn" else "cnn"
        if getattr(self, wrong) is not None:
            raise ValueError(f"`{wrong}` settings do not apply to arch '{self.arch}'")
        return self


class TrainerConfig(Strict):
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


class MlflowConfig(Strict):
    """`tracking_uri: null` means MLFLOW_TRACKING_URI, else `sqlite:///<repo>/mlflow.db`.

    A tracking server that does not answer is retried `retries` times, waiting
    backoff_seconds × 2^k between tries.
    """

    tracking_uri: str | None = None
    retries: Annotated[int, Field(ge=0, le=10)] = 4
    backoff_seconds: Annotated[float, Field(ge=0.0)] = 1.0
    timeout_seconds: Annotated[float, Field(gt=0.0)] = 10.0


class RegisterConfig(Strict):
    """Champion/challenger: the newest version replaces the champion when it beats it on the
    same test set by at least `min_delta` of `metric`."""

    metric: Literal["test_accuracy", "test_macro_f1"] = "test_accuracy"
    min_delta: Annotated[float, Field(ge=0.0, le=1.0)] = 0.002


class ScheduleConfig(Strict):
    cron: str = "0 3 * * *"
    timezone: str = "UTC"


class FlowConfig(Strict):
    """The Prefect flow over the DVC stages (flows/pipeline.py) and its schedule."""

    max_parallel: Annotated[int, Field(ge=1, le=64)] = 2
    # A training already uses every core (or the GPU); two at once on the same cores only slow
    # each other down, and capping their threads instead would change their float results.
    max_parallel_train: Annotated[int, Field(ge=1, le=64)] = 1
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_backoff_seconds: Annotated[float, Field(ge=0.0)] = 5.0
    schedule: ScheduleConfig = ScheduleConfig()


class Params(Strict):
    paths: Paths = Paths()
    datasets: dict[Annotated[str, Field(pattern=NAME_PATTERN)], DatasetConfig]
    models: dict[Annotated[str, Field(pattern=NAME_PATTERN)], ModelConfig] = {}
    trainer: TrainerConfig = TrainerConfig()
    mlflow: MlflowConfig = MlflowConfig()
    # `register` would shadow pydantic's ABC `register` method; the YAML key stays `register`.
    registry: RegisterConfig = Field(default=RegisterConfig(), alias="register")
    flow: FlowConfig = FlowConfig()

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
            overlaps = ds.path == expected or expected in ds.path.parents
            if not ds.builtin and (overlaps or ds.path in expected.parents):
                raise ValueError(
                    f"datasets.{name}.path: your own data must live outside '{expected}', "
                    f"which ingest owns; got '{ds.path}'"
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
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, source=str(path))


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
