"""Stage `ingest@<dataset>`: bring a dataset's raw files into their standard on-disk format.

Reads `datasets.<name>` of params.yaml. Writes `<paths.raw>/<name>/`:
- `sklearn:digits`: an image folder, one sub-folder per class, one PNG per image;
- `sktime:<Name>`: the archive's `<Name>_TRAIN.ts` and `<Name>_TEST.ts` as sktime ships them;
- `folder` / `ts`: the user's own files stay at `datasets.<name>.path` (tracked there with
  `dvc add`, never copied); ingest checks them and writes only `source.json`, naming them.
Nothing is downloaded: a name that sktime would have to fetch is an error.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from stages.atomic import atomic_dir, write_json
from stages.config import DatasetConfig, load_params
from stages.errors import PipelineError, cli, item_name
from stages.images import check_image, list_image_folder
from stages.tsfile import find_pair, read_ts


def run(name: str, ds: DatasetConfig, out: Path) -> Path:
    """Write dataset `name` from `ds.source` into `out` (atomically); return `out`."""
    kind, _, arg = ds.source.partition(":")
    with atomic_dir(out) as tmp:
        if kind == "sklearn":
            _write_digits(tmp)
        elif kind == "sktime":
            _copy_sktime(arg, tmp)
        elif kind == "folder":
            classes = list_image_folder(ds.path)
            for files in classes.values():
                for f in files:
                    check_image(f, ds.image.max_pixels)
            write_json(tmp / "source.json", {"source": ds.source, "path": str(ds.path)})
        elif kind == "ts":
            for f in find_pair(ds.path):
                read_ts(f)
            write_json(tmp / "source.json", {"source": ds.source, "path": str(ds.path)})
        else:  # config.py's pattern admits only the kinds above
            raise PipelineError(f"datasets.{name}.source: unknown source '{ds.source}'")
    return out


def _write_digits(out: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # The images hold 0..16; scale to the full 8-bit range a PNG reader expects.
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    for index, (image, label) in enumerate(zip(pixels, digits.target, strict=True)):
        folder = out / str(label)
        folder.mkdir(exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / f"{index:04d}.png")


def shipped_sktime_datasets() -> dict[str, Path]:
    """Classification archives that ship inside the installed sktime, as name → folder holding
    the pair (its regression archives, such as Tecator, label series with numbers instead)."""
    import sktime.datasets

    data = Path(sktime.datasets.__file__).parent / "data"
    return {
        d.name: d
        for d in sorted(data.iterdir())
        if (d / f"{d.name}_TEST.ts").is_file() and _is_classification(d / f"{d.name}_TRAIN.ts")
    }


def _is_classification(train_file: Path) -> bool:
    """Whether a `.ts` file's header says `@classLabel true` (read up to `@data` only)."""
    if not train_file.is_file():
        return False
    with train_file.open(errors="replace") as lines:
        for line in lines:
            words = line.lower().split()
            if words[:1] == ["@data"]:
                break
            if words[:2] == ["@classlabel", "true"]:
                return True
    return False


def _copy_sktime(archive: str, out: Path) -> None:
    shipped = shipped_sktime_datasets()
    by_lower = {name.lower(): name for name in shipped}
    if archive.lower() not in by_lower:
        raise PipelineError(
            f"sktime archive '{archive}' does not ship with sktime as a classification archive "
            f"(it would have to be downloaded); shipped: {', '.join(shipped)}"
        )
    name = by_lower[archive.lower()]
    for split in ("TRAIN", "TEST"):
        shutil.copyfile(shipped[name] / f"{name}_{split}.ts", out / f"{name}_{split}.ts")


def main(argv: list[str]) -> None:
    name = item_name(argv, "ingest", "dataset")
    params = load_params()
    run(name, params.dataset(name), params.paths.raw / name)


if __name__ == "__main__":
    cli(main)
