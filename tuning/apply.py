"""Write a search's best values into params.yaml, so that `dvc repro` trains them (the train
stage's params change, so DVC sees it stale) and the champion gate of `register` decides.

Only the searched values' text changes: comments, layout and every other value stay as they
are (a YAML round trip would rewrite them). The result is checked to parse to the same params
with exactly those values changed, or the file is left untouched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from ruamel.yaml import YAML

from stages.atomic import atomic_file
from stages.config import parse_params
from stages.errors import PipelineError
from stages.tune_config import with_values

# A plain or quoted scalar as it stands in block or flow YAML.
SCALAR = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"\\]|\\.)*\"|[^,}\]\s#][^,}\]#\n]*?(?=\s*(?:[,}\]#]|$))"
)


def apply_best(params_file: Path, model: str, values: dict[str, Any]) -> list[str]:
    """Set `models.<model>.<key>` to each of `values` in `params_file`; returns the lines
    `key: old -> new` of what changed."""
    text = params_file.read_text()
    before = parse_params(yaml.safe_load(text), str(params_file))
    try:
        expected = with_values(before.model(model), values)
    except ValidationError as exc:
        where = ".".join(str(part) for part in exc.errors()[0]["loc"])
        raise PipelineError(
            f"{params_file}: models.{model}.{where}: {exc.errors()[0]['msg']}; nothing was written"
        ) from None
    places = _places(text, params_file, model, values)
    lines = text.splitlines(keepends=True)
    changes = []
    # Right to left, so that a longer value does not move the columns of those before it.
    for row, col, key, value in sorted(places, reverse=True):
        old = SCALAR.match(lines[row], col)
        if old is None:
            raise PipelineError(f"{params_file}:{row + 1}: cannot read models.{model}.{key}")
        new = _yaml_scalar(value)
        lines[row] = lines[row][: old.start()] + new + lines[row][old.end() :]
        changes.append(f"models.{model}.{key}: {old.group()} -> {new}")
    result = "".join(lines)
    after = parse_params(yaml.safe_load(result), str(params_file))
    if after.model(model) != expected or _without(after, model) != _without(before, model):
        raise PipelineError(
            f"{params_file}: applying {values} would change more than those values; "
            "nothing was written"
        )
    with atomic_file(params_file) as tmp:
        tmp.write_text(result)
    return changes


def check_applicable(params_file: Path, model: str, keys: list[str]) -> None:
    """That `apply_best` can write `keys` (each must be written in the file already): checked
    before a search starts, not after its last trial."""
    _places(params_file.read_text(), params_file, model, dict.fromkeys(keys))


def _places(text: str, params_file: Path, model: str, values: dict[str, Any]) -> list[tuple]:
    """(row, column, key, value) of each value's text in `text`."""
    entry = YAML().load(text)["models"][model]
    places = []
    for key, value in values.items():
        section, _, field = key.rpartition(".")
        holder = entry.get(section, {}) if section else entry
        if field not in holder:
            raise PipelineError(
                f"{params_file}: models.{model}.{key} is searched but not written in the file, "
                "so --apply cannot set it: write it there (its current value) first"
            )
        places.append((*holder.lc.value(field), key, value))
    return places


def _yaml_scalar(value: Any) -> str:
    """`value` as YAML writes it (a float keeps its dot: PyYAML reads `1e-05` as a string)."""
    return yaml.safe_dump(value, default_flow_style=True).splitlines()[0]


def _without(params: Any, model: str) -> dict:
    dumped = params.model_dump()
    dumped["models"].pop(model)
    return dumped
