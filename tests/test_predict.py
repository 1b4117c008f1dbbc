"""Batch prediction with the champions the flow registered in its repository copy."""

import json
import re
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flows.predict import main, predict
from stages.errors import PipelineError
from tests.test_images import write_png_header


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
            lambda p: np.save(p, np.zeros((2, 8, 8, 5))),
            r"x.npy: images must have shape .* got \(2, 8, 8, 5\)",
        ),
        ("digits", "x.npy", lambda p: np.save(p, np.full((2, 8, 8), "a")), "x.npy: .*numeric"),
        ("digits", "x.npy", lambda p: np.save(p, np.full((2, 8, 8), 300)), r"x.npy: .*0\.\.255"),
        (
            "digits",
            "imgs",
            lambda p: write_png_header(p.mkdir() or p / "bomb.png", 20_000, 20_000),
            "imgs/bomb.png: more than",
        ),
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


def test_sixteen_bit_images_as_their_originals_and_os_files_skipped(flow_repo, tmp_path):
    root, _ = flow_repo
    folder, sources = tmp_path / "images", sorted((root / "data/raw/digits/5").iterdir())[:3]
    (folder / "deep").mkdir(parents=True)
    for src in sources:
        shutil.copy(src, folder / src.name)
        deep = np.asarray(Image.open(src)).astype(np.uint16) * 257  # 16-bit PNG: mode I;16
        Image.fromarray(deep).save(folder / "deep" / src.name)
    for junk in (".DS_Store", "Thumbs.db", "deep/desktop.ini", "._0005.png", ".cache/x.png"):
        (folder / junk).parent.mkdir(exist_ok=True)
        (folder / junk).write_bytes(b"not an image")
    out = tmp_path / "out.csv"
    assert predict("digits", str(folder), str(out)) == 6
    frame = pd.read_csv(out, dtype={"label": str}).set_index("input")
    eight = frame.loc[[s.name for s in sources]]
    sixteen = frame.loc[[f"deep/{s.name}" for s in sources]]
    assert list(sixteen["label"]) == list(eight["label"])
    # The same pixels; only float rounding differs between rows of one batch.
    np.testing.assert_allclose(sixteen.filter(like="prob_"), eight.filter(like="prob_"), atol=1e-6)


def test_input_above_the_per_call_limit_is_sent_in_parts(flow_repo, tmp_path, monkeypatch):
    root, _ = flow_repo
    files = sorted((root / "data/raw/digits/4").iterdir())[:5]
    np.save(tmp_path / "fours.npy", np.stack([np.asarray(Image.open(f)) for f in files]))
    predict("digits", str(tmp_path / "fours.npy"), str(tmp_path / "whole.csv"))
    monkeypatch.setattr("flows.predict.MAX_INPUT_VALUES", 130)  # two 8×8 images per call
    predict("digits", str(tmp_path / "fours.npy"), str(tmp_path / "parts.csv"))
    whole, parts = (
        pd.read_csv(tmp_path / f"{n}.csv", dtype={"label": str}) for n in ("whole", "parts")
    )
    pd.testing.assert_frame_equal(parts, whole, atol=1e-6)  # batch size changes float rounding


@pytest.mark.parametrize(
    ("dataset", "store", "message"),
    [
        ("no_such", "none.db", r"error: unknown dataset 'no_such' in params.yaml; known: "),
        ("digits", "empty.db", r"error: dataset 'digits' has no champion in sqlite:///.*empty"),
        ("digits", "none.db", r"error: dataset 'digits' has no champion: .*none.db does not"),
    ],
)
def test_cli_without_a_champion_is_one_line_and_exit_2(  # noqa: PLR0913
    tmp_path, monkeypatch, capsys, dataset, store, message
):
    uri = f"sqlite:///{tmp_path / store}"
    mlflow.MlflowClient(f"sqlite:///{tmp_path / 'empty.db'}").search_experiments()
    capsys.readouterr()  # MLflow's log of creating that store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(SystemExit) as info:
        main([dataset, str(tmp_path), str(tmp_path / "out.csv")])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.match(message, lines[0]), lines
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "none.db").exists()
