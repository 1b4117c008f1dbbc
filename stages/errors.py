"""One error type for bad input and bad params, and the CLI wrapper that turns it into exit 2."""

from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """Bad input, bad params or a missing upstream output: the message names what is at fault."""


def cli(main: Callable[[list[str]], object]) -> None:
    """Run a stage's `main(argv)`; a PipelineError becomes one line on stderr and exit status 2.

    Anything else is a bug and keeps its traceback.
    """
    try:
        main(sys.argv[1:])
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
