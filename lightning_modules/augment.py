"""Training-time image augmentation with kornia: pure PyTorch, so it runs on the training
device inside the training step, and draws from the torch generator that seed_everything seeds
and the checkpoints carry (an interrupted training resumes with the same draws)."""

from __future__ import annotations

from torch import nn


def image_augmentation(
    rotate: float = 0.0, translate: float = 0.0, scale: float = 0.0, hflip: bool = False
) -> nn.Module | None:
    """A random affine transform (and mirror) per image of a (N, C, H, W) batch; None when the
    settings ask for nothing. Pixels moved in from outside repeat the border, never a value
    the normalised images do not hold."""
    import kornia.augmentation as K  # imported only to train: serving never augments

    steps: list[nn.Module] = []
    if rotate or translate or scale:
        steps.append(
            K.RandomAffine(
                degrees=rotate,
                translate=(translate, translate) if translate else None,
                scale=(1.0 - scale, 1.0 + scale) if scale else None,
                padding_mode="border",
                p=1.0,
            )
        )
    if hflip:
        steps.append(K.RandomHorizontalFlip(p=0.5))
    return nn.Sequential(*steps) if steps else None
