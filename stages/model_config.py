"""A model's params: its architecture's settings, augmentation, and how it is optimised."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from stages.section import Section


class CNNSpec(Section):
    channels: list[Annotated[int, Field(ge=1)]] = Field(default=[32, 64], min_length=1)
    kernel_size: Annotated[int, Field(ge=1, le=11)] = 3
    hidden: Annotated[int, Field(ge=1)] = 128
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.25
    batch_norm: bool = True


class RNNSpec(Section):
    hidden_size: Annotated[int, Field(ge=1)] = 64
    num_layers: Annotated[int, Field(ge=1, le=8)] = 1
    bidirectional: bool = False
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    pooling: Literal["last", "mean"] = "last"
    # The convolutional front-end (lightning_modules/rnn.py, as LSTM-FCN): `frontend` channels
    # of convolution before the recurrent layer (0: none), and series shortened by a masked
    # mean over windows to at most `max_steps` steps (0: never shortened).
    frontend: Annotated[int, Field(ge=0, le=1024)] = 0
    frontend_kernel: Annotated[int, Field(ge=1, le=64)] = 8
    max_steps: Annotated[int, Field(ge=0)] = 0


class FCNSpec(Section):
    """Wang et al. 2017's FCN: one convolution block per entry (defaults: the paper's)."""

    channels: list[Annotated[int, Field(ge=1, le=1024)]] = Field(
        default=[128, 256, 128], min_length=1, max_length=8
    )
    kernel_sizes: list[Annotated[int, Field(ge=1, le=64)]] = Field(
        default=[8, 5, 3], min_length=1, max_length=8
    )
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0

    @model_validator(mode="after")
    def _one_kernel_per_block(self) -> FCNSpec:
        if len(self.channels) != len(self.kernel_sizes):
            raise ValueError(
                f"channels and kernel_sizes need one entry per block; got {len(self.channels)} "
                f"and {len(self.kernel_sizes)}"
            )
        return self


class ResNetSpec(Section):
    """Wang et al. 2017's ResNet: a residual block per entry of `channels`, each with one
    convolution per entry of `kernel_sizes` (defaults: the paper's)."""

    channels: list[Annotated[int, Field(ge=1, le=1024)]] = Field(
        default=[64, 128, 128], min_length=1, max_length=8
    )
    kernel_sizes: list[Annotated[int, Field(ge=1, le=64)]] = Field(
        default=[8, 5, 3], min_length=1, max_length=8
    )


class InceptionSpec(Section):
    """InceptionTime (Ismail Fawaz et al. 2020); defaults: the paper's."""

    depth: Annotated[int, Field(ge=1, le=12)] = 6
    filters: Annotated[int, Field(ge=1, le=256)] = 32  # per branch; a module outputs 4×
    # The largest kernel; the others are 1/2 and 1/4 of it (made odd), so at least 4.
    kernel_size: Annotated[int, Field(ge=4, le=128)] = 40
    bottleneck: Annotated[int, Field(ge=0, le=256)] = 32  # 0: no bottleneck
    residual: bool = True


class AugmentSpec(Section):
    """Random changes of the training inputs (lightning_modules/augment.py, on the training
    device, drawn from the seeded torch generator): validation, test and serving see the
    inputs unchanged. Images take the affine keys, series the others; all zeros (the
    default) is no augmentation."""

    # Images: a random affine transform with kornia.
    rotate: Annotated[float, Field(ge=0.0, le=180.0)] = 0.0  # degrees either way
    translate: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.0  # a fraction of height and width
    scale: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0  # zoom by a factor in [1-s, 1+s]
    hflip: bool = False  # mirror half the images (never for digits or text)
    # Series: a random window of each series stretched to its length, amplitude, noise.
    crop: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0  # the window keeps a fraction in [1-c, 1]
    magnitude: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0  # each channel × 1 + m · N(0, 1)
    jitter: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0  # noise std, in normalised units

    def settings(self, kind: Literal["image", "sequence"]) -> dict[str, Any]:
        """The settings of one kind of input (the keyword arguments of its transform)."""
        return {name: getattr(self, name) for name in AUGMENT_KEYS[kind]}


AUGMENT_KEYS = {
    "image": ("rotate", "translate", "scale", "hflip"),
    "sequence": ("crop", "magnitude", "jitter"),
}


# The settings section each arch reads; any other section given is an error.
ARCH_SECTIONS = {
    "cnn": "cnn",
    "rnn": "rnn",
    "lstm": "rnn",
    "gru": "rnn",
    "fcn": "fcn",
    "resnet": "resnet",
    "inception": "inception",
}
SECTION_SPECS: dict[str, type[Section]] = {
    "cnn": CNNSpec,
    "rnn": RNNSpec,
    "fcn": FCNSpec,
    "resnet": ResNetSpec,
    "inception": InceptionSpec,
}


class ModelConfig(Section):
    """One trained model: its architecture, the dataset it learns, and how it is optimised."""

    dataset: str
    arch: Literal["cnn", "rnn", "lstm", "gru", "fcn", "resnet", "inception"]
    cnn: CNNSpec | None = None
    rnn: RNNSpec | None = None
    fcn: FCNSpec | None = None
    resnet: ResNetSpec | None = None
    inception: InceptionSpec | None = None
    augment: AugmentSpec | None = None
    batch_size: Annotated[int, Field(ge=1)] = 64
    max_epochs: Annotated[int, Field(ge=1)] = 30
    lr: Annotated[float, Field(gt=0.0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    scheduler: Literal["none", "cosine", "onecycle"] = "none"
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    # Training length sized by the data: at least this many optimiser steps, so a small
    # training split (one batch per epoch) still gets a whole schedule; the epochs are
    # max(max_epochs, ceil(min_steps / batches per epoch)).
    min_steps: Annotated[int, Field(ge=0)] = 0
    # Lightning's gradient_clip_val (clipping of the gradients' global norm); null: none.
    gradient_clip: Annotated[float, Field(gt=0.0)] | None = None

    @property
    def kind(self) -> Literal["image", "sequence"]:
        return "image" if self.arch == "cnn" else "sequence"

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the network (lightning_modules.registry); lists become
        the tuples the constructors take."""
        section = ARCH_SECTIONS[self.arch]
        spec = getattr(self, section) or SECTION_SPECS[section]()
        return {k: tuple(v) if isinstance(v, list) else v for k, v in spec.model_dump().items()}

    @model_validator(mode="after")
    def _section_matches_arch(self) -> ModelConfig:
        for section in SECTION_SPECS:
            if section != ARCH_SECTIONS[self.arch] and getattr(self, section) is not None:
                raise ValueError(f"`{section}` settings do not apply to arch '{self.arch}'")
        if self.augment is not None:
            other = "sequence" if self.kind == "image" else "image"
            wrong = [key for key in AUGMENT_KEYS[other] if getattr(self.augment, key)]
            if wrong:
                raise ValueError(
                    f"augment.{wrong[0]} is for {other}s; arch '{self.arch}' reads "
                    f"{self.kind}s (its augment keys: {', '.join(AUGMENT_KEYS[self.kind])})"
                )
        return self
