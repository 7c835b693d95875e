"""How the command line ends: a one-line error and exit code 2 for bad input, 130 with a resume
hint for Ctrl-C, never a traceback for something the user can fix."""

from __future__ import annotations

import shlex
import sys
import warnings

import typer
from rich.markup import escape

from labelfree.cli.common import app, err
from labelfree.data.imageset import DataError
from labelfree.train.loop import CheckpointError

#: Set by a command once it has a run folder that ``--resume`` can continue.
RESUME_HINT: dict[str, str] = {}


def resume_command(argv: list[str]) -> str:
    """The command line that continues the run started by ``argv`` (``--resume`` added,
    ``--overwrite`` dropped: it would replace the run instead of continuing it)."""
    args = [a for a in argv if a not in ("--overwrite", "--resume")]
    return "labelfree " + " ".join(shlex.quote(a) for a in [*args, "--resume"])


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (skipped files, a fallback taken) as one ``warning:`` line, not source code."""
    err.print(f"[yellow]warning:[/] {escape(str(message))}", soft_wrap=True)


def main() -> None:
    """Entry point of ``labelfree``."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        _main()


def _interrupted() -> None:
    hint = RESUME_HINT.get("command")
    where = f"; the run keeps its last checkpoint: continue with {hint}" if hint else ""
    err.print(f"interrupted{escape(where)}", soft_wrap=True)
    sys.exit(130)


def _main() -> None:
    try:
        rv = app(standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        _interrupted()
    except typer.TyperException as exc:  # usage errors (typer's own click), as one line
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _fail(" ".join(str(message).split()), getattr(exc, "exit_code", 2) or 2)
    except (DataError, CheckpointError, ValueError) as exc:
        _fail(str(exc))
    except MemoryError:
        _fail("out of memory; lower --batch-size or --image-size, or use fewer images")
    except OSError as exc:  # a read-only or full output location, a vanished file
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")
    if rv == 130:  # typer turns Ctrl-C into Exit(130), returned here without standalone mode
        _interrupted()
    if isinstance(rv, int) and rv:
        sys.exit(rv)
