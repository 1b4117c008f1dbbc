"""One error type for bad input and bad params, and the CLI wrapper that turns it into exit 2."""

from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """Bad input, bad params or a missing upstream output: the message names what is at fault."""


class TransientError(PipelineError):
    """A failure that may pass by itself, such as a tracking server that does not answer."""


# Exit statuses an orchestrator can tell apart: bad input is final, a transient failure is
# worth retrying (EX_TEMPFAIL of sysexits.h).
BAD_INPUT_EXIT, TRANSIENT_EXIT = 2, 75


def cli(main: Callable[[list[str]], object]) -> None:
    """Run a stage's `main(argv)`; a PipelineError becomes one line on stderr and exit status
    BAD_INPUT_EXIT (TRANSIENT_EXIT for a TransientError).

    Anything else is a bug and keeps its traceback.
    """
    try:
        main(sys.argv[1:])
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(TRANSIENT_EXIT if isinstance(exc, TransientError) else BAD_INPUT_EXIT)


def item_name(argv: list[str], stage: str, what: str) -> str:
    """The one argument of a per-dataset or per-model stage: `<name>`, or the stage's DVC
    address `<stage>@<name>`.

    dvc.yaml passes "$DVC_STAGE" (which DVC sets for every command) instead of interpolating
    `${key}`: DVC pastes interpolated values into a shell command unquoted, so a params key
    such as `a;touch pwned` would run before any check here.
    """
    if len(argv) != 1:
        raise PipelineError(f"usage: python -m stages.{stage} <{what}>")
    address, at, name = argv[0].partition("@")
    if not at:
        return argv[0]
    if address.rpartition(":")[2] != stage:  # `path/dvc.yaml:stage` outside the root
        raise PipelineError(f"stages.{stage} was given stage '{argv[0]}', not {stage}@<{what}>")
    return name
