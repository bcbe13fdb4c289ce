"""Why a denoiser generalizes: the adaptive basis read off its Jacobian.

``python -m benchmarks.gahb`` takes the optimality benchmark's networks (shipped weights,
the run store, or trained on the spot with that benchmark's profile) and, at noisy
held-out images and several σ, decomposes each network's Jacobian
(``theory.decomposition``): eigenvalues, eigenvectors, effective dimension, asymmetry and
the homogeneity residual of bias-free networks. It compares them with what is known of the
optimum (the memorizer of the training set, the Wiener filter of Gaussian fields, the
tangent space of the disk manifold) and measures how well the leading eigenvectors compact
the clean image against fixed bases (``theory.bases``). It writes
``<out>/<family>/results.json``, ``spectra.npz`` and figures, ``<out>/summary.csv`` and
``effective_dimension.png``.

Modules: ``config`` (the frozen :class:`GahbConfig`, profiles ``DEFAULT``, ``QUICK``,
``PAPER``), ``cli`` (the command line and its checks), ``measure``, ``report``, ``plots``.
"""

from benchmarks.gahb.cli import build_parser, main
from benchmarks.gahb.config import DEFAULT, PAPER, QUICK, GahbConfig, profile

__all__ = ["DEFAULT", "PAPER", "QUICK", "GahbConfig", "build_parser", "main", "profile"]
