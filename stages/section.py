"""The base of every params section: strict typed models that refuse unknown keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Strict

# YAML gives strings, not Paths: the one lax conversion strict models allow.
FilePath = Annotated[Path, Strict(False)]


class Section(BaseModel):
    """A params section: unknown keys are errors, and so are values of another type (strict:
    `true` or "64" is no batch size), but for paths and YAML lists given for tuples."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)
