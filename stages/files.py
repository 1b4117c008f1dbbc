"""Files the operating system leaves beside data (`.DS_Store`, `Thumbs.db`, `desktop.ini`,
dot-files): `is_hidden` is the one rule that skips them everywhere (image folders, `.ts` pairs,
fingerprints, batch prediction), so they never change a result or re-run a stage."""

from __future__ import annotations

from pathlib import Path

# Windows writes these next to images; macOS's own (.DS_Store, ._*) start with a dot.
SYSTEM_FILES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini"})


def is_hidden(name: str) -> bool:
    """A dot-file/folder or an OS thumbnail/settings file: never data, never fingerprinted."""
    return name.startswith(".") or name.lower() in SYSTEM_FILES


def visible_files(root: Path) -> list[Path]:
    """Every file under `root` but hidden ones (or ones in hidden folders), sorted."""
    files = (p for p in root.rglob("*") if p.is_file())
    return sorted(p for p in files if not any(map(is_hidden, p.relative_to(root).parts)))
