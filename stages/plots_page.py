"""`dvc plots show` (or `dvc plots diff`) whose page works without a network: `make plots`.

DVC's page loads Vega, Vega-Lite and Vega-Embed from a CDN, so offline its interactive plots
are silently missing (the PNGs still show). This runs the same DVC command with
`--html-template`: DVC's own page, its CDN scripts replaced by those three libraries inlined
(one bundle from vl-convert, about 0.9 MB in each page). The template exists only in a
temporary folder while DVC runs; DVC writes the page where it always does (`dvc_plots/`, or
`-o`). Any further arguments go to DVC:

    python -m stages.plots_page                   # dvc plots show → dvc_plots/index.html
    python -m stages.plots_page diff HEAD --open  # dvc plots diff HEAD, opened in a browser
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import vl_convert
from dvc.cli import main as dvc
from dvc_render.html import PAGE_HTML

from stages.errors import PipelineError, cli

# DVC's plot templates are Vega-Lite 5 specs (`$schema`: vega-lite/v5.json): the newest 5.x
# that vl-convert bundles.
VEGA_LITE_VERSION = "5.21"
SUBCOMMANDS = ("show", "diff")
SCRIPTS = "{scripts}"  # where DVC's page puts its renderers' <script src=…> tags


def page_template() -> str:
    """DVC's page with the Vega libraries inline instead of DVC's CDN scripts."""
    if SCRIPTS not in PAGE_HTML:
        raise PipelineError(f"dvc_render's page has no {SCRIPTS} slot: DVC changed its page")
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)  # sets window.vegaEmbed
    # The bundle holds non-ASCII characters; a page opened from disk is not UTF-8 by default.
    return PAGE_HTML.replace(SCRIPTS, f'<meta charset="utf-8">\n<script>\n{bundle}\n</script>')


def run(argv: list[str]) -> int:
    """`dvc plots <argv>` (`show` when empty) with the offline page; DVC's exit status."""
    command, *rest = argv or ["show"]
    if command not in SUBCOMMANDS:
        raise PipelineError(
            f"usage: python -m stages.plots_page [{'|'.join(SUBCOMMANDS)}] [dvc plots options]"
        )
    with tempfile.TemporaryDirectory(prefix="plots_page_") as folder:
        template = Path(folder) / "page.html"
        template.write_text(page_template(), encoding="utf-8")
        return dvc(["plots", command, "--html-template", str(template), *rest])


def main(argv: list[str]) -> None:
    sys.exit(run(argv))


if __name__ == "__main__":
    cli(main)
