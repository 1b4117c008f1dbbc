"""Every classification archive that ships inside sktime, through the pipeline's own stages.

For each archive and seed, a temporary copy of the repository gets a params.yaml whose only
dataset is that archive (with the default sequence dataset's split section) and whose models
are the default sequence models (those of params.yaml, or of the file `--params` names, whose
dataset holds sequences), each with only `dataset` changed; seed s sets `trainer.seed` and the
split seed. `dvc repro --keep-going` runs there with its own SQLite MLflow store, and the test
accuracy and training seconds come from `metrics/eval/<model>.json` and
`metrics/train/<model>.json`. A stage that fails is an error cell, not the end of the suite.
Beside the models: the majority class, 1-NN Euclidean and 1-NN DTW on the archive's own
TRAIN/TEST files, z-normalised per channel with the TRAIN file's statistics as prepare does,
Euclidean padding shorter series with their last value (bench/suite/baselines.py), and the
published InceptionTime and FCN figures (bench/suite/published.py). Prints a markdown table,
with the mean over archives last; `--out` writes every raw result as JSON. `UnitTest`, a cut
ChinaTown that sktime ships as a test fixture, is left out.

    python bench/sequence_suite.py                                  # every archive, seed 0
    python bench/sequence_suite.py --seeds 3 --out suite.json       # mean ± std over 3 seeds
    python bench/sequence_suite.py --archives GunPoint --models lstm --max-epochs 1
    python bench/sequence_suite.py --params mine.yaml --models resnet  # a recipe of your own
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from suite.args import positive

# `suite` is bench/suite: Python puts this script's folder first on sys.path.
from suite.baselines import describe_and_score
from suite.published import PUBLISHED
from suite.repo import ROOT, run_pipeline

from stages.config import parse_params, read_raw_params
from stages.errors import PipelineError
from stages.ingest import shipped_sktime_datasets

FIXTURES = {"UnitTest"}


def sequence_models(raw: dict) -> list[str]:
    """The models of `raw` params whose dataset holds sequences, in params.yaml's order."""
    params = parse_params(raw)
    return [
        name for name, m in params.models.items() if params.datasets[m.dataset].kind == "sequence"
    ]


def suite_params(
    raw: dict, archive: str, models: list[str], seed: int, max_epochs: int | None
) -> dict:
    """`raw` with `archive` as its only dataset and `models` moved onto it."""
    key = archive.lower()
    # The default sequence dataset: the first sequence model's.
    default = raw["models"][sequence_models(raw)[0]]["dataset"]
    split = raw["datasets"][default].get("split", {}) | {"seed": seed}
    raw_folder = raw.get("paths", {}).get("raw", "data/raw")
    entries = {}
    for name in models:
        entries[name] = raw["models"][name] | {"dataset": key}
        if max_epochs is not None:  # and no minimum of optimiser steps beyond them
            entries[name] |= {"max_epochs": max_epochs, "min_steps": 0}
    return raw | {
        "datasets": {
            key: {"source": f"sktime:{archive}", "path": f"{raw_folder}/{key}", "split": split}
        },
        "models": entries,
        "tune": {k: v for k, v in raw.get("tune", {}).items() if k in entries},
        "trainer": raw.get("trainer", {}) | {"seed": seed},
    }


def spread(values: list[float], digits: int = 3) -> str:
    """`mean ± std` (sample std) of `values`, or the one value."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def model_cell(runs: list[dict], model: str, field: str, digits: int) -> tuple[str, float | None]:
    """A model's cell over seeds (failed seeds named), and its mean for the last row."""
    mine = [r for r in runs if r["model"] == model]
    values = [r[field] for r in mine if field in r]
    errors = sorted({r["error"] for r in mine if "error" in r})
    if not values:
        return f"error: {', '.join(errors)}", None
    note = f" ({len(mine) - len(values)} failed: {', '.join(errors)})" if errors else ""
    return spread(values, digits) + note, statistics.mean(values)


def table(results: dict[str, dict], models: list[str]) -> str:
    """The markdown table: one row per archive, then the mean of each column over archives."""
    header = ["archive", "n_train", "n_test", "length", "classes", *models, "majority"]
    header += ["1-NN ED", "1-NN DTW", "InceptionTime", "FCN", *(f"{m} s" for m in models)]
    rows, numbers = [], []
    for archive, found in results.items():
        low, high = found["length"]
        length = low if low == high else f"{low}–{high}"
        reference = [found[k] for k in ("majority", "1nn_euclidean", "1nn_dtw")]
        reference += PUBLISHED.get(archive, (None, None))
        # (cell, value for the mean row, digits) per column after the archive's shape
        cells = [model_cell(found["runs"], m, "test_accuracy", 3) + (3,) for m in models]
        cells += [("–" if v is None else f"{v:.3f}", v, 3) for v in reference]
        cells += [model_cell(found["runs"], m, "train_seconds", 1) + (1,) for m in models]
        rows.append([archive, found["n_train"], found["n_test"], length, found["classes"]])
        rows[-1] += [text for text, _, _ in cells]
        numbers.append([(value, digits) for _, value, digits in cells])
    means = []
    for column in zip(*numbers, strict=True):
        present = [value for value, _ in column if value is not None]
        digits = column[0][1]
        partial = f" (of {len(present)})" if len(present) < len(column) else ""
        means.append(f"{statistics.mean(present):.{digits}f}{partial}" if present else "–")
    rows.append(["mean", "", "", "", "", *means])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    shipped = {n: d for n, d in shipped_sktime_datasets().items() if n not in FIXTURES}
    # --params first (without -h, which must show every option): it sets --models' choices.
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument(
        "--params",
        type=Path,
        default=ROOT / "params.yaml",
        help="the params whose sequence models run, e.g. a copy with a recipe of your own "
        "(default: this repository's params.yaml)",
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[first])
    path = first.parse_known_args()[0].params
    try:  # checked as a stage would check it
        raw = read_raw_params(path)
        parse_params(raw, source=str(path))
    except PipelineError as exc:
        parser.error(str(exc))
    defaults = sequence_models(raw)
    parser.add_argument("--seeds", type=positive, default=1, help="seeds 0..N-1 (default 1)")
    parser.add_argument(
        "--archives",
        nargs="+",
        choices=sorted(shipped),
        default=sorted(shipped),
        metavar="NAME",
        help=f"default: all of {', '.join(sorted(shipped))}",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=defaults,
        default=defaults,
        metavar="MODEL",
        help=f"default: all of {', '.join(defaults)}",
    )
    parser.add_argument(
        "--max-epochs", type=positive, help="every model's max_epochs, min_steps 0 (smoke runs)"
    )
    parser.add_argument(
        "--out", type=Path, help="write every raw result here as JSON (after each archive)"
    )
    args = parser.parse_args()
    if not defaults:
        sys.exit(f"{args.params} has no model of a sequence dataset: nothing to run")
    results = {}
    for archive in args.archives:
        print(f"{archive}: baselines", file=sys.stderr)
        found = describe_and_score(shipped[archive], archive)
        print(f"  1-NN DTW {found['dtw_seconds']} s", file=sys.stderr)
        found["runs"] = []
        for seed in range(args.seeds):
            params = suite_params(raw, archive, args.models, seed, args.max_epochs)
            found["runs"] += run_pipeline(params, args.models, seed)
        results[archive] = found
        if args.out:  # after every archive: a suite stopped part-way keeps what it finished
            args.out.write_text(json.dumps(results, indent=2))
    print(table(results, args.models))


if __name__ == "__main__":
    main()
