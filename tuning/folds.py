"""k-fold cross-validation over the training data: the train and validation splits pooled and
cut into stratified folds, for searches on data whose validation split is too small to rank
trials (6 series of ArrowHead). The test split is never read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from lightning_modules.data import PreparedDataModule


class FoldDataModule(PreparedDataModule):
    """The prepared data with fold `fold` of `folds` as its validation split and the other
    folds as its training split; `meta["counts"]` says so (the Trainer is sized by it)."""

    def __init__(self, root: Path, batch_size: int, seed: int, fold: int, folds: int) -> None:
        super().__init__(root, batch_size, seed)
        pooled = tuple(
            np.concatenate([np.asarray(t), np.asarray(v)])
            for t, v in zip(self.arrays["train"], self.arrays["val"], strict=True)
        )
        y = pooled[-1]
        cut = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        train, val = list(cut.split(np.zeros(len(y)), y))[fold]
        self.arrays = {
            "train": tuple(a[train] for a in pooled),
            "val": tuple(a[val] for a in pooled),
        }
        self.meta = {
            **self.meta,
            "counts": {
                **self.meta["counts"],
                "train": {"total": len(train)},
                "val": {"total": len(val)},
            },
        }
