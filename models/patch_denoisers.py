"""Patch-based classical denoisers at known σ: non-local means and BM3D.

Both are the field's strongest classical references for natural and piecewise-regular
images; neither has a closed form, so they serve as references, not optima. Non-local
means comes from scikit-image (BSD). BM3D comes from the ``bm3d`` package, whose licence
allows non-commercial use only: it is an optional extra (``pip install -e ".[bm3d]"``),
imported only when a BM3D denoiser is built, and ``bm3d_available()`` tells whether it is.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from skimage.restoration import denoise_nl_means

from theory.sigma import sigma_like


def bm3d_available() -> bool:
    """Whether the optional ``bm3d`` package is importable."""
    return importlib.util.find_spec("bm3d") is not None


def _per_image(y: torch.Tensor, sigma: float | torch.Tensor, denoise) -> torch.Tensor:
    if y.ndim != 4 or y.shape[1] != 1:
        raise ValueError(f"y must be a (B, 1, H, W) tensor, got {tuple(y.shape)}")
    sigmas = sigma_like(sigma, y[:, 0]).reshape(-1).detach().cpu().numpy()
    images = y[:, 0].detach().cpu().numpy().astype(np.float64)
    out = np.stack([denoise(image, float(s)) for image, s in zip(images, sigmas, strict=True)])
    return torch.from_numpy(out).to(y.device, y.dtype).unsqueeze(1)


class NonLocalMeans:
    """Non-local means at known σ (``skimage.restoration.denoise_nl_means``).

    ``f(y)[u] = Σ_v w(u, v) y[v] / Σ_v w(u, v)`` over pixels v within ``patch_distance`` of
    u, with ``w(u, v) = exp(-max(d²(u, v) - 2σ², 0) / h²)``, d² the mean squared difference
    of the ``patch_size x patch_size`` patches around u and v, and ``h = h_factor * σ``
    (scikit-image's fast mode; 0.8 σ is its documented choice when σ is known).

    Parameters
    ----------
    patch_size : side of the compared patches, pixels.
    patch_distance : search radius, pixels.
    h_factor : filtering strength in units of σ.
    name : result-file name.

    References
    ----------
    A. Buades, B. Coll, J.-M. Morel, "A non-local algorithm for image denoising", CVPR 2005.
    J. Darbon et al., "Fast nonlocal filtering applied to electron cryomicroscopy", ISBI 2008.
    """

    def __init__(
        self,
        patch_size: int = 5,
        patch_distance: int = 6,
        h_factor: float = 0.8,
        name: str = "nlm",
    ) -> None:
        if patch_size < 1 or patch_distance < 1 or not h_factor > 0:
            raise ValueError(
                "non-local means needs patch_size >= 1, patch_distance >= 1 and h_factor > 0 "
                f"(got {patch_size}, {patch_distance}, {h_factor})"
            )
        self.patch_size = patch_size
        self.patch_distance = patch_distance
        self.h_factor = h_factor
        self.name = name

    def __call__(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoise a batch ``y`` of shape (B, 1, H, W) at noise level ``sigma`` (float or (B,))."""
        return _per_image(y, sigma, self._denoise)

    def _denoise(self, image: np.ndarray, sigma: float) -> np.ndarray:
        return denoise_nl_means(
            image,
            patch_size=self.patch_size,
            patch_distance=self.patch_distance,
            h=self.h_factor * sigma,
            sigma=sigma,
            fast_mode=True,
            preserve_range=True,
        )


class BM3D:
    """BM3D at known σ (the ``bm3d`` package, both stages, its default 'np' profile).

    Groups similar patches into 3-D blocks, shrinks them in a separable transform (hard
    thresholding, then Wiener filtering with the first estimate as pilot) and aggregates
    the overlapping estimates. Runs single-threaded so that reruns are bit-identical.

    Parameters
    ----------
    name : result-file name.

    Raises
    ------
    ImportError
        When the optional ``bm3d`` package is not installed, naming the extra.

    References
    ----------
    K. Dabov, A. Foi, V. Katkovnik, K. Egiazarian, "Image denoising by sparse 3-D
    transform-domain collaborative filtering", IEEE TIP 16 (2007). Y. Mäkinen, L. Azzari,
    A. Foi, "Collaborative filtering of correlated noise", IEEE TIP 29 (2020).
    """

    def __init__(self, name: str = "bm3d") -> None:
        if not bm3d_available():
            raise ImportError(
                "BM3D needs the optional bm3d package (non-commercial licence): "
                'pip install -e ".[bm3d]"'
            )
        import bm3d

        self._bm3d = bm3d
        self._profile = bm3d.BM3DProfile()
        # Its thread pool splits the image into strips whose order changes the sums.
        self._profile.num_threads = 1
        self.name = name

    def __call__(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoise a batch ``y`` of shape (B, 1, H, W) at noise level ``sigma`` (float or (B,))."""
        return _per_image(y, sigma, self._denoise)

    def _denoise(self, image: np.ndarray, sigma: float) -> np.ndarray:
        return np.asarray(self._bm3d.bm3d(image, sigma, profile=self._profile), np.float64)
