"""The one LightningModule for classification: any registered model, cross-entropy, AdamW."""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassF1Score

from lightning_modules.augment import augmentation
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
        augment: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # Everything needed to rebuild the module goes into the checkpoint; the logger gets the
        # flattened params from the train stage instead, so nothing is logged twice.
        self.save_hyperparameters(logger=False)
        self.net = create_model(model, tuple(input_shape), num_classes, **(model_kwargs or {}))
        self.sequence = len(input_shape) == 2
        self.loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        # Built when training starts (lightning_modules/augment.py), so that a model loaded
        # to predict needs no augmentation library.
        self.augment: nn.Module | None = None
        self._loss_sums: dict[str, torch.Tensor] = {}
        self._hits: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        # The epoch's figures for its one printed line (the task log of a long training).
        self._figures: dict[str, float] = {}
        self._epoch_started = 0.0
        # Macro-F1 on validation only: on the training split it would only add per-step cost.
        self.val_f1 = MulticlassF1Score(num_classes, average="macro", validate_args=False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, lengths) if self.sequence else self.net(x)

    def on_fit_start(self) -> None:
        if self.hparams.augment and self.augment is None:
            self.augment = augmentation(self.sequence, self.hparams.augment)

    def _step(self, batch: tuple[torch.Tensor, ...], split: str) -> torch.Tensor:
        *inputs, y = batch
        if split == "train" and self.augment is not None:
            inputs[0] = self.augment(*inputs)  # series: (x, lengths); images: (x,)
        logits = self(*inputs)
        loss = self.loss(logits, y)
        preds = logits.argmax(dim=1)
        if split == "val":
            self.val_f1.update(preds, y)
        # Summed here and logged once per epoch: a self.log() per step costs about as much as
        # the forward pass of these small models (bench/train_throughput.py). Accuracy is a
        # count of hits: a torchmetrics update took 0.16 ms a step, the count 0.01 ms.
        self._loss_sums[split] += loss.detach() * len(y)
        self._hits[split] += (preds == y).sum()
        self._counts[split] += len(y)
        return loss

    def _reset(self, split: str) -> None:
        self._loss_sums[split] = torch.zeros((), device=self.device)
        self._hits[split] = torch.zeros((), device=self.device, dtype=torch.long)
        self._counts[split] = 0

    def _log_epoch(self, split: str) -> None:
        mean = self._loss_sums[split] / max(self._counts[split], 1)
        # Checked once per epoch on the sum (a NaN or inf in any step reaches it), not per step:
        # a per-step check forces a device sync on every batch.
        if split == "train" and not torch.isfinite(mean):
            raise NonFiniteLossError(
                f"training loss is {mean.item()} at epoch {self.current_epoch}"
            )
        # The epoch is the logged step (Lightning takes a logged `step` as the logger's step), so
        # the curves of models with other batch sizes line up epoch by epoch.
        self.log("step", float(self.current_epoch), sync_dist=True)  # equal on every process
        # Under DDP each process saw its shard: the figures (logged by rank 0, printed in the
        # epoch line) are over every process: the loss a mean of means, the accuracy of the
        # summed hits, and torchmetrics' compute() syncs its own. sync_dist then averages equal
        # values: without it Lightning warns on every epoch.
        strategy = self.trainer.strategy
        seen = torch.tensor(float(self._counts[split]), device=mean.device)
        hits = strategy.reduce(self._hits[split].float(), reduce_op="sum")
        figures = {
            "loss": strategy.reduce(mean, reduce_op="mean"),
            "acc": hits / strategy.reduce(seen, reduce_op="sum").clamp(min=1),
        }
        if split == "val":
            figures["f1"] = self.val_f1.compute()
            self.val_f1.reset()
        for name, value in figures.items():
            self.log(f"{split}_{name}", value, sync_dist=True)
            self._figures[f"{split}_{name}"] = float(value)

    def on_train_epoch_start(self) -> None:
        self._reset("train")
        self._epoch_started = time.perf_counter()

    def on_validation_epoch_start(self) -> None:
        self._reset("val")

    def on_train_epoch_end(self) -> None:
        # Validation has run by now (Lightning validates at the end of the training epoch).
        self._log_epoch("train")
        self.print(
            epoch_line(
                self.current_epoch,
                self.trainer.max_epochs,
                self._figures,
                time.perf_counter() - self._epoch_started,
            )
        )

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._step(batch, "val")

    # Lightning's checkpoints hold no random state, and a resumed process starts from
    # seed_everything's: without this, dropout after a resume draws other masks than the
    # uninterrupted training did. Saved at epoch end, restored before the next epoch begins.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states", {})
        if "torch" in states:
            torch.set_rng_state(states["torch"])
        if "cuda" in states and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])

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


def epoch_line(epoch: int, epochs: int | None, figures: dict[str, float], seconds: float) -> str:
    """One line per epoch: 'epoch 3/100  train_loss 0.1234  train_acc 0.9876  val_loss …  1.2 s'."""
    shown = "  ".join(f"{name} {value:.4f}" for name, value in sorted(figures.items(), key=_order))
    return f"epoch {epoch + 1}/{epochs}  {shown}  {seconds:.1f} s"


def _order(item: tuple[str, float]) -> tuple[bool, str]:
    """Training figures first, then validation's."""
    return (not item[0].startswith("train_"), item[0])
