"""The classic image CNN: (convolution → [batch norm] → ReLU → max-pool) × n → dense → classes."""

from __future__ import annotations

import torch
from torch import nn


class CNN(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        channels: tuple[int, ...] = (32, 64),
        kernel_size: int = 3,
        hidden: int = 128,
        dropout: float = 0.25,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        in_channels, height, width = input_shape
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
                nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity(),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        # The flattened size follows from the input size (never hard-coded): each stage's
        # convolution keeps the size (odd kernels) or adds one (even), and pooling halves it.
        for _ in channels:
            height = (height + 2 * (kernel_size // 2) - kernel_size + 1) // 2
            width = (width + 2 * (kernel_size // 2) - kernel_size + 1) // 2
            if height < 1 or width < 1:
                raise ValueError(
                    f"input {input_shape[1]}×{input_shape[2]} is too small for "
                    f"{len(channels)} pooling stages"
                )
        flat = channels[-1] * height * width
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(flat, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
