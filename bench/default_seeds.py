"""The default models on their own datasets over several training seeds: test accuracy per seed
and its mean ± std, beside the baselines evaluate scores on the same test split.

The model-quality goals are stated as means over seeds (e.g. the digits CNN at 99.0 %), and one
seed's figure moves by a test example or two. For each dataset of params.yaml and each seed, a
fresh copy of the repository gets params.yaml cut to that dataset and its models, with
`trainer.seed` set, and runs `dvc repro` there with its own MLflow store (bench/suite/repo.py).
The splits stay the datasets' own: only training's seed changes. Prints a markdown table;
`--out` writes every result as JSON.

    python bench/default_seeds.py --seeds 42 1 7
    python bench/default_seeds.py --seeds 42 1 7 --models lstm gru
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

# `suite` is bench/suite: Python puts this script's folder first on sys.path.
from suite.repo import ROOT, run_pipeline


def dataset_params(raw: dict, dataset: str, models: list[str], seed: int) -> dict:
    """`raw` cut to `dataset` and those of `models` trained on it, with the trainer's seed."""
    kept = {m: raw["models"][m] for m in models if raw["models"][m]["dataset"] == dataset}
    return raw | {
        "datasets": {dataset: raw["datasets"][dataset]},
        "models": kept,
        "tune": {k: v for k, v in raw.get("tune", {}).items() if k in kept},
        "trainer": raw.get("trainer", {}) | {"seed": seed},
    }


def table(runs: list[dict], seeds: list[int]) -> str:
    header = ["model", "dataset", *(f"seed {s}" for s in seeds), "mean ± std", "baselines"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for model in dict.fromkeys(r["model"] for r in runs):
        mine = {r["seed"]: r for r in runs if r["model"] == model}
        cells = [
            f"{mine[s]['test_accuracy']:.4f}" if "test_accuracy" in mine[s] else mine[s]["error"]
            for s in seeds
        ]
        values = [r["test_accuracy"] for r in mine.values() if "test_accuracy" in r]
        spread = (
            f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"
            if len(values) > 1
            else "–"
        )
        # The baselines do not depend on the training seed: any seed's are the dataset's.
        scored = next((r["baselines"] for r in mine.values() if "baselines" in r), {})
        baselines = ", ".join(f"{k} {v:.4f}" for k, v in sorted(scored.items()))
        lines.append(f"| {model} | {mine[seeds[0]]['dataset']} | " + " | ".join(cells))
        lines[-1] += f" | {spread} | {baselines} |"
    return "\n".join(lines)


def main() -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 7])
    parser.add_argument(
        "--models", nargs="+", choices=sorted(raw["models"]), default=list(raw["models"])
    )
    parser.add_argument("--out", type=Path, help="write every result here as JSON")
    args = parser.parse_args()
    if len(set(args.seeds)) < len(args.seeds):
        parser.error("--seeds: each seed once")
    runs = []
    for dataset in dict.fromkeys(raw["models"][m]["dataset"] for m in args.models):
        for seed in args.seeds:
            print(f"{dataset}, seed {seed}", file=sys.stderr)
            params = dataset_params(raw, dataset, args.models, seed)
            for result in run_pipeline(params, list(params["models"]), seed):
                runs.append(result | {"dataset": dataset})
            if args.out:  # after every run: a bench stopped part-way keeps what it finished
                args.out.write_text(json.dumps(runs, indent=2))
    print(table(runs, args.seeds))


if __name__ == "__main__":
    main()
