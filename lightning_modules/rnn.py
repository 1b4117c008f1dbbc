"""One recurrent classifier for `rnn`, `lstm` and `gru` cells over variable-length sequences.

Sequences are packed, so the padding after a series' end never reaches the recurrent cell:
a padded batch predicts exactly what the same series predict one by one. The classifier reads
either the final hidden state (`pooling="last"`) or the mean of the outputs over each series'
own steps (`pooling="mean"`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


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
    ) -> None:
        super().__init__()
        _, channels = input_shape
        self.rnn = CELLS[cell](
            input_size=channels,
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
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, hidden = self.rnn(packed)
        if self.pooling == "mean":
            padded, _ = pad_packed_sequence(outputs, batch_first=True)  # zeros past each end
            summary = padded.sum(dim=1) / lengths.to(padded.dtype).unsqueeze(1)
            return self.head(summary)
        if isinstance(hidden, tuple):  # LSTM: (h_n, c_n)
            hidden = hidden[0]
        # h_n is (layers × directions, batch, hidden), in the original batch order, taken at
        # each series' own last step; keep the top layer's directions.
        top = hidden[-self.directions :].transpose(0, 1).reshape(x.shape[0], -1)
        return self.head(top)
