"""A low-dimensional image manifold: one anti-aliased disk per image (docs/design.md §5.5).

An image is fixed by θ = (cx, cy, r, fg, bg): centre, radius (pixel units) and the
foreground and background intensities. Any subset of θ may be frozen at a default value to
vary the manifold dimension. The optimal denoiser is the posterior mean over θ under the
prior below, which ``disk_prior`` exposes for integration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from synthetic.family import Family, GeneratedFamily, Optimum, check_int

DISK_PARAMETERS = ("cx", "cy", "r", "fg", "bg")


@dataclass(frozen=True)
class DiskPrior:
    """Independent uniform prior on the box ``low <= θ <= high`` over the free coordinates.

    Frozen coordinates equal ``default``. With image side s (pixel units, pixel j covering
    [j, j + 1)): cx, cy ~ U[s/4, 3s/4], r ~ U[s/8, s/4] (so the disk always lies inside the
    image), fg, bg ~ U[0, 1]; defaults (s/2, s/2, 3s/16, 0.8, 0.2).

    Attributes
    ----------
    low, high, default : ndarray, shape (5,)
        Bounds and frozen values in the order of ``DISK_PARAMETERS``.
    free : tuple of str
        Names of the free coordinates, in the order of ``DISK_PARAMETERS``.
    """

    low: np.ndarray
    high: np.ndarray
    default: np.ndarray
    free: tuple[str, ...]

    @property
    def free_mask(self) -> np.ndarray:
        """Boolean ``(5,)`` mask of the free coordinates."""
        return np.array([name in self.free for name in DISK_PARAMETERS])


def check_free(free: str | Sequence[str]) -> tuple[str, ...]:
    """Validate free-parameter names (a sequence or a comma-separated string); canonical order."""
    names = [s.strip() for s in free.split(",")] if isinstance(free, str) else list(free)
    unknown = [name for name in names if name not in DISK_PARAMETERS]
    if unknown or not names:
        raise ValueError(
            f"free disk parameters must be a non-empty subset of {', '.join(DISK_PARAMETERS)} "
            f"(got {free!r})"
        )
    return tuple(name for name in DISK_PARAMETERS if name in names)


def disk_prior(size: int, free: str | Sequence[str] = DISK_PARAMETERS) -> DiskPrior:
    """The prior of ``DiskPrior`` for images of side ``size`` with the given free coordinates."""
    s = float(check_int("size", size, 1))
    return DiskPrior(
        low=np.array([s / 4, s / 4, s / 8, 0.0, 0.0]),
        high=np.array([3 * s / 4, 3 * s / 4, s / 4, 1.0, 1.0]),
        default=np.array([s / 2, s / 2, 3 * s / 16, 0.8, 0.2]),
        free=check_free(free),
    )


def sample_disk_parameters(
    n: int,
    size: int,
    rng: np.random.Generator,
    free: str | Sequence[str] = DISK_PARAMETERS,
) -> np.ndarray:
    """Draw ``n`` parameter vectors θ from ``disk_prior(size, free)``.

    All five uniforms are drawn whatever ``free`` is, so the free coordinates of draw i do
    not depend on which others are frozen.

    Returns
    -------
    ndarray, shape (n, 5)
        Columns (cx, cy, r, fg, bg) in pixel units and intensities.
    """
    prior = disk_prior(size, free)
    u = rng.random((check_int("n", n, 0), len(DISK_PARAMETERS)))
    theta = prior.low + (prior.high - prior.low) * u
    return np.where(prior.free_mask, theta, prior.default)


def render_disks(params: np.ndarray, size: int, supersample: int = 4) -> np.ndarray:
    """Render disks with anti-aliasing by supersampling.

    Pixel (i, j) covers [j, j + 1) × [i, i + 1) (column = x, row = y). Its value is
    ``bg + (fg − bg) · m`` with ``m`` the fraction of the ``supersample²`` sub-pixel centres
    ``(j + (a + 1/2)/S, i + (b + 1/2)/S)`` that satisfy ``(x − cx)² + (y − cy)² <= r²``.

    Parameters
    ----------
    params : ndarray, shape (n, 5)
        Columns (cx, cy, r, fg, bg) in pixel units and intensities.
    size : int
        Image side in pixels.
    supersample : int
        Sub-pixels per pixel side, S.

    Returns
    -------
    ndarray, shape (n, size, size)
    """
    params = np.asarray(params, dtype=float)
    if params.ndim != 2 or params.shape[1] != len(DISK_PARAMETERS):
        raise ValueError(
            f"params must have shape (n, 5) for (cx, cy, r, fg, bg), got {params.shape}"
        )
    size = check_int("size", size, 1)
    s = check_int("supersample", supersample, 1)
    cx, cy, r, fg, bg = (params[:, i, None] for i in range(5))
    grid = (np.arange(size * s) + 0.5) / s
    dx2 = (grid[None, :] - cx) ** 2
    dy2 = (grid[None, :] - cy) ** 2
    inside = dy2[:, :, None] + dx2[:, None, :] <= (r**2)[:, :, None]
    coverage = inside.reshape(-1, size, s, size, s).mean(axis=(2, 4))
    return bg[:, :, None] + (fg - bg)[:, :, None] * coverage


def disk_tangent(
    params: np.ndarray, size: int, n_arc: int = 4096, supersample: int = 4
) -> np.ndarray:
    """Derivatives of a disk image with respect to θ = (cx, cy, r, fg, bg): the tangent space.

    The geometry derivatives are those of the exact (area-coverage) rendering, which the
    supersampled one approaches as S grows: moving the boundary of D by δ along its
    outward normal n changes pixel p by ``(fg − bg) ∫_{∂D ∩ p} δ ds``, so

        ∂x_p/∂cx = (fg − bg) ∫_{∂D ∩ p} cos φ ds,   ∂x_p/∂cy = (fg − bg) ∫_{∂D ∩ p} sin φ ds,
        ∂x_p/∂r = (fg − bg) ∫_{∂D ∩ p} ds,

    with ``ds = r dφ`` over the circle ``(cx + r cos φ, cy + r sin φ)``, integrated by the
    midpoint rule on ``n_arc`` arcs, each binned to the pixel holding its midpoint (error
    O(1/n_arc) per pixel). The intensities enter linearly: ``∂x/∂fg = m``,
    ``∂x/∂bg = 1 − m`` with m the coverage of :func:`render_disks`.

    Parameters
    ----------
    params : ndarray, shape (n, 5)
        Columns (cx, cy, r, fg, bg) in pixel units and intensities.
    size : int
        Image side in pixels.
    n_arc : int
        Quadrature arcs on the circle.
    supersample : int
        Supersampling of the coverage m (the family renders with 4).

    Returns
    -------
    ndarray, shape (n, 5, size, size)
        The derivative images, in the order of ``DISK_PARAMETERS``.
    """
    params = np.asarray(params, dtype=float)
    size = check_int("size", size, 1)
    n_arc = check_int("n_arc", n_arc, 8)
    phi = 2 * np.pi * (np.arange(n_arc) + 0.5) / n_arc
    out = np.zeros((len(params), 5, size * size))
    for i, (cx, cy, r, fg, bg) in enumerate(params):
        cols = np.clip(np.floor(cx + r * np.cos(phi)).astype(int), 0, size - 1)
        rows = np.clip(np.floor(cy + r * np.sin(phi)).astype(int), 0, size - 1)
        pixel = rows * size + cols
        ds = (fg - bg) * r * 2 * np.pi / n_arc
        for j, weight in enumerate((np.cos(phi), np.sin(phi), np.ones(n_arc))):
            out[i, j] = np.bincount(pixel, weights=ds * weight, minlength=size * size)
    coverage = render_disks(
        np.column_stack([params[:, :3], np.ones(len(params)), np.zeros(len(params))]),
        size,
        supersample,
    )
    out[:, 3] = coverage.reshape(len(params), -1)
    out[:, 4] = 1 - out[:, 3]
    return out.reshape(len(params), 5, size, size)


def disk_fit_rms(images: torch.Tensor, size: int, prior: DiskPrior, coarse: int = 33) -> np.ndarray:
    """RMS residual of the best disk image (a distance to the disk manifold) per image.

    Centre and radius on a grid over the prior box (``coarse`` values per centre
    coordinate, a quarter as many for the radius), refined by a local grid 4x finer; for
    each candidate geometry the intensities (fg, bg) solve linear least squares
    ``x ~ bg (1 - m) + fg m`` (m the anti-aliased coverage), unconstrained, so the residual
    slightly underestimates the distance to the manifold (fg, bg in [0, 1]). Frozen
    parameters keep their value. A clean disk scores the grid-resolution floor.
    """
    y = images.flatten(1).double().cpu().numpy()
    counts = (coarse, coarse, max(3, coarse // 4))
    axes = [
        np.linspace(prior.low[i], prior.high[i], k)
        if DISK_PARAMETERS[i] in prior.free
        else np.array([prior.default[i]])
        for i, k in enumerate(counts)
    ]
    steps = [a[1] - a[0] if len(a) > 1 else 0.0 for a in axes]
    best, geometry = _best_disk(
        y, np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3), size, prior
    )
    out = np.empty(len(y))
    offsets = np.linspace(-1, 1, 9)
    for k in range(len(y)):
        local = [
            np.clip(geometry[k, i] + steps[i] * offsets, prior.low[i], prior.high[i])
            if steps[i]
            else np.array([geometry[k, i]])
            for i in range(3)
        ]
        grid = np.stack(np.meshgrid(*local, indexing="ij"), -1).reshape(-1, 3)
        out[k] = min(best[k], _best_disk(y[k : k + 1], grid, size, prior)[0][0])
    return np.sqrt(out / y.shape[1])


def _best_disk(
    y: np.ndarray, geometry: np.ndarray, size: int, prior: DiskPrior
) -> tuple[np.ndarray, np.ndarray]:
    """Smallest squared residual over candidate (cx, cy, r) per image, and its geometry."""
    fg_free, bg_free = ("fg" in prior.free), ("bg" in prior.free)
    best = np.full(len(y), np.inf)
    arg = np.zeros((len(y), 3))
    for start in range(0, len(geometry), 256):
        g = geometry[start : start + 256]
        theta = np.column_stack([g, np.ones(len(g)), np.zeros(len(g))])
        m = render_disks(theta, size).reshape(len(g), -1)  # (M, d) coverage
        columns, fixed = [], np.zeros_like(m)
        for free, value, column in (
            (fg_free, prior.default[3], m),
            (bg_free, prior.default[4], 1 - m),
        ):
            if free:
                columns.append(column)
            else:
                fixed += value * column
        target = y[None, :, :] - fixed[:, None, :]  # (M, K, d)
        if columns:
            design = np.stack(columns, -1)  # (M, d, p)
            gram = design.transpose(0, 2, 1) @ design  # (M, p, p)
            proj = np.einsum("mdp,mkd->mkp", design, target)
            coef = np.linalg.solve(gram[:, None], proj[..., None])[..., 0]
            residual = (target**2).sum(-1) - (coef * proj).sum(-1)
        else:
            residual = (target**2).sum(-1)
        j = residual.argmin(0)
        value = residual[j, np.arange(len(y))]
        better = value < best
        best = np.where(better, value, best)
        arg[better] = g[j[better]]
    return np.maximum(best, 0.0), arg


class DiskFamily(GeneratedFamily):
    """Disks with θ drawn from ``disk_prior(size, free)``, rendered by ``render_disks``."""

    name = "disks"
    # Centre bounds symmetric about the image centre; no circular shift (the disk never wraps).
    symmetries = ("flip_h", "flip_v")
    references = Family.references + ("disk_posterior",)
    optimum = Optimum("exact", "disk_posterior")

    def __init__(
        self, size: int = 32, seed: int = 0, free: str | Sequence[str] = DISK_PARAMETERS
    ) -> None:
        super().__init__(size, seed)
        self.prior = disk_prior(self.size, free)
        self.free = self.prior.free

    @property
    def params(self) -> dict:
        return {**super().params, "free": list(self.free)}

    def parameters(self, part: str, n: int) -> torch.Tensor:
        """θ of ``images(part, n)``: float64 tensor ``(n, 5)``, columns (cx, cy, r, fg, bg)."""
        n = self.check_request(part, n)
        return torch.from_numpy(np.ascontiguousarray(self._draw(part, n)[1]))

    def tangent(self, part: str, n: int) -> np.ndarray:
        """Tangent vectors (n, 5, size, size) of the manifold at ``images(part, n)``'s θ.

        The derivatives of :func:`disk_tangent` with respect to (cx, cy, r, fg, bg); frozen
        coordinates give directions the family does not vary, so only the free ones are kept.
        """
        theta = self.parameters(part, n).numpy()
        return disk_tangent(theta, self.size)[:, self.prior.free_mask]

    def distance_to_manifold(self, images: torch.Tensor) -> np.ndarray:
        """RMS residual of the best disk fit of each image (``disk_fit_rms``)."""
        return disk_fit_rms(images, self.size, self.prior)

    def _generate(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        theta = sample_disk_parameters(n, self.size, rng, self.free)
        return render_disks(theta, self.size), theta
