"""Atomic outputs: write into temporaries beside the targets, rename them all on success.

A crash, bad input or a full disk never leaves a half-written output that DVC could cache: the
previous outputs stay in place until every new one is complete. A failed write (an OSError,
such as numpy's "requested and written" on a full disk, which names no file) becomes a
PipelineError that names the target.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stages.errors import PipelineError


@contextmanager
def atomic_outputs(*targets: Path) -> Iterator[tuple[Path, ...]]:
    """Yield one temporary path per target (files or folders, for the block to create).

    Each temporary has its target's own name, inside a hidden folder beside the target (same
    file system, so the final rename is cheap; an MLflow artifact logged from it keeps its
    name). When the block succeeds they replace their targets one after the other, at the end:
    renames take no space, so a full disk cannot stop them part-way. When it fails, they are
    removed and every target is as it was.
    """
    holders: list[Path] = []
    try:
        with _naming(targets):
            for target in targets:
                target.parent.mkdir(parents=True, exist_ok=True)
                holder = tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent)
                holders.append(Path(holder))
            temps = tuple(h / t.name for h, t in zip(holders, targets, strict=True))
            yield temps
            for temp, target in zip(temps, targets, strict=True):
                _replace(temp, target)
    finally:
        for holder in holders:
            shutil.rmtree(holder, ignore_errors=True)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces `target` when the block succeeds."""
    with atomic_outputs(target) as (tmp,):
        tmp.mkdir()
        yield tmp


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path (same name) that replaces `path` when the block succeeds."""
    with atomic_outputs(path) as (tmp,):
        yield tmp


def write_json(path: Path, data: object) -> None:
    """Write JSON with sorted keys (byte-stable across runs), atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json_text(data))


def json_text(data: object) -> str:
    """What write_json writes, for a JSON file among the temporaries of atomic_outputs."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


@contextmanager
def _naming(targets: tuple[Path, ...]) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        names = ", ".join(str(t) for t in targets)
        raise PipelineError(f"{names}: not written: {exc}") from exc


def _replace(temp: Path, target: Path) -> None:
    """Rename `temp` to `target`. A rename cannot replace a non-empty folder, so an old folder
    is moved aside into the temporary's holder first (removed with it), and back on failure."""
    if not (temp.is_dir() and target.is_dir()):
        os.replace(temp, target)
        return
    old = temp.with_name(f"{temp.name}.old")
    os.replace(target, old)
    try:
        os.replace(temp, target)
    except OSError:
        os.replace(old, target)
        raise
