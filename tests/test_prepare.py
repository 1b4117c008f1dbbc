import json

import numpy as np
import pytest
from PIL import Image

from stages import ingest, prepare
from stages.errors import PipelineError
from tests.conftest import tiny_cases, ts_text, write_image_folder, write_ts_pair
from tests.test_images import write_png_header


def _images(make_params, folder, size=(8, 8), channels=1, test=0.25, val=0.25, **image):
    ds = {
        "source": "folder",
        "path": str(folder),
        "image": {"size": list(size), "channels": channels, **image},
        "split": {"test": test, "val": val, "seed": 3},
    }
    return make_params({"mine": ds}).datasets["mine"]


def _sequences(make_params, folder, channels=None, normalize=None):
    ds = {"source": "ts", "path": str(folder), "split": {"val": 0.25, "seed": 3}}
    if channels is not None:
        ds["sequence"] = {"channels": channels}
    if normalize is not None:
        ds["sequence"] = ds.get("sequence", {}) | {"normalize": normalize}
    return make_params({"mine": ds}).datasets["mine"]


def test_mixed_images_become_one_shape(make_params, tmp_path):
    folder = tmp_path / "mine"
    write_image_folder(folder, {"cat": 4}, size=(20, 13), mode="RGB", fmt="JPEG")
    write_image_folder(folder, {"dog": 4}, size=(8, 8), mode="L", fmt="BMP")
    write_image_folder(folder, {"eel": 4}, size=(31, 40), mode="RGB", fmt="PNG")
    ds = _images(make_params, folder, size=(16, 12), channels=3)
    meta = prepare.run("mine", ds, tmp_path / "out")
    x = np.load(tmp_path / "out" / "x_train.npy")
    assert x.dtype == np.float32 and x.shape[1:] == (3, 16, 12)
    assert meta["classes"] == ["cat", "dog", "eel"]
    assert meta["input_shape"] == [3, 16, 12]
    counts = {s: meta["counts"][s]["total"] for s in ("train", "val", "test")}
    assert counts == {"train": 6, "val": 3, "test": 3}
    assert all(meta["counts"]["test"]["per_class"][c] == 1 for c in meta["classes"])


def test_normalisation_comes_from_train_only(make_params, tmp_path):
    folder = write_image_folder(tmp_path / "mine", {"a": 8, "b": 8})
    meta = prepare.run("mine", _images(make_params, folder), tmp_path / "out")
    x_train = np.load(tmp_path / "out" / "x_train.npy")
    assert x_train.mean() == pytest.approx(0.0, abs=1e-5)
    assert x_train.std() == pytest.approx(1.0, abs=1e-4)
    assert np.load(tmp_path / "out" / "x_test.npy").mean() != pytest.approx(0.0, abs=1e-5)
    assert len(meta["normalization"]["mean"]) == 1


def test_splits_are_stratified(make_params, tmp_path):
    params = make_params()
    raw = ingest.run("digits", params.datasets["digits"], tmp_path / "raw" / "digits")
    meta = prepare.run("digits", params.datasets["digits"], tmp_path / "a")
    sizes = {s: meta["counts"][s]["total"] for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == pytest.approx(0.2 * 1797, abs=1)
    assert sizes["val"] == pytest.approx(0.15 * 1797, abs=2)
    for c in meta["classes"]:
        n = len(list((raw / c).iterdir()))
        assert sum(meta["counts"][s]["per_class"][c] for s in sizes) == n
        assert meta["counts"]["test"]["per_class"][c] == pytest.approx(0.2 * n, abs=1)


def test_split_indices_partition_and_follow_the_seed(make_params, tmp_path):
    labels = np.repeat(np.arange(3), 20)
    folder = write_image_folder(tmp_path / "mine", {"a": 2, "b": 2})
    ds = _images(make_params, folder, test=0.2, val=0.2)
    classes = ["x", "y", "z"]
    idx = prepare._split_indices(labels, ds, classes)
    together = np.concatenate([idx["train"], idx["val"], idx["test"]])
    assert sorted(together.tolist()) == list(range(60))
    assert [len(idx[s]) for s in ("train", "val", "test")] == [36, 12, 12]
    again = prepare._split_indices(labels, ds, classes)
    assert all((again[s] == idx[s]).all() for s in idx)
    other = prepare._split_indices(
        labels, ds.model_copy(update={"split": ds.split.model_copy(update={"seed": 4})}), classes
    )
    assert any((other[s] != idx[s]).any() for s in idx)


def test_prepare_is_byte_identical_twice(make_params, tmp_path):
    params = make_params()
    for name in ("digits", "japanese_vowels"):
        ds = params.datasets[name]
        ingest.run(name, ds, ds.path)
        prepare.run(name, ds, tmp_path / "one" / name)
        prepare.run(name, ds, tmp_path / "two" / name)
        for f in sorted((tmp_path / "one" / name).iterdir()):
            assert f.read_bytes() == (tmp_path / "two" / name / f.name).read_bytes(), f


def test_sequences_keep_lengths_and_pad(make_params, tmp_path):
    train, test = tiny_cases(8), tiny_cases(3, seed=1)
    folder = write_ts_pair(tmp_path / "seqs", train, test)
    ds = _sequences(make_params, folder, channels=2, normalize="dataset")
    meta = prepare.run("mine", ds, tmp_path / "out")
    out = tmp_path / "out"
    longest = max(len(c[0][0]) for c in train + test)
    assert meta["input_shape"] == [longest, 2] and meta["max_length"] == longest
    x_test, len_test = np.load(out / "x_test.npy"), np.load(out / "len_test.npy")
    assert x_test.shape == (6, longest, 2)
    assert len_test.tolist() == [len(c[0][0]) for c in test]
    for row, n in zip(x_test, len_test, strict=True):
        assert not row[n:].any()  # zero padding after each series' end
    mean = np.array(meta["normalization"]["mean"])
    std = np.array(meta["normalization"]["std"])
    first = np.array(test[0][0]).T
    np.testing.assert_allclose(x_test[0, : len(first)], (first - mean) / std, rtol=1e-5)
    assert meta["counts"]["train"]["total"] + meta["counts"]["val"]["total"] == 16


def test_per_series_normalisation_is_shape_then_level_and_scale(make_params, tmp_path):
    train, test = tiny_cases(8), tiny_cases(3, seed=1)
    # The same test series again, shifted and scaled per channel: the same shape, another
    # level and scale.
    values, label = test[0]
    test.append(([[v * 50.0 + 7.0 for v in values[0]], [v * 0.5 - 3.0 for v in values[1]]], label))
    folder = write_ts_pair(tmp_path / "seqs", train, test)
    meta = prepare.run("mine", _sequences(make_params, folder, normalize="series"), tmp_path / "o")
    out = tmp_path / "o"
    assert meta["normalization"]["per_series"] is True
    assert meta["channels"] == 2 and meta["input_shape"][1] == 6  # shape, level, log-scale
    x, lengths = np.load(out / "x_test.npy"), np.load(out / "len_test.npy")
    n = lengths[0]
    np.testing.assert_allclose(x[-1, :n, :2], x[0, :n, :2], atol=1e-5)
    assert not np.allclose(x[-1, :n, 2:], x[0, :n, 2:])
    assert (x[0, :n, 2:] == x[0, 0, 2:]).all()  # level and scale: constant over the steps
    assert not x[0, n:].any()  # padding stays zero
    stats = np.load(out / "series_stats_test.npy")
    assert stats.shape == (len(test), 2, 2)
    np.testing.assert_allclose(stats[0, 0], np.mean(values, axis=1))
    np.testing.assert_allclose(stats[0, 1], np.std(values, axis=1))
    mean, std = (np.array(meta["normalization"][k]) for k in ("mean", "std"))
    expected_level = (stats[0, 0] - mean[2:4]) / std[2:4]
    np.testing.assert_allclose(x[0, 0, 2:4], expected_level, rtol=1e-5)
    # Before the train split's statistics, every train series' shape is zero-mean, unit-deviation.
    x_train, len_train = np.load(out / "x_train.npy"), np.load(out / "len_train.npy")
    for row, m in zip(x_train, len_train, strict=True):
        shape = row[:m, :2] * std[:2] + mean[:2]
        np.testing.assert_allclose(shape.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(shape.std(axis=0), 1.0, atol=1e-5)


def test_series_normalisation_is_the_default(make_params, tmp_path):
    folder = write_ts_pair(tmp_path / "seqs", tiny_cases(8), tiny_cases(3, seed=1))
    meta = prepare.run("mine", _sequences(make_params, folder), tmp_path / "o")
    assert meta["normalization"]["per_series"] is True and meta["input_shape"][1] == 6


def test_a_level_every_series_shares_is_no_feature(make_params, tmp_path):
    """An archive z-normalised already: the level and scale channels are float noise around
    one value, and stay zero instead of being scaled up to unit deviation."""

    def znormed(n, seed):
        cases = tiny_cases(n, seed=seed)
        for values, _ in cases:
            for ch in values:
                a = np.array(ch)
                ch[:] = ((a - a.mean()) / a.std()).tolist()
        return cases

    folder = write_ts_pair(tmp_path / "seqs", znormed(8, 0), znormed(3, 1))
    prepare.run("mine", _sequences(make_params, folder, normalize="series"), tmp_path / "o")
    x = np.load(tmp_path / "o" / "x_train.npy")
    assert np.abs(x[..., 2:]).max() < 1e-3
    assert np.abs(x[..., :2]).max() > 0.5


def test_dataset_normalisation_writes_no_series_statistics(make_params, tmp_path):
    folder = write_ts_pair(tmp_path / "seqs", tiny_cases(8), tiny_cases(3, seed=1))
    meta = prepare.run("mine", _sequences(make_params, folder, normalize="dataset"), tmp_path / "o")
    assert meta["normalization"]["per_series"] is False
    assert not list((tmp_path / "o").glob("series_stats_*"))


def test_japanese_vowels_shape(make_params, tmp_path):
    params = make_params()
    ds = params.datasets["japanese_vowels"]
    ingest.run("japanese_vowels", ds, ds.path)
    meta = prepare.run("japanese_vowels", ds, tmp_path / "out")
    assert meta["classes"] == [str(i) for i in range(1, 10)]
    assert meta["input_shape"] == [29, 12]
    assert meta["counts"]["test"]["total"] == 370
    assert meta["counts"]["train"]["total"] + meta["counts"]["val"]["total"] == 270


def test_sixteen_bit_pngs_are_scaled_like_their_eight_bit_originals(make_params, tmp_path):
    eight = write_image_folder(tmp_path / "eight", {"a": 4, "b": 4})
    for f in eight.rglob("*.png"):  # the same pictures as 16-bit PNGs (PIL mode I;16)
        deep = tmp_path / "deep" / f.relative_to(eight)
        deep.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(Image.open(f)).astype(np.uint16) * 257).save(deep)
    prepare.run("mine", _images(make_params, eight), tmp_path / "out8")
    prepare.run("mine", _images(make_params, tmp_path / "deep"), tmp_path / "out16")
    for split in ("train", "val", "test"):
        x8 = np.load(tmp_path / "out8" / f"x_{split}.npy")
        np.testing.assert_array_equal(np.load(tmp_path / "out16" / f"x_{split}.npy"), x8)


def test_hidden_and_os_files_change_nothing(make_params, tmp_path):
    folder = write_image_folder(tmp_path / "mine", {"a": 4, "b": 4})
    ds = _images(make_params, folder)
    prepare.run("mine", ds, tmp_path / "before")
    for junk in (".DS_Store", "a/Thumbs.db", "b/desktop.ini", "a/._000.png", ".cache/x.png"):
        (folder / junk).parent.mkdir(exist_ok=True)
        (folder / junk).write_bytes(b"not data")
    prepare.run("mine", ds, tmp_path / "after")
    for f in sorted((tmp_path / "before").iterdir()):
        assert f.read_bytes() == (tmp_path / "after" / f.name).read_bytes(), f


# Bad input: each names the file (and line), and an earlier output stays as it was.


def _expect_error(ds, out, message):
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").write_text("earlier")
    with pytest.raises(PipelineError, match=message):
        prepare.run("mine", ds, out)
    assert [p.name for p in out.iterdir()] == ["meta.json"]
    assert (out / "meta.json").read_text() == "earlier"
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_truncated_image(make_params, tmp_path):
    folder = write_image_folder(tmp_path / "mine", {"a": 4, "b": 4}, size=(64, 64), fmt="JPEG")
    victim = folder / "b" / "002.jpg"
    victim.write_bytes(victim.read_bytes()[:300])
    _expect_error(
        _images(make_params, folder), tmp_path / "out", r"b/002.jpg: unreadable or truncated"
    )


def test_more_pixels_than_max_pixels(make_params, tmp_path):
    folder = write_image_folder(tmp_path / "mine", {"a": 4, "b": 4})
    _expect_error(
        _images(make_params, folder, max_pixels=63),
        tmp_path / "out",
        r"a/000.png: 8×8 = 64 pixels, more than image.max_pixels \(63\)",
    )


def test_decompression_bomb_is_named(make_params, tmp_path):
    folder = write_image_folder(tmp_path / "mine", {"a": 4, "b": 4})
    write_png_header(folder / "b" / "bomb.png", 20_000, 20_000)  # beyond PIL's own limit
    _expect_error(_images(make_params, folder), tmp_path / "out", "b/bomb.png: more than")


def test_empty_class(make_params, tmp_path):
    folder = write_image_folder(tmp_path / "mine", {"a": 4, "b": 4})
    (folder / "c").mkdir()
    _expect_error(_images(make_params, folder), tmp_path / "out", "class 'c' has no images")


def test_too_few_images_to_split(make_params, tmp_path):
    folder = write_image_folder(tmp_path / "mine", {"a": 4, "b": 1})
    _expect_error(_images(make_params, folder), tmp_path / "out", r"classes \['b'\] have fewer")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nan", "channel 1 has a NaN or infinite value"),
        ("inf", "channel 1 has a NaN or infinite value"),
        ("?", "channel 1 has a value that is not a number"),
    ],
)
def test_bad_value_in_series(make_params, tmp_path, value, message):
    folder = write_ts_pair(tmp_path / "seqs", tiny_cases(4), tiny_cases(2, seed=1))
    path = folder / "Tiny_TRAIN.ts"
    lines = path.read_text().splitlines()
    lines[10] = lines[10].replace(":", f":{value},", 1)  # the third series, second channel
    path.write_text("\n".join(lines) + "\n")
    _expect_error(_sequences(make_params, folder), tmp_path / "out", f"Tiny_TRAIN.ts:11: {message}")


def test_channel_count_differs_within_a_file(make_params, tmp_path):
    cases = tiny_cases(4) + [([[1.0, 2.0, 3.0]], "a")]
    folder = write_ts_pair(tmp_path / "seqs", cases, tiny_cases(2, seed=1))
    _expect_error(
        _sequences(make_params, folder),
        tmp_path / "out",
        "Tiny_TRAIN.ts:17: series has 1 channels, the file's first series has 2",
    )


def test_channel_count_differs_between_files(make_params, tmp_path):
    folder = write_ts_pair(tmp_path / "seqs", tiny_cases(4), tiny_cases(2, channels=3))
    _expect_error(
        _sequences(make_params, folder), tmp_path / "out", "Tiny_TEST.ts: series have 3 channels"
    )


def test_channel_count_differs_from_params(make_params, tmp_path):
    folder = write_ts_pair(tmp_path / "seqs", tiny_cases(4), tiny_cases(2, seed=1))
    _expect_error(
        _sequences(make_params, folder, channels=12),
        tmp_path / "out",
        "params say sequence.channels: 12",
    )


def test_test_labels_unseen_in_train(make_params, tmp_path):
    folder = tmp_path / "seqs"
    folder.mkdir()
    (folder / "Tiny_TRAIN.ts").write_text(ts_text(tiny_cases(4), ["a", "b", "c"]))
    (folder / "Tiny_TEST.ts").write_text(
        ts_text(tiny_cases(2, labels=("a", "c"), seed=1), ["a", "b", "c"])
    )
    _expect_error(
        _sequences(make_params, folder),
        tmp_path / "out",
        r"Tiny_TEST.ts: test labels \['c'\] never occur",
    )


def test_missing_path(make_params, tmp_path):
    _expect_error(_sequences(make_params, tmp_path / "nowhere"), tmp_path / "out", "no such folder")
    _expect_error(_images(make_params, tmp_path / "nowhere"), tmp_path / "out", "no such folder")


def test_cli_names_the_stage_to_run_first(tmp_path, monkeypatch, capsys):
    from stages.errors import cli

    monkeypatch.setattr("sys.argv", ["prepare", "digits"])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        json.dumps(
            {
                "datasets": {
                    "digits": {
                        "source": "sklearn:digits",
                        "path": "data/raw/digits",
                        "image": {"size": [8, 8]},
                        "split": {"test": 0.2},
                    }
                }
            }
        )
    )
    with pytest.raises(SystemExit):
        cli(prepare.main)
    assert "run `dvc repro ingest@digits` first" in capsys.readouterr().err
