"""Batch prediction with the champions the flow registered in its repository copy."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flows.predict import predict
from stages.errors import PipelineError


def test_folder_of_images(flow_repo, tmp_path):
    root, _ = flow_repo
    folder = tmp_path / "images"
    folder.mkdir()
    truth = {}
    for digit in range(10):
        for src in sorted((root / "data/raw/digits" / str(digit)).iterdir())[:4]:
            shutil.copy(src, folder / f"{digit}_{src.name}")
            truth[f"{digit}_{src.name}"] = str(digit)
    big = Image.open(folder / f"3_{sorted((root / 'data/raw/digits/3').iterdir())[0].name}")
    big.resize((32, 32)).convert("RGB").save(folder / "3_big.png")  # other size, colour
    truth["3_big.png"] = "3"
    out = tmp_path / "out" / "predictions.csv"
    assert predict("digits", str(folder), str(out)) == 41
    frame = pd.read_csv(out, dtype={"label": str})
    assert list(frame.columns) == ["input", "label"] + [f"prob_{d}" for d in range(10)]
    assert sorted(frame["input"]) == sorted(truth)
    assert np.allclose(frame.filter(like="prob_").sum(axis=1), 1.0)
    accuracy = np.mean(
        [truth[i] == label for i, label in zip(frame["input"], frame["label"], strict=True)]
    )
    assert accuracy >= 0.8  # two epochs of training on the shrunk params


def test_ts_file(flow_repo, tmp_path):
    root, _ = flow_repo
    test_file = root / "data/raw/japanese_vowels/JapaneseVowels_TEST.ts"
    out = tmp_path / "vowels.csv"
    assert predict("japanese_vowels", str(test_file), str(out)) == 370
    frame = pd.read_csv(out, dtype={"label": str})
    assert frame["input"].iloc[0] == "series_0"
    labels = [
        line.rsplit(":", 1)[1]
        for line in test_file.read_text().splitlines()
        if line and not line.startswith(("#", "@"))
    ]
    accuracy = np.mean(frame["label"].to_numpy() == np.array(labels))
    # The TEST file is the test split: the champion's accuracy is what evaluation measured.
    registry = json.loads((root / "metrics/registry.json").read_text())["japanese_vowels"]
    assert accuracy == pytest.approx(registry["champion_metric"])


def test_npy_array(flow_repo, tmp_path):
    root, _ = flow_repo
    pixels = np.stack(
        [np.asarray(Image.open(p)) for p in sorted((root / "data/raw/digits/7").iterdir())[:5]]
    ).astype(float)
    np.save(tmp_path / "sevens.npy", pixels)
    predict("digits", str(tmp_path / "sevens.npy"), str(tmp_path / "sevens.csv"))
    frame = pd.read_csv(tmp_path / "sevens.csv", dtype={"label": str})
    assert list(frame["input"]) == [f"row_{i}" for i in range(5)]


@pytest.mark.parametrize(
    ("dataset", "name", "make", "message"),
    [
        (
            "digits",
            "x.npy",
            lambda p: np.save(p, np.zeros((2, 8, 8, 2))),
            r"x.npy: Shape of input \(2, 8, 8, 2\) does not match",
        ),
        ("digits", "x.npy", lambda p: np.save(p, np.full((2, 8, 8), "a")), r"x.npy: .*type"),
        ("japanese_vowels", "x", lambda p: p.mkdir(), "x: a folder of images, but the model"),
        ("digits", "x.csv", lambda p: p.write_text("1,2"), "x.csv: expected a folder"),
        ("digits", "nothing.npy", lambda p: None, "nothing.npy: not a readable"),
    ],
)
def test_bad_input_names_the_file_and_writes_nothing(  # noqa: PLR0913
    flow_repo,
    tmp_path,
    dataset,
    name,
    make,
    message,
):
    make(tmp_path / name)
    with pytest.raises(PipelineError, match=message):
        predict(dataset, str(tmp_path / name), str(tmp_path / "out.csv"))
    assert not (tmp_path / "out.csv").exists()
