"""Atomic outputs: a failed write names its target and leaves the previous output whole."""

import errno
import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from stages import atomic
from stages.atomic import atomic_dir, atomic_outputs, write_json
from stages.errors import PipelineError
from tests.test_train import raising

FULL_DISK = OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_in_write_json_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "metrics" / "cnn.json"
    write_json(target, {"old": 1})
    before = target.read_bytes()
    monkeypatch.setattr(Path, "write_text", raising(FULL_DISK))
    with pytest.raises(PipelineError, match=f"{re.escape(str(target))}: not written: .*No space"):
        write_json(target, {"new": 2})
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["cnn.json"]  # the temporary is gone


def test_numpy_short_write_in_a_folder_names_the_folder(tmp_path, monkeypatch):
    """numpy's own message on a full disk names no file: "… requested and … written"."""
    target = tmp_path / "prepared" / "digits"
    with atomic_dir(target) as tmp:
        np.save(tmp / "x.npy", np.zeros(3))
    before = (target / "x.npy").read_bytes()
    monkeypatch.setattr(np, "save", raising(OSError("24 requested and 0 written")))
    message = f"{re.escape(str(target))}: not written: 24 requested and 0 written"
    with pytest.raises(PipelineError, match=message), atomic_dir(target) as tmp:
        (tmp / "y.npy").write_bytes(b"partial")
        np.save(tmp / "x.npy", np.ones(3))
    assert [p.name for p in target.iterdir()] == ["x.npy"]
    assert (target / "x.npy").read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["digits"]


def test_failed_rename_of_a_folder_puts_the_old_one_back(tmp_path, monkeypatch):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "model.pt").write_text("old")

    def replace(src, dst):  # moving the old folder aside works, moving the new one in does not
        if Path(src).name == "model" and Path(dst) == target:
            raise FULL_DISK
        os.replace(src, dst)

    monkeypatch.setattr(atomic, "os", SimpleNamespace(replace=replace))
    failing = pytest.raises(PipelineError, match=re.escape(f"{target}: not written"))
    with failing, atomic_dir(target) as tmp:
        (tmp / "model.pt").write_text("new")
    assert (target / "model.pt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_outputs_are_replaced_together_or_not_at_all(tmp_path):
    folder, file = tmp_path / "models" / "cnn", tmp_path / "metrics" / "cnn.json"
    with atomic_outputs(folder, file) as (folder_tmp, file_tmp):
        folder_tmp.mkdir()
        (folder_tmp / "model.pt").write_text("old")
        file_tmp.write_text("old")
    with pytest.raises(RuntimeError), atomic_outputs(folder, file) as (folder_tmp, file_tmp):
        folder_tmp.mkdir()
        (folder_tmp / "model.pt").write_text("new")
        file_tmp.write_text("new")
        raise RuntimeError("the step after the writes failed")
    assert (folder / "model.pt").read_text() == file.read_text() == "old"
    with atomic_outputs(folder, file) as (folder_tmp, file_tmp):
        folder_tmp.mkdir()
        (folder_tmp / "model.pt").write_text("new")
        file_tmp.write_text("new")
    assert (folder / "model.pt").read_text() == file.read_text() == "new"
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "cnn",
        "cnn.json",
        "metrics",
        "model.pt",
        "models",
    ]
