"""The one LightningModule for classification: any registered model, cross-entropy, AdamW."""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from lightning_modules.registry import create_model


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: training stops, and nothing is kept as a finished model."""


class Classifier(L.LightningModule):
    def __init__(
        self,
        model: str,
        input_shape: tuple[int, ...],
        num_classes: int,
        model_kwargs: dict[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: Literal["none", "cosine", "onecycle"] = "none",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        # Everything needed to rebuild the module goes into the checkpoint; the logger gets the
        # flattened params from the train stage instead, so nothing is logged twice.
        self.save_hyperparameters(logger=False)
        self.net = create_model(model, tuple(input_shape), num_classes, **(model_kwargs or {}))
        self.sequence = len(input_shape) == 2
        self.loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.metrics = nn.ModuleDict(
            {
                f"{split}_{name}": metric
                for split in ("train", "val")
                for name, metric in (
                    ("acc", MulticlassAccuracy(num_classes, average="micro")),
                    ("f1", MulticlassF1Score(num_classes, average="macro")),
                )
            }
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, lengths) if self.sequence else self.net(x)

    def _step(self, batch: tuple[torch.Tensor, ...], split: str) -> torch.Tensor:
        *inputs, y = batch
        logits = self(*inputs)
        loss = self.loss(logits, y)
        if split == "train" and not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}"
            )
        preds = logits.argmax(dim=1)
        for name in ("acc", "f1"):
            metric = self.metrics[f"{split}_{name}"]
            metric.update(preds, y)
            self.log(f"{split}_{name}", metric, on_step=False, on_epoch=True)
        self.log(f"{split}_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        if self.hparams.scheduler == "none":
            return optimizer
        steps = self.trainer.estimated_stepping_batches
        if self.hparams.scheduler == "cosine":
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        else:
            schedule = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=self.hparams.lr, total_steps=max(1, math.ceil(steps))
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
