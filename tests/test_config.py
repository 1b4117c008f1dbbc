import copy

import pytest

from stages.config import load_params, parse_params
from stages.errors import PipelineError

TOP_LEVEL = ["datasets", "flow", "mlflow", "models", "paths", "register", "trainer"]


def test_repository_params_parse():
    params = load_params()
    assert set(params.datasets) >= {"digits", "japanese_vowels"}
    assert params.datasets["digits"].kind == "image"
    assert params.datasets["japanese_vowels"].kind == "sequence"


def _error(raw: dict) -> str:
    with pytest.raises(PipelineError) as info:
        parse_params(raw)
    return str(info.value)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda r: r["datasets"]["digits"].update(colour=True),
            "datasets.digits.colour: unknown key; "
            "allowed here: image, path, sequence, source, split",
        ),
        (
            lambda r: r["datasets"]["digits"]["image"].update(size=[8, "big"]),
            "datasets.digits.image.size.1",
        ),
        (
            lambda r: r["datasets"]["digits"]["image"].update(channels=2),
            "datasets.digits.image.channels: Input should be 1 or 3",
        ),
        (
            lambda r: r["datasets"]["digits"]["split"].update(val=1.5),
            "datasets.digits.split.val: Input should be less than 1",
        ),
        (
            lambda r: r["datasets"]["digits"].update(source="s3:bucket"),
            "datasets.digits.source: unknown source; "
            "allowed: sklearn:digits, sktime:<Name>, folder, ts",
        ),
        (
            lambda r: r["datasets"]["digits"].update(path="elsewhere"),
            "datasets.digits.path: a built-in source is written by ingest to 'data/raw/digits'",
        ),
        (
            lambda r: r["datasets"]["digits"].pop("image"),
            "datasets.digits: image datasets need an `image` section",
        ),
        (
            lambda r: r["datasets"]["japanese_vowels"]["split"].update(test=0.2),
            "split.test is not allowed",
        ),
        (
            lambda r: r["datasets"].update({"Bad-Name": r["datasets"]["digits"]}),
            "datasets.Bad-Name",
        ),
        (
            lambda r: r["datasets"].update(
                mine={
                    "source": "folder",
                    "path": "data/raw/mine",
                    "image": {"size": [8, 8]},
                    "split": {"test": 0.2},
                }
            ),
            "datasets.mine.path: your own data must live outside 'data/raw/mine'",
        ),
        (
            lambda r: r.update(extra={}),
            "extra: unknown key; allowed here: " + ", ".join(TOP_LEVEL),
        ),
    ],
)
def test_bad_params_name_the_key(raw_params, edit, expected):
    raw = copy.deepcopy(raw_params)
    edit(raw)
    assert expected in _error(raw)


def test_all_problems_reported_at_once(raw_params):
    raw = copy.deepcopy(raw_params)
    raw["datasets"]["digits"]["split"]["seed"] = "x"
    raw["datasets"]["japanese_vowels"]["sequence"]["channels"] = 0
    message = _error(raw)
    assert "datasets.digits.split.seed" in message
    assert "datasets.japanese_vowels.sequence.channels" in message


def test_missing_params_file(tmp_path):
    with pytest.raises(PipelineError, match="nope.yaml: file not found"):
        load_params(tmp_path / "nope.yaml")


def test_unknown_dataset_lists_known():
    with pytest.raises(PipelineError, match="unknown dataset 'cats'.*known: digits"):
        load_params().dataset("cats")
