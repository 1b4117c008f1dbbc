"""Training-time image augmentation: its params, the transform, and training with it."""

import copy

import numpy as np
import pytest
import torch

from lightning_modules.augment import image_augmentation
from lightning_modules.export import load_classifier
from stages.config import parse_params
from stages.errors import PipelineError
from stages.model_config import AugmentSpec
from tests.test_train import run_tiny, tiny_prepared


@pytest.mark.parametrize(
    ("model", "augment", "expected"),
    [
        ("lstm", {"rotate": 10}, "models.lstm: `augment` is for images; arch 'lstm' reads"),
        ("cnn", {"rotate": -5}, "models.cnn.augment.rotate: Input should be greater than or"),
        ("cnn", {"translate": 0.5}, "models.cnn.augment.translate: Input should be less than 0.5"),
        ("cnn", {"scale": 1.0}, "models.cnn.augment.scale: Input should be less than 1"),
        ("cnn", {"hflip": "yes"}, "models.cnn.augment.hflip: Input should be a valid boolean"),
        ("cnn", {"shear": 3}, "models.cnn.augment.shear: unknown key; allowed here: hflip,"),
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
    assert image_augmentation(**AugmentSpec().model_dump()) is None


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


def test_training_with_augmentation_is_seeded_and_its_model_loads_without_it(tmp_path):
    augment = AugmentSpec(rotate=20, translate=0.1, scale=0.1)
    plain = run_tiny(tmp_path / "plain", "cnn", augment=None)
    first = run_tiny(tmp_path / "a", "cnn", augment=augment)
    second = run_tiny(tmp_path / "b", "cnn", augment=augment)
    assert first["weights_sha256"] == second["weights_sha256"]
    assert first["weights_sha256"] != plain["weights_sha256"]  # it did change what was learnt
    module, spec = load_classifier(tmp_path / "a" / "models" / "cnn")
    assert spec["hparams"]["augment"] == augment.model_dump()
    assert not hasattr(module, "augment")  # predicting never augments
    images = torch.from_numpy(np.load(tiny_prepared(tmp_path / "a", "image") / "x_test.npy"))
    with torch.no_grad():
        assert torch.equal(module(images), module(images))
