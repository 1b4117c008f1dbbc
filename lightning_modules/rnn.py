"""One recurrent classifier for `rnn`, `lstm` and `gru` cells over variable-length sequences.

Sequences are packed, so the padding after a series' end never reaches the recurrent cell:
a padded batch predicts exactly what the same series predict one by one. The classifier reads
either the final hidden state (`pooling="last"`) or the mean of the outputs over each series'
own steps (`pooling="mean"`).

Long series (GunPoint's 150 steps, OSULeaf's 427) starve a recurrent layer read at its last
step: the gradient must cross every step, and the cell runs step by step on the CPU. An
optional convolutional front-end, as in LSTM-FCN (Karim et al., "LSTM fully convolutional
networks for time series classification", IEEE Access 2018), reads local shapes first:
`frontend` channels of 'same' convolution → masked batch norm → ReLU, then a masked mean over
non-overlapping windows so that the recurrent layer sees at most `max_steps` steps (the window
is fixed from the longest training series, `input_shape[0]`, so it is one and the same for
every batch). The recurrent layer still does the sequence modelling; the front-end only
shortens and denoises its input. Every front-end layer is zeroed past each series' end and
its statistics count valid steps only (lightning_modules/sequence_cnn.py), and a window
averages the valid steps it holds, so padding still never changes a prediction.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lightning_modules.sequence_cnn import ConvNormReLU, masked_input

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class ConvFrontEnd(nn.Module):
    """(N, T, C) series → (N, ceil(T / window), channels) features and their lengths."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int, window: int) -> None:
        super().__init__()
        self.conv = ConvNormReLU(in_channels, channels, kernel_size) if channels else None
        self.window = window

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = masked_input(x, lengths)  # (N, C, T), zero past each end
        if self.conv is not None:
            x = self.conv(x, mask)
        if self.window > 1:
            # Windows start at step 0 of every series, so a series sees the same windows
            # alone or padded; a series' last window may be partial: mean of its valid steps.
            pad = -x.shape[2] % self.window
            x = F.pad(x, (0, pad)).unflatten(2, (-1, self.window)).sum(dim=3)
            counts = F.pad(mask.to(x.dtype), (0, pad)).unflatten(2, (-1, self.window)).sum(3)
            x = x / counts.clamp(min=1.0)
            lengths = torch.div(lengths + self.window - 1, self.window, rounding_mode="floor")
        return x.transpose(1, 2), lengths


class RecurrentClassifier(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, int],
        num_classes: int,
        cell: Literal["rnn", "lstm", "gru"] = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: Literal["last", "mean"] = "last",
        frontend: int = 0,
        frontend_kernel: int = 8,
        max_steps: int = 0,
    ) -> None:
        super().__init__()
        steps, channels = input_shape
        window = math.ceil(steps / max_steps) if max_steps else 1
        self.frontend = (
            ConvFrontEnd(channels, frontend, frontend_kernel, window)
            if frontend or window > 1
            else None
        )
        self.rnn = CELLS[cell](
            input_size=frontend or channels,
            hidden_size=hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            # PyTorch applies this between stacked layers only.
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.directions = 2 if bidirectional else 1
        self.pooling = pooling
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(hidden_size * self.directions, num_classes)
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.frontend is not None:
            x, lengths = self.frontend(x, lengths)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, hidden = self.rnn(packed)
        if self.pooling == "mean":
            padded, _ = pad_packed_sequence(outputs, batch_first=True)  # zeros past each end
            summary = padded.sum(dim=1) / lengths.to(padded.device, padded.dtype).unsqueeze(1)
            return self.head(summary)
        if isinstance(hidden, tuple):  # LSTM: (h_n, c_n)
            hidden = hidden[0]
        # h_n is (layers × directions, batch, hidden), in the original batch order, taken at
        # each series' own last step; keep the top layer's directions.
        top = hidden[-self.directions :].transpose(0, 1).reshape(x.shape[0], -1)
        return self.head(top)
