"""`python -m stages.plots_page` (`make plots`): DVC's plots page with no script from a network,
run on a copy of this checkout and the evaluation outputs git tracks."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.suite.repo import copy_repo
from stages.errors import BAD_INPUT_EXIT

SPEC = re.compile(r"var spec = (\{.*?\});\s*vegaEmbed\('#", re.DOTALL)


def _plots_page(repo: Path, *args: str, tmp: Path | None = None) -> subprocess.CompletedProcess:
    env = os.environ | ({"TMPDIR": str(tmp)} if tmp else {})
    return subprocess.run(
        [sys.executable, "-m", "stages.plots_page", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, str]:
    """The page, and the repository copy it was made in."""
    work = tmp_path_factory.mktemp("plots")
    repo = copy_repo(work / "repo")
    (work / "tmp").mkdir()
    done = _plots_page(repo, "show", "-o", "page", tmp=work / "tmp")
    assert done.returncode == 0, done.stderr
    assert not list((work / "tmp").iterdir())  # the template lived only while DVC ran
    return repo, (repo / "page" / "index.html").read_text(encoding="utf-8")


def test_the_page_loads_nothing_from_a_network(page):
    _, html = page
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and not any("src" in tag for tag in scripts)
    assert "cdn.jsdelivr.net" not in html
    assert html.count("window.vegaEmbed=") == 1  # the libraries, inline, once
    assert '<meta charset="utf-8">' in html  # the bundle is not ASCII


def test_the_page_holds_every_models_confusion_plot(page):
    repo, html = page
    models = yaml.safe_load((repo / "params.yaml").read_text())["models"]
    specs = [json.loads(s) for s in SPEC.findall(html)]
    assert sorted(s["title"]["text"].split()[0] for s in specs) == sorted(models)
    for spec in specs:
        encoding = spec["spec"]["encoding"]
        assert (encoding["x"]["field"], encoding["y"]["field"]) == ("predicted", "actual")
        assert spec["data"]["values"]  # the CSV's rows, inside the page
    pictures = re.findall(r'<img src="(static/[^"]+)"', html)
    assert len(pictures) == len(models)
    assert all((repo / "page" / p).read_bytes()[:4] == b"\x89PNG" for p in pictures)


def test_unknown_subcommand_is_refused():
    done = _plots_page(Path.cwd(), "modify")
    assert done.returncode == BAD_INPUT_EXIT
    assert "usage: python -m stages.plots_page [show|diff]" in done.stderr
