"""DataModule over `data/prepared/<dataset>/` (written by the prepare stage; nothing downloads).

Arrays are memory-mapped. When a split fits in the device's memory it is moved there once and
batches are cut from it by index (no per-item Python, no worker processes); otherwise a plain
DataLoader streams items from the memory map.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lightning_modules.prepared import load_split, read_meta

SPLITS = ("train", "val", "test")
# Leave most of the device's free memory to the model and activations.
DEVICE_MEMORY_SHARE = 0.25
CPU = torch.device("cpu")


class EpochShuffle(Sampler[int]):
    """Indices 0..n-1 in an order that depends on (seed, epoch) alone.

    Lightning calls `set_epoch` with its own epoch counter before every epoch (through a
    dataloader's `sampler` attribute), and restores that counter from a checkpoint, so a
    resumed training sees the same orders as an uninterrupted one. A counter kept here would
    restart at 0 in the new process.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def order(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())


class TensorBatches:
    """Batches cut from tensors already on the device; reshuffled each epoch with a seed.

    Under DDP each process takes every world_size-th example of the shared permutation, cut to
    a multiple of world_size so that every process runs the same number of steps.
    """

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.tensors, self.batch_size = tensors, batch_size
        self.rank, self.world_size = rank, world_size
        # The two attributes Lightning reads from a DataLoader: it calls `sampler.set_epoch`
        # before every epoch, and finds no batch sampler to look into.
        self.sampler = EpochShuffle(len(tensors[0]), seed) if shuffle else None
        self.batch_sampler = None
        self.n = len(tensors[0]) // world_size

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        device = self.tensors[0].device
        order = self.sampler.order() if self.sampler else torch.arange(len(self.tensors[0]))
        order = order[: self.n * self.world_size][self.rank :: self.world_size].to(device)
        for start in range(0, self.n, self.batch_size):
            index = order[start : start + self.batch_size]
            yield tuple(t.index_select(0, index) for t in self.tensors)


class _ArrayDataset(Dataset):
    def __init__(self, arrays: tuple[np.ndarray, ...]) -> None:
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(torch.as_tensor(np.array(a[i])) for a in self.arrays)


class PreparedDataModule(L.LightningDataModule):
    def __init__(self, root: Path, batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.root, self.batch_size, self.seed = Path(root), batch_size, seed
        self.meta = read_meta(self.root)
        self.arrays = {split: load_split(self.root, split) for split in SPLITS}

    def loader(
        self,
        split: str,
        shuffle: bool,
        device: torch.device = CPU,
        rank: int = 0,
        world_size: int = 1,
    ) -> TensorBatches | DataLoader:
        """Batches of `split`: cut on `device` when the split fits there, else streamed."""
        arrays = self.arrays[split]
        if sum(a.nbytes for a in arrays) <= DEVICE_MEMORY_SHARE * _free_memory(device):
            tensors = tuple(torch.from_numpy(np.array(a)).to(device) for a in arrays)
            return TensorBatches(tensors, self.batch_size, shuffle, self.seed, rank, world_size)
        sampler = EpochShuffle(len(arrays[0]), self.seed) if shuffle else None
        return DataLoader(_ArrayDataset(arrays), batch_size=self.batch_size, sampler=sampler)

    def _loader(self, split: str, shuffle: bool) -> TensorBatches | DataLoader:
        trainer = self.trainer
        return self.loader(
            split, shuffle, trainer.strategy.root_device, trainer.global_rank, trainer.world_size
        )

    def train_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("test", shuffle=False)


def _free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
