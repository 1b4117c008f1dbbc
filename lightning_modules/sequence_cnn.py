"""Convolutional classifiers for variable-length series: `fcn`, `resnet` and `inception`.

- FCN and ResNet: Wang, Yan & Oates, "Time series classification from scratch with deep neural
  networks: a strong baseline", IJCNN 2017: three convolution blocks, global average pooling;
  ResNet stacks FCN's three convolutions into each of three residual blocks.
- InceptionTime: Ismail Fawaz et al., "InceptionTime: finding AlexNet for time series
  classification", Data Mining and Knowledge Discovery 34, 2020: inception modules with a
  bottleneck, three kernel widths and a max-pool branch, a residual shortcut every 3 modules.

Input is x: (N, T, C), zero-padded after each series' end, and lengths: (N,). Padding never
changes a prediction, as with the recurrent models' packing: every layer's output is zeroed past
each series' end, so a 'same'-padded convolution there sees the zeros it would see beyond the
end of the series alone; batch norm takes its statistics over valid steps only; max pooling
never reads a padded step; global average pooling divides by each series' own length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskedBatchNorm1d(nn.Module):
    """Batch norm over (N, C, T) whose batch statistics count only the steps where `mask` holds.

    nn.BatchNorm1d would average the padding in too, so a batch's statistics (and the running
    ones used in eval) would depend on how long its longest series is. Not a BatchNorm
    subclass on purpose: convert_sync_batchnorm would swap it for an unmasked SyncBatchNorm.
    """

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # In the parameters' precision: float32 statistics under bf16 autocast, as nn.BatchNorm1d.
        x = x.to(self.weight.dtype)
        if self.training:
            count = mask.sum()
            mean = x.masked_fill(~mask, 0.0).sum(dim=(0, 2)) / count
            centred = (x - mean[:, None]).masked_fill(~mask, 0.0)
            var = centred.square().sum(dim=(0, 2)) / count
            with torch.no_grad():  # like nn.BatchNorm1d: the running variance is unbiased
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(unbiased, self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + self.eps)
        out = (x - mean[:, None]) * scale[:, None] + self.bias[:, None]
        return out.masked_fill(~mask, 0.0)


class SameConv1d(nn.Conv1d):
    """A stride-1 convolution without bias (batch norm's shift replaces it) whose output is as
    long as its input: (k-1)//2 zeros before, k//2 after, as padding="same" (and Keras) does,
    but an even kernel's extra zero is added here, without PyTorch's warning about the copy.

    Every output step inside a series then reads only that series and zeros, whether the zeros
    are this padding or the masked steps after the series' end: even kernels (FCN's 8) keep
    padding-invariance as odd ones do.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_size[0] % 2 == 0:
            x = F.pad(x, (0, 1))
        return super().forward(x)


class ConvNormReLU(nn.Module):
    """'Same' convolution → masked batch norm → ReLU (unless `activate` is off, for a residual
    sum to be activated instead); zero past each series' end."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, activate: bool = True
    ) -> None:
        super().__init__()
        self.conv = SameConv1d(in_channels, out_channels, kernel_size)
        self.norm = MaskedBatchNorm1d(out_channels)
        self.activate = activate

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x), mask)
        return F.relu(x) if self.activate else x


def masked_input(x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, T, C) → (N, C, T) with whatever follows each series' end zeroed, and the (N, 1, T)
    mask of valid steps. Steps after the batch's longest series are cut: they change nothing
    and cost as much as valid ones (PLAID's series of 100–1344 steps are padded to 1344)."""
    x = x[:, : int(lengths.max())]
    steps = torch.arange(x.shape[1], device=x.device)
    mask = (steps < lengths.to(x.device)[:, None])[:, None, :]
    return x.transpose(1, 2).masked_fill(~mask, 0.0), mask


def _global_average(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over each series' own steps (the rest are zeros): (N, C, T) → (N, C)."""
    return x.sum(dim=2) / lengths.to(x.device, x.dtype)[:, None]


class _BlockStack(nn.Module):
    """`blocks` one after another, global average pooling, then `head` (FCN and ResNet)."""

    blocks: nn.ModuleList
    head: nn.Module

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x, mask = masked_input(x, lengths)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(_global_average(x, lengths))


class FCN(_BlockStack):
    def __init__(
        self,
        input_shape: tuple[int, int],
        num_classes: int,
        channels: tuple[int, ...] = (128, 256, 128),
        kernel_sizes: tuple[int, ...] = (8, 5, 3),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(channels) != len(kernel_sizes):
            raise ValueError(
                f"channels and kernel_sizes need one entry per block; got {len(channels)} "
                f"and {len(kernel_sizes)}"
            )
        _, in_channels = input_shape
        self.blocks = nn.ModuleList()
        for out_channels, kernel_size in zip(channels, kernel_sizes, strict=True):
            self.blocks.append(ConvNormReLU(in_channels, out_channels, kernel_size))
            in_channels = out_channels
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_channels, num_classes))


class InceptionModule(nn.Module):
    def __init__(self, in_channels: int, filters: int, kernel_size: int, bottleneck: int) -> None:
        super().__init__()
        # As the reference code, no bottleneck for a single channel (nothing to compress).
        self.bottleneck = (
            nn.Conv1d(in_channels, bottleneck, 1, bias=False)
            if bottleneck and in_channels > 1
            else None
        )
        width = bottleneck if self.bottleneck is not None else in_channels
        # kernel_size, /2, /4 as in the paper (40, 20, 10), made odd as tsai's port does
        # (39, 19, 9), so that the padding is symmetric.
        kernels = [k if k % 2 else k - 1 for k in (kernel_size, kernel_size // 2, kernel_size // 4)]
        self.convs = nn.ModuleList(SameConv1d(width, filters, k) for k in kernels)
        self.pool_conv = nn.Conv1d(in_channels, filters, 1, bias=False)
        self.norm = MaskedBatchNorm1d(4 * filters)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x is zero past each end, and so is a 1x1 convolution of it without bias.
        narrow = x if self.bottleneck is None else self.bottleneck(x)
        # -inf past the end is what max_pool1d's own padding is beyond the end of a series
        # alone; the padded steps are zeroed again before the 1x1 convolution reads them.
        pooled = F.max_pool1d(x.masked_fill(~mask, float("-inf")), 3, stride=1, padding=1)
        branches = [conv(narrow) for conv in self.convs]
        branches.append(self.pool_conv(pooled.masked_fill(~mask, 0.0)))
        return F.relu(self.norm(torch.cat(branches, dim=1), mask))


class Shortcut(nn.Module):
    """The residual connection of InceptionTime and ResNet: 1x1 convolution → batch norm (no
    ReLU: the sum is activated)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.norm = MaskedBatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x), mask)


class InceptionTime(nn.Module):
    """One InceptionTime network (the paper ensembles five; train five models for that)."""

    def __init__(
        self,
        input_shape: tuple[int, int],
        num_classes: int,
        depth: int = 6,
        filters: int = 32,
        kernel_size: int = 40,
        bottleneck: int = 32,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size < 4:
            raise ValueError(f"kernel_size must be at least 4 (it is quartered); got {kernel_size}")
        _, in_channels = input_shape
        width = 4 * filters
        self.blocks = nn.ModuleList(
            InceptionModule(in_channels if d == 0 else width, filters, kernel_size, bottleneck)
            for d in range(depth)
        )
        # As in the paper, a shortcut from the input of every three modules to their output
        # (none after a last group shorter than three); residual=False is its ablation.
        self.shortcuts = nn.ModuleList(
            Shortcut(in_channels if s == 0 else width, width)
            for s in range(depth // 3 if residual else 0)
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x, mask = masked_input(x, lengths)
        block_input = x
        for d, block in enumerate(self.blocks):
            x = block(x, mask)
            if d % 3 == 2 and d // 3 < len(self.shortcuts):
                x = block_input = F.relu(x + self.shortcuts[d // 3](block_input, mask))
        return self.head(_global_average(x, lengths))


class ResidualBlock(nn.Module):
    """FCN's convolutions in a row (the last one not activated) plus a shortcut, then ReLU.
    The shortcut is a 1x1 convolution and batch norm where the block changes the width, batch
    norm alone where it does not, as in Ismail Fawaz et al. 2019's re-implementation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: tuple[int, ...]) -> None:
        super().__init__()
        widths = [in_channels] + [out_channels] * len(kernel_sizes)
        last = len(kernel_sizes) - 1
        self.convs = nn.ModuleList(
            ConvNormReLU(a, b, k, activate=i < last)
            for i, (a, b, k) in enumerate(zip(widths[:-1], widths[1:], kernel_sizes, strict=True))
        )
        self.shortcut = (
            Shortcut(in_channels, out_channels)
            if in_channels != out_channels
            else MaskedBatchNorm1d(out_channels)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = x
        for conv in self.convs:
            out = conv(out, mask)
        return F.relu(out + self.shortcut(x, mask))


class ResNet(_BlockStack):
    """One residual block per entry of `channels`, each with a convolution per kernel size."""

    def __init__(
        self,
        input_shape: tuple[int, int],
        num_classes: int,
        channels: tuple[int, ...] = (64, 128, 128),
        kernel_sizes: tuple[int, ...] = (8, 5, 3),
    ) -> None:
        super().__init__()
        _, in_channels = input_shape
        self.blocks = nn.ModuleList()
        for out_channels in channels:
            self.blocks.append(ResidualBlock(in_channels, out_channels, tuple(kernel_sizes)))
            in_channels = out_channels
        self.head = nn.Linear(in_channels, num_classes)
