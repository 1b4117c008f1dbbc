"""Training-time augmentation, inside the training step on the training device, drawn from the
torch generator that seed_everything seeds and the checkpoints carry (an interrupted training
resumes with the same draws). Images: a random affine transform with kornia (pure PyTorch).
Series: random crops stretched back to each series' length, amplitude scalings and noise, as
surveyed by Iwana & Uchida ("An empirical survey of data augmentation for time series
classification with neural networks", PLOS ONE 2021); window slicing is Le Guennec et al.'s
("Data augmentation for time series classification using convolutional neural networks",
ECML/PKDD AALTD 2016)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def augmentation(sequence: bool, settings: dict[str, Any]) -> nn.Module | None:
    """The training transform of series (called with x and lengths) or images (with x); None
    when the settings ask for nothing."""
    return series_augmentation(**settings) if sequence else image_augmentation(**settings)


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


def series_augmentation(
    crop: float = 0.0, magnitude: float = 0.0, jitter: float = 0.0
) -> SeriesAugmentation | None:
    """The series transform for these settings; None when they ask for nothing."""
    return SeriesAugmentation(crop, magnitude, jitter) if crop or magnitude or jitter else None


class SeriesAugmentation(nn.Module):
    """(N, T, C) series, zero past each one's length → the same shape, changed per series:

    - `crop`: a window of a random fraction in [1 - crop, 1] of the series' own length, at a
      random start, stretched back (linear interpolation) to that length;
    - `magnitude`: each channel multiplied by 1 + magnitude · N(0, 1);
    - `jitter`: N(0, jitter²) noise added to every valid step.

    Lengths never change and the padding stays zero, so the models' masking holds as it does
    for the unchanged series."""

    def __init__(self, crop: float, magnitude: float, jitter: float) -> None:
        super().__init__()
        self.crop, self.magnitude, self.jitter = crop, magnitude, jitter

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        n, steps, channels = x.shape
        lengths = lengths.to(x.device)
        valid = (torch.arange(steps, device=x.device) < lengths[:, None]).unsqueeze(2)
        if self.crop:
            x = self._crop(x, lengths)
        if self.magnitude:
            x = x * (1.0 + self.magnitude * torch.randn(n, 1, channels, device=x.device))
        if self.jitter:
            x = x + self.jitter * torch.randn_like(x)
        return x * valid

    def _crop(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        n, steps, _ = x.shape
        last = (lengths - 1).to(x.dtype)  # a series' last step; the window lies in [0, last]
        span = last * (1.0 - self.crop * torch.rand(n, device=x.device))
        start = (last - span) * torch.rand(n, device=x.device)
        # Output step t of a series of length L reads position start + t · span / (L - 1).
        t = torch.arange(steps, device=x.device, dtype=x.dtype)
        positions = start[:, None] + t[None, :] * (span / last.clamp(min=1.0))[:, None]
        positions = torch.minimum(positions, last[:, None])  # steps past the end: masked later
        below = positions.floor().long()
        above = torch.minimum(below + 1, (lengths - 1)[:, None])
        weight = (positions - below).unsqueeze(2)
        return _steps(x, below) * (1.0 - weight) + _steps(x, above) * weight


def _steps(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[i, index[i, t], :] for every series i and output step t."""
    return x.gather(1, index.unsqueeze(2).expand_as(x))
