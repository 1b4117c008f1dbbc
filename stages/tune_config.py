"""`tune.<model>`: the search space of a model's hyper-parameters (flows/tune.py runs it).

Each key of `space` is a path into `models.<model>` (`lr`, `rnn.hidden_size`); its values are
checked by the model's own params models before any trial runs, so a range the model refuses
is an error naming both keys.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from stages.model_config import ARCH_SECTIONS, AUGMENT_KEYS, SECTION_SPECS, ModelConfig
from stages.section import Section

Scalar = bool | int | float | str
Bounds = Annotated[list[int | float], Field(min_length=2, max_length=2)]
IntBounds = Annotated[list[int], Field(min_length=2, max_length=2)]


class Distribution(Section):
    """Exactly one of: `uniform: [low, high]`, `log_uniform: [low, high]` (floats),
    `int: [low, high]`, `log_int: [low, high]` (integers, both ends included), or
    `choice: [a, b, ...]`."""

    uniform: Bounds | None = None
    log_uniform: Bounds | None = None
    int_: IntBounds | None = Field(default=None, alias="int")
    log_int: IntBounds | None = None
    choice: Annotated[list[Scalar], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        given = [name for name, value in self.items() if value is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of uniform, log_uniform, int, log_int, choice; got "
                + (", ".join(given) or "none")
            )
        kind, value = self.kind, self.values
        if kind != "choice":
            low, high = value
            if not low < high:
                raise ValueError(f"{kind}: low must be below high; got [{low}, {high}]")
            if kind.startswith("log") and low <= 0:
                raise ValueError(f"{kind}: a log scale needs low > 0; got {low}")
        return self

    def items(self) -> list[tuple[str, Any]]:
        return [(f.alias or n, getattr(self, n)) for n, f in type(self).model_fields.items()]

    @property
    def kind(self) -> str:
        return next(name for name, value in self.items() if value is not None)

    @property
    def values(self) -> list[Any]:
        return next(value for _, value in self.items() if value is not None)

    def contains(self, value: Any) -> bool:
        """Whether a trial of this distribution can take `value`."""
        if self.kind == "choice":
            return value in self.values
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind.endswith("int") and not isinstance(value, int):
            return False
        low, high = self.values
        return low <= value <= high

    def extremes(self) -> list[Any]:
        """The values a trial can reach at the edges: both bounds, or every choice."""
        if self.kind in ("uniform", "log_uniform"):
            return [float(v) for v in self.values]
        return list(self.values)


class TuneConfig(Section):
    """One model's search: `trials` trials of Optuna's TPE sampler over `space`, each scored
    by `metric` of its kept epoch (as the train stage keeps it) on the validation split, or
    averaged over `folds` folds of the training data (train and validation together): the
    test split is never read. Trials that fall behind the median of earlier trials at the
    same epoch are pruned."""

    trials: Annotated[int, Field(ge=1, le=10_000)] = 30
    metric: Literal["val_loss", "val_acc", "val_f1"] = "val_loss"
    folds: Annotated[int, Field(ge=1, le=10)] = 1
    space: Annotated[dict[str, Distribution], Field(min_length=1)]
    # null: $OPTUNA_STORAGE, else sqlite:///<repo>/optuna.db; any database URL Optuna takes,
    # so workers on several machines can share one study.
    storage: str | None = None
    prune: bool = True

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        return "minimize" if self.metric == "val_loss" else "maximize"


def with_values(model: ModelConfig, values: dict[str, Any]) -> ModelConfig:
    """`model` with each dotted key of `values` replaced, validated by the model's params."""
    raw = model.model_dump(exclude_none=True)
    for key, value in values.items():
        section, _, field = key.rpartition(".")
        target = raw
        if section:
            target = raw.setdefault(section, {})
        target[field] = value
    return ModelConfig.model_validate(raw)


def check_space(name: str, model: ModelConfig, tune: TuneConfig) -> None:
    """Every key of `tune.space` names a setting of `models.<name>`, and every edge of its
    range is a value that setting accepts; else a ValueError naming both."""
    allowed = settings(model)
    for key, dist in tune.space.items():
        where = f"tune.{name}.space.{key}"
        if key not in allowed:
            raise ValueError(
                f"{where}: not a setting of models.{name} (arch '{model.arch}'); allowed: "
                + ", ".join(allowed)
            )
        for value in dist.extremes():
            try:
                with_values(model, {key: value})
            except ValidationError as exc:
                reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
                raise ValueError(
                    f"{where}: models.{name}.{key} refuses {value!r} of {dist.kind} "
                    f"{dist.values}: {reason}"
                ) from None


def settings(model: ModelConfig) -> list[str]:
    """The settings a search can set: the model's own, its arch section's, and the
    augmentation's of its kind of input (the model's params models refuse a value of the
    wrong type)."""
    sections = {"dataset", "arch", "augment", *SECTION_SPECS}
    found = [name for name in ModelConfig.model_fields if name not in sections]
    section = ARCH_SECTIONS[model.arch]
    found += [f"{section}.{name}" for name in SECTION_SPECS[section].model_fields]
    return found + [f"augment.{name}" for name in AUGMENT_KEYS[model.kind]]
