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
from stages.errors import PipelineError, cli
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
                    check_image(f)
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
    """Archives that ship inside the installed sktime, as name → folder holding the pair."""
    import sktime.datasets

    data = Path(sktime.datasets.__file__).parent / "data"
    return {
        d.name: d
        for d in sorted(data.iterdir())
        if (d / f"{d.name}_TRAIN.ts").is_file() and (d / f"{d.name}_TEST.ts").is_file()
    }


def _copy_sktime(archive: str, out: Path) -> None:
    shipped = shipped_sktime_datasets()
    if archive not in shipped:
        raise PipelineError(
            f"sktime archive '{archive}' does not ship with sktime (it would have to be "
            f"downloaded); shipped: {', '.join(shipped)}"
        )
    for split in ("TRAIN", "TEST"):
        shutil.copyfile(shipped[archive] / f"{archive}_{split}.ts", out / f"{archive}_{split}.ts")


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise PipelineError("usage: python -m stages.ingest <dataset>")
    params = load_params()
    run(argv[0], params.dataset(argv[0]), params.paths.raw / argv[0])


if __name__ == "__main__":
    cli(main)
