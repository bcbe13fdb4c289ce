"""Wavelet thresholding in an orthonormal basis, and its translation-invariant version."""

from __future__ import annotations

import warnings

import numpy as np
import pywt
import torch

from theory.bases import wavelet_levels
from theory.sigma import sigma_like

_MODES = ("hard", "soft")


class WaveletThreshold:
    """Threshold the detail coefficients of an orthonormal 2-D wavelet transform at factor * sigma.

    With an orthogonal wavelet and periodic boundaries ('periodization') the transform is
    orthonormal, so white noise of standard deviation sigma stays white with standard
    deviation sigma in every coefficient and a threshold ``T = factor * sigma`` removes it
    where the image has no detail. Detail coefficients c become ``c 1{|c| >= T}`` (hard) or
    ``sign(c) max(|c| - T, 0)`` (soft); approximation coefficients are kept.

    Parameters
    ----------
    wavelet : str
        Name of an orthogonal PyWavelets wavelet ('haar', 'db4', 'sym8', 'coif2', ...).
    mode : {'hard', 'soft'}
        Thresholding rule.
    factor : float
        Threshold in units of sigma, >= 0 (3 for hard thresholding is customary).
    levels : int, optional
        Decomposition levels; default: the largest for which H and W are divisible by
        2**levels (needed for an orthonormal transform). With periodization the transform
        stays orthonormal beyond ``pywt.dwtn_max_level`` (filters wrap around), and the full
        depth matters: each kept approximation coefficient passes its noise sigma^2
        unchanged, so 2 levels on 32 px would leave 64 noisy coefficients (MSE >= sigma^2/16).
    invariant : bool
        Threshold the undecimated (stationary) transform instead (``pywt.swt2``/``iswt2``):
        the result equals the average of the orthonormal thresholding over all
        ``2**levels x 2**levels`` circular shifts (cycle spinning, Coifman & Donoho) at the
        cost of one transform, ``O(levels * H * W)`` per image. The undecimated
        coefficients are unnormalised (``norm=False``): each is a coefficient of the
        orthonormal transform of some shift, so the same threshold applies.
    name : str, optional
        Short identifier; default e.g. 'wavelet_db4_hard', 'ti_wavelet_db4_hard'.

    Notes
    -----
    Inputs and outputs are torch tensors (device and dtype preserved); the transform runs
    on the CPU with numpy, batched over images.

    References
    ----------
    D. L. Donoho, I. M. Johnstone, "Ideal spatial adaptation by wavelet shrinkage",
    Biometrika 81 (1994). R. R. Coifman, D. L. Donoho, "Translation-invariant de-noising",
    Lecture Notes in Statistics 103 (1995).
    """

    def __init__(
        self,
        wavelet: str = "db4",
        mode: str = "hard",
        factor: float = 3.0,
        levels: int | None = None,
        invariant: bool = False,
        name: str | None = None,
    ) -> None:
        if wavelet not in pywt.wavelist(kind="discrete") or not pywt.Wavelet(wavelet).orthogonal:
            raise ValueError(
                f"unknown or non-orthogonal wavelet {wavelet!r}; pick an orthogonal one from "
                "pywt.wavelist(kind='discrete'), e.g. 'haar', 'db4', 'sym8'"
            )
        if mode not in _MODES:
            raise ValueError(f"unknown thresholding mode {mode!r}; use 'hard' or 'soft'")
        if not np.isfinite(factor) or factor < 0:
            raise ValueError(f"factor must be finite and >= 0 (got {factor}); 3.0 is customary")
        if levels is not None and levels < 1:
            raise ValueError(f"levels must be >= 1 or None for the maximum (got {levels})")
        self.wavelet = wavelet
        self.mode = mode
        self.factor = float(factor)
        self.levels = levels
        self.invariant = invariant
        self.name = name or f"{'ti_' if invariant else ''}wavelet_{wavelet}_{mode}"

    def levels_for(self, shape: tuple[int, int]) -> int:
        """Decomposition levels used for images of ``shape`` (H, W); ValueError if none fits."""
        return wavelet_levels(shape, self.levels, self.wavelet)

    def __call__(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoise a batch ``y`` of shape (B, 1, H, W) at noise level ``sigma`` (float or (B,))."""
        if y.ndim != 4 or y.shape[1] != 1:
            raise ValueError(f"y must be a (B, 1, H, W) tensor, got {tuple(y.shape)}")
        threshold = (self.factor * sigma_like(sigma, y[:, 0])).detach().cpu().numpy()
        images = y[:, 0].detach().cpu().numpy()
        out = self._threshold(images, threshold, self.levels_for(images.shape[-2:]))
        return torch.from_numpy(out).to(y.device).unsqueeze(1)

    def _threshold(self, images: np.ndarray, threshold: np.ndarray, levels: int) -> np.ndarray:
        """Wavelet thresholding of a (B, H, W) stack, threshold of shape (B, 1, 1)."""
        if self.invariant:
            coeffs = pywt.swt2(images, self.wavelet, levels, axes=(-2, -1), trim_approx=True)
            kept = [coeffs[0]] + [
                tuple(pywt.threshold(c, threshold, mode=self.mode) for c in detail)
                for detail in coeffs[1:]
            ]
            return pywt.iswt2(kept, self.wavelet, axes=(-2, -1))
        with warnings.catch_warnings():
            # pywt warns beyond dwtn_max_level; periodization is orthonormal there too.
            warnings.simplefilter("ignore", UserWarning)
            coeffs = pywt.wavedec2(
                images, self.wavelet, mode="periodization", level=levels, axes=(-2, -1)
            )
        kept = [coeffs[0]] + [
            tuple(pywt.threshold(c, threshold, mode=self.mode) for c in detail)
            for detail in coeffs[1:]
        ]
        return pywt.waverec2(kept, self.wavelet, mode="periodization", axes=(-2, -1))
