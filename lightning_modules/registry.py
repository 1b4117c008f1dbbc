"""Model name → constructor, with the kind of input each takes (timm's `create_model` idea)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from torch import nn

from lightning_modules.cnn import CNN
from lightning_modules.rnn import RecurrentClassifier
from lightning_modules.sequence_cnn import FCN, InceptionTime, ResNet


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., nn.Module]
    kind: Literal["image", "sequence"]


MODELS: dict[str, ModelSpec] = {
    "cnn": ModelSpec(CNN, "image"),
    "rnn": ModelSpec(partial(RecurrentClassifier, cell="rnn"), "sequence"),
    "lstm": ModelSpec(partial(RecurrentClassifier, cell="lstm"), "sequence"),
    "gru": ModelSpec(partial(RecurrentClassifier, cell="gru"), "sequence"),
    "fcn": ModelSpec(FCN, "sequence"),
    "resnet": ModelSpec(ResNet, "sequence"),
    "inception": ModelSpec(InceptionTime, "sequence"),
}


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise KeyError(f"unknown model '{name}'; known: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def create_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, **kwargs: Any
) -> nn.Module:
    return model_spec(name).build(input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)
