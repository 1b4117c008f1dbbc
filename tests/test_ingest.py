import json

import pytest
from PIL import Image

from stages import ingest
from stages.errors import PipelineError, cli
from tests.conftest import tiny_cases, write_image_folder, write_ts_pair
from tests.test_images import write_png_header


def test_digits_become_an_image_folder(make_params, tmp_path):
    params = make_params()
    out = ingest.run("digits", params.datasets["digits"], tmp_path / "raw" / "digits")
    classes = sorted(p.name for p in out.iterdir())
    assert classes == [str(d) for d in range(10)]
    files = sorted(out.rglob("*.png"))
    assert len(files) == 1797
    with Image.open(files[0]) as img:
        assert img.size == (8, 8) and img.mode == "L"
        assert img.getextrema()[1] > 200  # scaled from 0..16 to the 8-bit range


def test_sktime_archive_is_copied_as_ts_pair(make_params, tmp_path):
    params = make_params()
    out = ingest.run("japanese_vowels", params.datasets["japanese_vowels"], tmp_path / "jv")
    assert sorted(p.name for p in out.iterdir()) == [
        "JapaneseVowels_TEST.ts",
        "JapaneseVowels_TRAIN.ts",
    ]
    assert (out / "JapaneseVowels_TRAIN.ts").read_text().startswith("#A UCI Archive")


def test_sktime_name_that_needs_a_download_lists_shipped(make_params, tmp_path):
    params = make_params(
        {"far": {"source": "sktime:FaceAll", "path": str(tmp_path / "raw" / "far")}}
    )
    with pytest.raises(PipelineError, match="'FaceAll' does not ship.*JapaneseVowels"):
        ingest.run("far", params.datasets["far"], tmp_path / "raw" / "far")
    assert not (tmp_path / "raw" / "far").exists()


def _user(make_params, tmp_path, source, path):
    extra = {"image": {"size": [8, 8]}, "split": {"test": 0.25}} if source == "folder" else {}
    return make_params({"mine": {"source": source, "path": str(path), **extra}})


def test_user_folder_is_checked_and_named_not_copied(make_params, tmp_path):
    folder = write_image_folder(tmp_path / "mine", {"cat": 3, "dog": 3})
    params = _user(make_params, tmp_path, "folder", folder)
    out = ingest.run("mine", params.datasets["mine"], tmp_path / "raw" / "mine")
    assert [p.name for p in out.iterdir()] == ["source.json"]
    assert json.loads((out / "source.json").read_text()) == {
        "source": "folder",
        "path": str(folder),
    }


def test_user_ts_pair_is_checked(make_params, tmp_path):
    folder = write_ts_pair(tmp_path / "seqs", tiny_cases(4), tiny_cases(2, seed=1))
    params = _user(make_params, tmp_path, "ts", folder)
    out = ingest.run("mine", params.datasets["mine"], tmp_path / "raw" / "mine")
    assert (out / "source.json").is_file()


@pytest.mark.parametrize(
    ("source", "setup", "message"),
    [
        ("folder", lambda p: None, "no such folder"),
        ("ts", lambda p: None, "no such folder"),
        ("folder", lambda p: write_image_folder(p, {"only": 2}), "need at least two"),
        ("ts", lambda p: p.mkdir(), r"expected exactly one \*_TRAIN.ts file"),
    ],
)
def test_bad_user_data_leaves_earlier_output(make_params, tmp_path, source, setup, message):
    path = tmp_path / "mine"
    setup(path)
    params = _user(make_params, tmp_path, source, path)
    out = tmp_path / "raw" / "mine"
    out.mkdir(parents=True)
    (out / "source.json").write_text("earlier")
    with pytest.raises(PipelineError, match=message):
        ingest.run("mine", params.datasets["mine"], out)
    assert (out / "source.json").read_text() == "earlier"
    assert [p.name for p in out.parent.iterdir()] == ["mine"]  # no temporary left behind


def test_unreadable_image_is_named(make_params, tmp_path):
    folder = write_image_folder(tmp_path / "mine", {"cat": 2, "dog": 2})
    (folder / "dog" / "001.png").write_bytes(b"not a png at all")
    params = _user(make_params, tmp_path, "folder", folder)
    with pytest.raises(PipelineError, match=r"dog/001.png: unreadable image"):
        ingest.run("mine", params.datasets["mine"], tmp_path / "raw" / "mine")


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        # Above the default image.max_pixels (PIL's limit), where PIL itself only warns.
        (10_000, 9_000, r"90,000,000 pixels, more than image.max_pixels \(89,478,485\)"),
        (20_000, 20_000, "more than 178,956,970 pixels"),  # where PIL refuses by itself
    ],
)
def test_decompression_bomb_is_named(make_params, tmp_path, width, height, message):
    folder = write_image_folder(tmp_path / "mine", {"cat": 2, "dog": 2})
    write_png_header(folder / "dog" / "bomb.png", width, height)
    params = _user(make_params, tmp_path, "folder", folder)
    with pytest.raises(PipelineError, match=rf"dog/bomb.png: .*{message}"):
        ingest.run("mine", params.datasets["mine"], tmp_path / "raw" / "mine")


def test_os_files_in_a_user_folder_are_skipped(make_params, tmp_path):
    folder = write_image_folder(tmp_path / "mine", {"cat": 2, "dog": 2})
    for junk in (".DS_Store", "cat/Thumbs.db", "dog/desktop.ini", "dog/._000.png"):
        (folder / junk).write_bytes(b"not an image")
    params = _user(make_params, tmp_path, "folder", folder)
    assert ingest.run("mine", params.datasets["mine"], tmp_path / "raw" / "mine").is_dir()


def test_cli_exits_2_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["ingest", "no_such_dataset"])
    with pytest.raises(SystemExit) as info:
        cli(ingest.main)
    assert info.value.code == 2
    assert "error: unknown dataset 'no_such_dataset'" in capsys.readouterr().err
