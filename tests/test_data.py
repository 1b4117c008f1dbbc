"""The DataModule's two batch paths and its split across DDP processes."""

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch

import lightning_modules.data as data_module
from lightning_modules.data import PreparedDataModule, TensorBatches
from tests.test_train import tiny_prepared


def _all(batches) -> list[np.ndarray]:
    parts = list(zip(*batches, strict=True))
    return [torch.cat(p).numpy() for p in parts]


def test_streamed_batches_equal_device_batches(tmp_path, monkeypatch):
    root = tiny_prepared(tmp_path, "sequence")
    data = PreparedDataModule(root, batch_size=5)
    on_device = data.loader("val", shuffle=False)
    assert isinstance(on_device, TensorBatches)
    monkeypatch.setattr(data_module, "DEVICE_MEMORY_SHARE", 0.0)  # "does not fit"
    streamed = data.loader("val", shuffle=False)
    assert isinstance(streamed, torch.utils.data.DataLoader)
    for a, b in zip(_all(on_device), _all(streamed), strict=True):
        np.testing.assert_array_equal(a, b)
    x, lengths, y = _all(on_device)
    np.testing.assert_array_equal(y, np.load(root / "y_val.npy"))
    np.testing.assert_array_equal(lengths, np.load(root / "len_val.npy"))


def test_shuffle_is_seeded_and_changes_each_epoch():
    tensors = (torch.arange(20), torch.arange(20) * 10)
    first, second = TensorBatches(tensors, 8, True, seed=3), TensorBatches(tensors, 8, True, 3)
    epoch_zero = _all(first)[0]
    assert sorted(epoch_zero.tolist()) == list(range(20))
    np.testing.assert_array_equal(epoch_zero, _all(second)[0])
    _set_sampler_epoch(first, 1)
    assert not np.array_equal(epoch_zero, _all(first)[0])  # the next epoch reshuffles
    x, y = _all(first)
    np.testing.assert_array_equal(y, x * 10)  # rows stay together


@pytest.mark.parametrize("streamed", [False, True], ids=["device_batches", "dataloader"])
def test_shuffle_depends_on_seed_and_epoch_alone(tmp_path, monkeypatch, streamed):
    """A resumed training's new loader, told the epoch by Lightning, repeats that epoch's order."""
    if streamed:
        monkeypatch.setattr(data_module, "DEVICE_MEMORY_SHARE", 0.0)
    data = PreparedDataModule(tiny_prepared(tmp_path, "sequence"), batch_size=5, seed=7)
    running = data.loader("train", shuffle=True)
    for epoch in range(3):
        _set_sampler_epoch(running, epoch)  # what Lightning's fit loop calls before each epoch
        seen = _all(running)
    resumed = data.loader("train", shuffle=True)
    _set_sampler_epoch(resumed, 2)
    for a, b in zip(seen, _all(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    _set_sampler_epoch(resumed, 0)
    assert not np.array_equal(seen[-1], _all(resumed)[-1])


def test_ddp_processes_get_disjoint_equal_shares():
    tensors = (torch.arange(23),)
    shares = [_all(TensorBatches(tensors, 4, True, 0, rank, 3))[0] for rank in range(3)]
    assert [len(s) for s in shares] == [7, 7, 7]  # 23 // 3 each: every process steps alike
    assert len(set(np.concatenate(shares).tolist())) == 21
    assert [len(TensorBatches(tensors, 4, True, 0, r, 3)) for r in range(3)] == [2, 2, 2]
