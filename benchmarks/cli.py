"""Command-line pieces shared by the experiments: exit statuses, checks, σ grids.

Every command runs through :func:`run_command`, which gives the same guarantees everywhere:

- exit status 2: an option error or a bad stored file, found before any work (one line
  naming the option or the file and the fix; nothing is written);
- exit status 1: a fault during the run (one line naming the cause and the file or option);
- exit status 130: Ctrl-C; a training run writes its checkpoint first, and the same command
  resumes it.

``--debug`` shows the traceback instead of the one line.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from models.checkpoint import StoredFileError
from models.training import TrainingInterrupted
from theory.sigma import check_sigma

Prepared = TypeVar("Prepared")
Result = TypeVar("Result")


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the fix, with exit status 2."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(**kwargs)
        self.add_argument(
            "--debug",
            action="store_true",
            default=False,
            help="show the full traceback of a failure",
        )

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def run_command(
    parser: Parser,
    argv: list[str] | None,
    prepare: Callable[[argparse.Namespace], Prepared],
    work: Callable[[Prepared], Result],
) -> Result:
    """Parse ``argv``, validate everything with ``prepare``, then do the ``work``.

    ``prepare`` must check every option and build what the work needs without doing it;
    its ``ValueError`` or ``OSError`` (a missing or unreadable input) is an option error
    (exit 2, pointing at ``--help``), its
    :class:`~models.checkpoint.StoredFileError` a damaged stored file (exit 2, naming the
    file and the fix), any other exception a fault (exit 1). Any exception of ``work`` is a fault
    (exit 1); Ctrl-C exits 130 in either.
    """
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        prepared = prepare(args)
    except KeyboardInterrupt:
        _stop(parser, 130, "interrupted before any work: nothing was written")
    except StoredFileError as err:
        if debug:
            raise
        _stop(parser, 2, f"error: {_one_line(err)}")
    except (ValueError, OSError) as err:
        if debug:
            raise
        parser.error(_one_line(err))
    except Exception as err:
        if debug:
            raise
        _stop(parser, 1, f"failed: {_one_line(err)} (--debug shows the traceback)")
    try:
        return work(prepared)
    except TrainingInterrupted as err:
        _stop(
            parser,
            130,
            f"interrupted at training step {err.step}; checkpoint {err.checkpoint} written: "
            "run the same command again to resume",
        )
    except KeyboardInterrupt:
        _stop(parser, 130, "interrupted: run the same command again (finished runs are kept)")
    except Exception as err:
        if debug:
            raise
        _stop(parser, 1, f"failed: {_one_line(err)} (--debug shows the traceback)")


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _stop(parser: Parser, status: int, message: str):
    sys.stderr.write(f"{parser.prog}: {message}\n")
    raise SystemExit(status)


def check_writable(folder: str | os.PathLike, option: str) -> Path:
    """Check that files can be written in ``folder`` (created later, when needed).

    A real write is attempted (permission bits do not stop root): the missing folders are
    created, a temporary file is written in ``folder``, and what was created is removed
    again, so a check leaves nothing behind. ``ValueError`` names the option and the fix.
    """
    path = Path(folder)
    missing = []
    parent = path
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(
            f"cannot write to {option} {folder} ({reason}): choose another folder"
        ) from None
    finally:
        for created in missing:  # deepest first
            try:
                created.rmdir()
            except OSError:
                break
    return path


def finite_float(text: str) -> float:
    """An argparse type: a finite number (``inf`` and ``nan`` are refused with one line)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read {text!r} as a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def float_list(text: str) -> list[float]:
    """An argparse type: a comma-separated list of finite numbers, e.g. ``1,2,3``."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: use a list like 1,2,3") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} holds a number that is not finite")
    return values


def int_list(text: str) -> list[int]:
    """An argparse type: a comma-separated list of integers, e.g. ``64,128``."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: use a list like 64,128") from None


def parse_sigmas(text: str) -> np.ndarray:
    """Parse ``lo:hi:n`` (log-spaced, inclusive) or a comma-separated list of noise levels."""
    try:
        if ":" in text:
            lo, hi, n = text.split(":")
            values = np.geomspace(float(lo), float(hi), int(n))
        else:
            values = np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"cannot read sigmas {text!r}: use lo:hi:n (e.g. 1e-3:1:13) or a list (0.01,0.1,1)"
        ) from None
    try:
        check_sigma(values)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    values = np.unique(values)
    if len(values) < 3:
        raise argparse.ArgumentTypeError(
            f"need at least 3 distinct noise levels for risk curves, slopes and KL integrals "
            f"(got {text!r})"
        )
    return values


def parse_window(text: str) -> tuple[float, float]:
    """Parse ``lo,hi`` for a σ window."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read window {text!r}: use lo,hi") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise argparse.ArgumentTypeError(f"window needs finite ends, got {text!r}")
    if not 0 < lo < hi:
        raise argparse.ArgumentTypeError(f"window needs 0 < lo < hi, got {text!r}")
    return lo, hi
