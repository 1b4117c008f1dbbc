"""k-fold cross-validation of a model's recipe on a shipped archive, the test split unread.

How BENCHMARKS.md chooses recipes: a temporary copy of the repository prepares the archive as
the suite does (bench/sequence_suite.py, split seed 0), then the archive's TRAIN file (prepare's
train and validation splits pooled) is cut into `--folds` stratified folds, as a search's trials
are (tuning/folds.py); each fold trains `MODEL` with params.yaml's recipe and the `--set` changes
through the train stage's own code (LightningModule, Trainer, seeding) and scores the weights
the train stage would keep. `--seeds N` repeats with fold and trainer seeds 0..N-1. Beside it,
1-NN Euclidean on the same folds. Prints one JSON line; torch uses `--threads` threads, so two
runs can share 2 cores.

    python bench/recipe_cv.py ArrowHead lstm
    python bench/recipe_cv.py ArrowHead gru --set rnn.pooling=mean --set batch_size=16 --seeds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

# bench/'s own modules: Python puts this script's folder first on sys.path.
from sequence_suite import sequence_models, suite_params
from suite.args import positive
from suite.repo import BIN, ROOT, copy_repo

from stages.baselines import nearest
from stages.config import ModelConfig, TrainerConfig, parse_params
from stages.errors import PipelineError
from stages.ingest import shipped_sktime_datasets

# Lightning, torch and scikit-learn load once the settings are checked: a bad one is answered
# in a second, not after ten of imports.
if TYPE_CHECKING:
    from tuning.folds import FoldDataModule


def setting(text: str) -> tuple[str, object]:
    """An argparse type: KEY=VALUE, the value read as YAML (`0.003`, `mean`, `[8, 5, 3]`)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def prepared_copy(tmp: Path, params: dict, key: str) -> Path:
    """The archive `key` prepared in a fresh copy of the repository: its prepared folder."""
    repo = copy_repo(tmp / "repo")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", f"prepare@{key}"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"prepare@{key} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return repo / parse_params(params).paths.prepared / key


def fold_accuracy(
    model: ModelConfig, trainer_cfg: TrainerConfig, data: FoldDataModule, seed: int
) -> float:
    """Validation accuracy of the weights the train stage would keep, trained on the fold."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from stages.training import SELECT_BEST, build_classifier, build_trainer

    L.seed_everything(seed, workers=True, verbose=False)
    system = build_classifier(model, data.meta)
    with tempfile.TemporaryDirectory(prefix="fold-") as root:
        best = ModelCheckpoint(dirpath=root, filename="best", monitor="val_loss")
        trainer, selection = build_trainer(model, trainer_cfg, data.meta, None, [best], Path(root))
        trainer.fit(system, datamodule=data)
        kept = "best" if selection == SELECT_BEST else None  # else the weights in memory
        (scores,) = trainer.validate(system, datamodule=data, ckpt_path=kept, verbose=False)
    return scores["val_acc"]


def nearest_euclidean_accuracy(data: FoldDataModule) -> float:
    """1-NN Euclidean on the fold's prepared arrays (zero-padded), as `evaluate`'s baseline."""
    (x_train, *_, y_train), (x_val, *_, y_val) = data.arrays["train"], data.arrays["val"]
    x_train, x_val = (np.asarray(x, np.float64).reshape(len(x), -1) for x in (x_train, x_val))
    found = np.asarray(y_train)[nearest(x_train, x_val)]
    return float((found == np.asarray(y_val)).mean())


def main() -> None:
    shipped = shipped_sktime_datasets()
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", choices=sorted(shipped), metavar="ARCHIVE")
    parser.add_argument("model", choices=sequence_models(raw), metavar="MODEL")
    parser.add_argument(
        "--set",
        type=setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of models.MODEL, dotted (rnn.pooling=mean); repeatable",
    )
    parser.add_argument("--folds", type=positive, default=3, help="default 3")
    parser.add_argument("--seeds", type=positive, default=1, help="seeds 0..N-1 (default 1)")
    parser.add_argument("--threads", type=positive, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    if args.folds < 2:
        parser.error("--folds: at least 2")
    params = suite_params(raw, args.archive, [args.model], 0, None)
    for key, value in args.set:  # into params.yaml's own layout, checked by its own models
        *sections, field = key.split(".")
        target = params["models"][args.model]
        for section in sections:
            target = target.setdefault(section, {})
            if not isinstance(target, dict):
                parser.error(f"--set {key}: models.{args.model}.{section} holds no settings")
        target[field] = value
    try:
        parsed = parse_params(params, source=f"params.yaml with --set on {args.archive}")
    except PipelineError as exc:
        sys.exit(f"error: {exc}")
    model = parsed.models[args.model]

    import torch

    from tuning.folds import FoldDataModule

    torch.set_num_threads(args.threads)
    scores, nearest = [], []
    with tempfile.TemporaryDirectory(prefix="recipe_cv_") as tmp:
        prepared = prepared_copy(Path(tmp), params, model.dataset)
        for seed in range(args.seeds):
            for fold in range(args.folds):
                data = FoldDataModule(prepared, model.batch_size, seed, fold, args.folds)
                scores.append(fold_accuracy(model, parsed.trainer, data, seed))
                nearest.append(nearest_euclidean_accuracy(data))
                print(f"seed {seed} fold {fold}: {scores[-1]:.3f}", file=sys.stderr)
    result = {
        "archive": args.archive,
        "model": args.model,
        "set": dict(args.set),
        "folds": args.folds,
        "seeds": args.seeds,
        "val_acc": round(statistics.fmean(scores), 4),
        "val_acc_std": round(statistics.pstdev(scores), 4),
        "per_fold": [round(s, 4) for s in scores],
        "nearest_euclidean": round(statistics.fmean(nearest), 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
