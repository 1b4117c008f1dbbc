"""Training throughput: the project's Lightning path against a minimal hand-written PyTorch loop.

For each default model, the same network, prepared data, batch size, optimiser, schedule and
gradient clipping run side by side in one process, alternating, after a warm-up epoch each.
Prints one JSON line per model: model, project_samples_per_s, plain_torch_samples_per_s, ratio
(project / plain).

    python bench/train_throughput.py [--epochs 5] [--repeats 3] [--accelerator cpu]

It reads the prepared data of the workspace (`dvc repro prepare` or `make run` first).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import lightning as L
import torch

from lightning_modules.augment import augmentation
from lightning_modules.data import PreparedDataModule
from stages.config import ModelConfig, load_params
from stages.training import build_classifier

warnings.filterwarnings("ignore")


class _Clock(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.last = time.perf_counter() - self.start


def project(model: ModelConfig, root: Path, epochs: int, accelerator: str, precision: str) -> float:
    """Samples/s of Trainer.fit on the project's system and DataModule (validation off)."""
    data = PreparedDataModule(root, batch_size=model.batch_size)
    clock = _Clock()
    seconds = []

    class _Collect(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            seconds.append(clock.last)

    trainer = L.Trainer(
        max_epochs=epochs + 1,
        accelerator=accelerator,
        devices=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        gradient_clip_val=model.gradient_clip,
        callbacks=[clock, _Collect()],
    )
    with redirect_stdout(sys.stderr):  # the system's epoch lines: stdout holds the JSON only
        trainer.fit(build_classifier(model, data.meta), datamodule=data)
    n = data.meta["counts"]["train"]["total"]
    return n * epochs / sum(seconds[1:])  # the first epoch is the warm-up


def plain(
    model: ModelConfig, root: Path, epochs: int, device: torch.device, precision: str
) -> float:
    """Samples/s of a bare loop: same net, tensors on the device, AdamW and the same schedule."""
    data = PreparedDataModule(root, batch_size=model.batch_size)
    batches = data.loader("train", shuffle=True, device=device)
    net = build_classifier(model, data.meta).to(device)
    # The same augmentation as the project's training step, when the model has one.
    augment = (
        augmentation(model.kind == "sequence", model.augment.settings(model.kind))
        if model.augment
        else None
    )
    optimizer = torch.optim.AdamW(net.parameters(), lr=model.lr, weight_decay=model.weight_decay)
    steps = (epochs + 1) * len(batches)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=model.lr, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    net.train()
    seconds = []
    for _ in range(epochs + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for *inputs, y in batches:
            if augment is not None:
                inputs[0] = augment(*inputs)
            with autocast:
                loss = loss_fn(net(*inputs), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if model.gradient_clip:  # as Lightning's gradient_clip_val does (by norm)
                torch.nn.utils.clip_grad_norm_(net.parameters(), model.gradient_clip)
            optimizer.step()
            schedule.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    n = data.meta["counts"]["train"]["total"]
    return n * epochs / sum(seconds[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accelerator", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    params = load_params()
    device = torch.device(args.accelerator)
    precision = "bf16-mixed" if device.type == "cuda" else "32-true"
    folders = {params.paths.prepared / m.dataset for m in params.models.values()}
    missing = sorted(str(f) for f in folders if not (f / "meta.json").is_file())
    if missing:
        raise SystemExit(f"error: no prepared data in {', '.join(missing)}: run `dvc repro` first")
    for name, model in params.models.items():
        root = params.paths.prepared / model.dataset
        runs = {"project": [], "plain": []}
        for _ in range(args.repeats):  # alternate, so drift in machine load hits both alike
            runs["plain"].append(plain(model, root, args.epochs, device, precision))
            runs["project"].append(project(model, root, args.epochs, args.accelerator, precision))
        ours, theirs = statistics.median(runs["project"]), statistics.median(runs["plain"])
        print(
            json.dumps(
                {
                    "model": name,
                    "device": str(device),
                    "precision": precision,
                    "project_samples_per_s": round(ours, 1),
                    "plain_torch_samples_per_s": round(theirs, 1),
                    "ratio": round(ours / theirs, 3),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
