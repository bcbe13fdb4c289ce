"""The genie: the exact Wiener filter of a Gaussian-region cartoon given its mask.

See docs/design.md §6.6.

For the family ``cartoons_gaussian`` the image given its mask m is Gaussian,
``x | m ~ N(mu_m, Sigma_m)``, so a denoiser told m can be exactly optimal for that
conditional law. Nobody is told m, so its error lower-bounds the family's optimum SSE*.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.wiener import DenseBasis, Wiener
from synthetic.cartoons_gaussian import GaussianCartoonFamily
from theory.sigma import sigma_like

# Dense eigendecompositions cost O(d^3) per mask: 0.03 s at d = 256, 0.6 s at d = 1024,
# 76 s at d = 4096 (measured, 2 cores), so images above 32 x 32 are refused.
MAX_PIXELS = 1024


def stationary_covariance(spectrum: np.ndarray) -> np.ndarray:
    """Dense ``C = F* diag(S) F`` (orthonormal 2-D DFT F) on row-major flattened images.

    C is circulant: ``C[p, q] = c(p − q mod size)`` with ``c = ifft2(S)`` (numpy's 1/d
    normalisation), the autocovariance of the field.

    Returns
    -------
    ndarray, shape (d, d), d = H * W, float64
    """
    h, w = spectrum.shape
    c = np.fft.ifft2(spectrum).real
    rows, cols = np.divmod(np.arange(h * w), w)
    return c[(rows[:, None] - rows[None, :]) % h, (cols[:, None] - cols[None, :]) % w]


def conditional_gaussian(
    mask: np.ndarray,
    means: tuple[float, float],
    covariances: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ``x = m a + (1 − m) b`` given m, a and b independent Gaussians.

    With ``a ~ N(mu_a 1, C_a)``, ``b ~ N(mu_b 1, C_b)`` and ``M = diag(m)``:
    ``E[x | m] = M mu_a 1 + (I − M) mu_b 1`` and
    ``Cov[x | m] = M C_a M + (I − M) C_b (I − M)``.

    Parameters
    ----------
    mask : array (H, W)
        The mask m (1 below the contour, fractional on the anti-aliased edge).
    means : (mu_a, mu_b)
        Expected intensities of the two regions.
    covariances : (C_a, C_b)
        Dense (d, d) covariances of the two region fields (random means included).

    Returns
    -------
    mean : ndarray (d,), covariance : ndarray (d, d)
    """
    m = np.asarray(mask, dtype=np.float64).ravel()
    ca, cb = covariances
    mean = m * means[0] + (1.0 - m) * means[1]
    cov = m[:, None] * ca * m[None, :] + (1.0 - m)[:, None] * cb * (1.0 - m)[None, :]
    return mean, cov


class GenieWiener:
    """Oracle denoiser that knows each image's mask: ``E[x | y, m]``, exact for its family.

    For image i with mask m_i, ``f(y) = mu + V diag(lam / (lam + sigma^2)) V^T (y − mu)``
    where ``(mu, V diag(lam) V^T)`` is :func:`conditional_gaussian` of ``x | m_i`` (one
    :class:`models.wiener.Wiener` filter per mask).

    Lower bound: ``E||x − E[x|y,m]||^2 = E Var(x|y,m) <= E Var(x|y) = SSE*(sigma)``
    (law of total variance: conditioning on more information cannot increase the mean
    squared error), so its expected SSE lower-bounds that of every denoiser of the family.

    Parameters
    ----------
    family : GaussianCartoonFamily
        Supplies the region means and covariance.
    masks : tensor (n, 1, H, W)
        Masks of the images to be denoised, e.g. ``family.masks("test", n)``; H * W <= 1024.
    name : str
        Short identifier.

    Notes
    -----
    The genie is bound to its masks: row i of ``y`` is denoised with mask i, so it is
    called ``f(y, sigma)`` on the n images in the order of the masks, like any denoiser on a
    fixed image set; ``select(index)`` binds it to a subset. The eigendecomposition of each
    mask's covariance is computed in float64 on first use and cached (8 MiB per image at
    32 x 32), so every further sigma costs two (d, d) matrix products per image.
    """

    def __init__(
        self, family: GaussianCartoonFamily, masks: torch.Tensor, name: str = "genie"
    ) -> None:
        if not isinstance(family, GaussianCartoonFamily):
            raise ValueError(
                f"the genie needs the 'cartoons_gaussian' family (got {type(family).__name__}); "
                "build it with get_family('cartoons_gaussian', ...)"
            )
        shape = (1, family.size, family.size)
        if masks.ndim != 4 or tuple(masks.shape[1:]) != shape:
            raise ValueError(
                f"masks must be an (n, {', '.join(map(str, shape))}) tensor, got "
                f"{tuple(masks.shape)}; pass family.masks(part, n)"
            )
        if family.size**2 > MAX_PIXELS:
            raise ValueError(
                f"the genie is a dense O(d^3) computation per mask: images of {family.size} px "
                f"have d = {family.size**2} > {MAX_PIXELS} pixels; use size <= 32"
            )
        self.family = family
        self.masks = masks.detach().cpu().double().numpy()[:, 0]
        self.name = name
        self._covariance = stationary_covariance(family.region_spectrum)
        self._filters: dict[int, Wiener] = {}

    def filter(self, i: int) -> Wiener:
        """The Wiener filter of ``x | m_i`` (float64, CPU), computed once per image."""
        if i not in self._filters:
            f = self.family
            mean, cov = conditional_gaussian(
                self.masks[i], (f.mean_below, f.mean_above), (self._covariance, self._covariance)
            )
            lam, vectors = np.linalg.eigh(cov)
            self._filters[i] = Wiener(
                torch.from_numpy(mean.reshape(1, 1, f.size, f.size)),
                torch.from_numpy(lam).clamp(min=0),
                DenseBasis(torch.from_numpy(vectors), (f.size, f.size)),
                name=self.name,
            )
        return self._filters[i]

    def select(self, index: slice | Sequence[int]) -> GenieWiener:
        """The genie bound to the masks ``index`` (sharing the filters already computed)."""
        chosen = range(len(self.masks))[index] if isinstance(index, slice) else list(index)
        genie = GenieWiener.__new__(GenieWiener)
        genie.family, genie.name, genie._covariance = self.family, self.name, self._covariance
        genie.masks = self.masks[list(chosen)]
        genie._filters = {j: self._filters[i] for j, i in enumerate(chosen) if i in self._filters}
        return genie

    def __call__(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoise ``y`` (n, 1, H, W), row i with mask i, at ``sigma`` (float or (n,))."""
        if y.ndim != 4 or y.shape[0] != len(self.masks) or y.shape[-2:] != self.masks.shape[-2:]:
            raise ValueError(
                f"the genie is bound to {len(self.masks)} masks: y must be ({len(self.masks)}, "
                f"1, {self.family.size}, {self.family.size}), got {tuple(y.shape)}; use "
                "select(index) for a subset"
            )
        s = sigma_like(sigma, y).reshape(-1).double().cpu()
        y64 = y.detach().cpu().double()
        out = [self.filter(i)(y64[i : i + 1], s[i : i + 1]) for i in range(len(self.masks))]
        return torch.cat(out).to(device=y.device, dtype=y.dtype)

    def sse_exact(self, sigma: float | np.ndarray) -> np.ndarray:
        """Exact expected SSE of each image given its mask, ``sum_k lam_k s^2 / (lam_k + s^2)``.

        ``tr Cov[x | y, m]`` over the eigenvalues lam of ``Cov[x | m]``; shape
        ``np.shape(sigma) + (n,)``.
        """
        return np.stack([self.filter(i).sse_star(sigma) for i in range(len(self.masks))], -1)
