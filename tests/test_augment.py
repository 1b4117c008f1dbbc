"""Training-time augmentation of images and series: its params, the transforms, and training
with them."""

import copy

import numpy as np
import pytest
import torch

from lightning_modules.augment import image_augmentation, series_augmentation
from lightning_modules.export import load_classifier
from stages.config import parse_params
from stages.errors import PipelineError
from stages.model_config import AugmentSpec
from stages.tune_config import settings
from tests.test_train import run_tiny, tiny_prepared


@pytest.mark.parametrize(
    ("model", "augment", "expected"),
    [
        (
            "lstm",
            {"rotate": 10},
            "models.lstm: augment.rotate is for images; arch 'lstm' reads sequences (its "
            "augment keys: crop, magnitude, jitter)",
        ),
        ("cnn", {"crop": 0.1}, "models.cnn: augment.crop is for sequences; arch 'cnn' reads"),
        ("lstm", {"crop": 1.0}, "models.lstm.augment.crop: Input should be less than 1"),
        ("gru", {"jitter": -0.1}, "models.gru.augment.jitter: Input should be greater than or"),
        ("cnn", {"rotate": -5}, "models.cnn.augment.rotate: Input should be greater than or"),
        ("cnn", {"translate": 0.5}, "models.cnn.augment.translate: Input should be less than 0.5"),
        ("cnn", {"scale": 1.0}, "models.cnn.augment.scale: Input should be less than 1"),
        ("cnn", {"hflip": "yes"}, "models.cnn.augment.hflip: Input should be a valid boolean"),
        ("cnn", {"shear": 3}, "models.cnn.augment.shear: unknown key; allowed here: crop, hflip,"),
    ],
)
def test_bad_augment_params_name_the_key(raw_params, model, augment, expected):
    raw = copy.deepcopy(raw_params)
    raw["models"][model]["augment"] = augment
    with pytest.raises(PipelineError) as info:
        parse_params(raw)
    assert expected in str(info.value)


def test_nothing_asked_is_no_transform():
    assert image_augmentation() is None
    assert image_augmentation(**AugmentSpec().settings("image")) is None
    assert series_augmentation(**AugmentSpec().settings("sequence")) is None


def test_a_search_may_set_the_augmentation_of_its_models_inputs(raw_params):
    params = parse_params(raw_params)
    assert "augment.rotate" in settings(params.models["cnn"])
    assert "augment.crop" not in settings(params.models["cnn"])
    assert {"augment.crop", "augment.magnitude", "augment.jitter"} <= set(
        settings(params.models["lstm"])
    )
    assert "augment.rotate" not in settings(params.models["lstm"])


def test_transform_moves_pixels_keeps_shape_and_repeats_the_border():
    augment = image_augmentation(rotate=15, translate=0.1, scale=0.1, hflip=True)
    images = torch.randn(16, 3, 28, 20, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    moved = augment(images)
    assert moved.shape == images.shape
    assert not torch.allclose(moved, images)
    torch.manual_seed(0)
    assert torch.equal(augment(images), moved)  # drawn from the seeded torch generator
    # Pixels moved in from outside repeat the border: a flat (normalised) background stays
    # exactly that value instead of becoming a zero the data never held.
    flat = torch.full((4, 1, 16, 16), -0.42)
    assert torch.allclose(augment(flat), flat)


def trained_with(tmp_path, name: str, augment: AugmentSpec, kind: str) -> torch.nn.Module:
    """Model `name` trained twice with `augment` and once without: the same seed gives the
    same weights, the augmentation changes them, and the saved model loads without it."""
    plain = run_tiny(tmp_path / "plain", name, augment=None)
    first = run_tiny(tmp_path / "a", name, augment=augment)
    second = run_tiny(tmp_path / "b", name, augment=augment)
    assert first["weights_sha256"] == second["weights_sha256"]
    assert first["weights_sha256"] != plain["weights_sha256"]  # it did change what was learnt
    module, spec = load_classifier(tmp_path / "a" / "models" / name)
    assert spec["hparams"]["augment"] == augment.settings(kind)
    assert not hasattr(module, "augment")  # predicting never augments
    return module


def test_training_with_augmentation_is_seeded_and_its_model_loads_without_it(tmp_path):
    augment = AugmentSpec(rotate=20, translate=0.1, scale=0.1)
    module = trained_with(tmp_path, "cnn", augment, "image")
    images = torch.from_numpy(np.load(tiny_prepared(tmp_path / "a", "image") / "x_test.npy"))
    with torch.no_grad():
        assert torch.equal(module(images), module(images))


def padded_series() -> tuple[torch.Tensor, torch.Tensor]:
    """Three 2-channel series of 12, 7 and 1 steps, zero-padded to 12 steps."""
    lengths = torch.tensor([12, 7, 1])
    x = torch.randn(3, 12, 2, generator=torch.Generator().manual_seed(3))
    x[torch.arange(12)[None, :] >= lengths[:, None]] = 0.0
    return x, lengths


def test_series_transform_is_seeded_and_keeps_each_series_length():
    augment = series_augmentation(crop=0.3, magnitude=0.2, jitter=0.1)
    x, lengths = padded_series()
    torch.manual_seed(0)
    changed = augment(x, lengths)
    torch.manual_seed(0)
    assert torch.equal(augment(x, lengths), changed)  # drawn from the seeded torch generator
    assert changed.shape == x.shape
    assert not torch.allclose(changed, x)
    padding = torch.arange(12)[None, :] >= lengths[:, None]
    assert torch.all(changed[padding] == 0.0)  # the models' masks still hold
    assert torch.all(changed[~padding] != 0.0)


def test_a_crop_stretches_a_window_of_the_series_own_steps():
    x, lengths = padded_series()
    x[0, :12, 0] = torch.arange(12.0)  # a ramp: a window of it, stretched, is a ramp again
    torch.manual_seed(1)
    cropped = series_augmentation(crop=0.5)(x, lengths)
    ramp = cropped[0, :, 0]
    steps = ramp.diff()
    assert torch.allclose(steps, steps[0].expand_as(steps), atol=1e-5)
    assert 0.5 - 1e-5 <= steps[0] < 1.0  # a window of 50–100 % of the series' span
    assert ramp[0] >= 0.0 and ramp[-1] <= 11.0
    # Values come from the series' own steps only, never from the padding after them.
    short = cropped[1, :7]
    assert short.min() >= x[1, :7].min() - 1e-6 and short.max() <= x[1, :7].max() + 1e-6
    assert torch.equal(cropped[2, 0], x[2, 0])  # one step: nothing to crop


def test_magnitude_scales_each_channel_of_a_series_by_one_factor():
    x, lengths = padded_series()
    torch.manual_seed(2)
    scaled = series_augmentation(magnitude=0.3)(x, lengths)
    ratio = scaled[0] / x[0]  # (steps, channels)
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), atol=1e-5)
    assert not torch.allclose(ratio[0, 0], ratio[0, 1])


def test_training_a_sequence_model_with_augmentation_is_seeded(tmp_path):
    trained_with(tmp_path, "lstm", AugmentSpec(crop=0.2, magnitude=0.1, jitter=0.05), "sequence")
