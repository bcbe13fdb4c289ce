"""Command-line pieces shared by the experiments: one-line errors and σ grids."""

from __future__ import annotations

import argparse

import numpy as np

from theory.sigma import check_sigma


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the fix, with exit status 2."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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
    if len(values) < 3:
        raise argparse.ArgumentTypeError("need at least 3 noise levels to fit slopes")
    return np.unique(values)


def parse_window(text: str) -> tuple[float, float]:
    """Parse ``lo,hi`` for a σ window."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read window {text!r}: use lo,hi") from None
    if not 0 < lo < hi:
        raise argparse.ArgumentTypeError(f"window needs 0 < lo < hi, got {text!r}")
    return lo, hi
