"""Run by test_train.py in a child process: train, then SIGKILL itself in the middle of an epoch.

Usage: python tests/interrupted_training.py <workdir> <kill_epoch> [streamed]
(`streamed`: batches come from the DataLoader path, as when a split does not fit the device)
"""

import os
import signal
import sys
from pathlib import Path

from lightning.pytorch.callbacks import Callback

import lightning_modules.data as data_module
from tests.test_train import run_tiny


class KillMidEpoch(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    if sys.argv[3:] == ["streamed"]:
        data_module.DEVICE_MEMORY_SHARE = 0.0
    run_tiny(Path(sys.argv[1]), "gru", callbacks=[KillMidEpoch(int(sys.argv[2]))])
