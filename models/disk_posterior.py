"""The optimal denoiser of the disk manifold: the posterior mean over its parameters.

For an image ``x = render(θ)`` of ``synthetic.disks`` with θ uniform on the box of
``disk_prior(size, free)`` and ``y = x + σz``, the optimal denoiser is

    E[x | y] = ∫ render(θ) p(y | θ) p(θ) dθ / ∫ p(y | θ) p(θ) dθ,
    p(y | θ) ∝ exp(−‖y − render(θ)‖² / (2σ²)),

over the free coordinates of θ (docs/design.md §6.7). ``render_disks`` draws
``x = fg · c(g) + bg · (1 − c(g))`` with ``c(g)`` the supersampled coverage of the geometry
``g = (cx, cy, r)``, so the intensities enter linearly: given g their posterior is a
Gaussian restricted to the unit box, integrated in closed form up to a 1-D Gauss–Legendre
rule (``models.disk_integrals``). For a fixed centre ``c(g)`` only changes where r
passes a sub-pixel distance, so the radius is integrated exactly over a window by summing
over those intervals (``models.disk_integrals``). The centre and the window's
position are integrated by adaptive importance sampling (:class:`DiskPosteriorMean`);
with the centre frozen the whole integral is exact up to the intensity quadrature.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import optimize, special

from models.disk_integrals import (
    _GEOMETRY,
    _LOG_2PI,
    _soft_coverage,
    disk_coverage,
    intensity_posterior,
    radius_window_covariance,
    radius_window_posterior,
)
from synthetic.disks import DISK_PARAMETERS, disk_prior
from synthetic.family import check_int
from theory.sigma import sigma_like

# A round is accepted once its ESS reaches this fraction of its samples (the final rounds
# typically reach 0.2-0.35).
_ESS_TARGET = 0.1
# Half-width of a sample's radius window in sub-pixels, and the σ above which it shrinks
# as 1/σ.
_WINDOW_SUBPIXELS = 0.2
_WINDOW_SIGMA = 0.02
_FIT_FLOOR = 0.1  # sub-pixels: standard deviation added to each least-squares component


class DiskPosteriorMean:
    """Optimal denoiser of the disk family ``DiskFamily(size, free=free)``: ``E[x | y]``.

    The intensities are integrated exactly (:func:`intensity_posterior`) and so is the
    radius over a window (:func:`radius_window_posterior`); the free centre coordinates
    and the window's position are integrated by self-normalised importance sampling. A
    sample ``(c_i, r_i)`` stands for the window ``|r − r_i| <= h`` (the kernel identity
    ``∫ f(r) dr = E_q[∫ f(r) k(r − r_i) dr / q(r_i)]`` for a uniform kernel k), so

        x̂ = Σ_i w_i x̄_i / Σ_i w_i,   w_i = ∫ p(y | c_i, r) k(r − r_i) dr / q(c_i, r_i),

    with ``x̄_i`` the posterior mean of x given the centre and the window (with r frozen,
    of x given the centre). Integrating r exactly matters at small σ: ``c(g)`` is piecewise
    constant in g (sub-pixel centres enter one at a time), and the posterior then sits on
    one cell of g-space, about 1e-3 px across and sometimes far thinner. Sampling r as
    well missed that cell on 1 to 3 of 60 high-contrast 32×32 images at σ = 1e-3 (each
    such miss costs hundreds of σ² of SSE); with the window, none of 60 at 32 and 16 px.

    The proposal q is a mixture, with fixed sample counts (deterministic-mixture weights),
    of (a) the prior, its radius range widened by h (10 % of the samples: defensive, so the
    weights stay bounded); (b) Gaussians around least-squares fits of the geometry
    (intensities profiled out linearly) on a continuous stand-in for the coverage, started
    from the ``n_starts`` best points of a fixed grid over the prior box, covariance
    ``4 σ² (JᵀJ)⁻¹`` from the Gauss–Newton Hessian plus the prior box's precision, and a
    floor of 0.1 sub-pixel (the stand-in's own bias); (c) after the first round, a Gaussian
    fitted to the previous round (weighted moments, or the best 5 % by target density when
    the weights degenerate), covariance doubled. Pilot rounds of ``n_samples/4`` adapt (c)
    until their effective sample size ``ESS = (Σw)²/Σw²`` reaches 10 %; rounds of
    ``n_samples`` then run until one reaches it too (at most ``max_rounds`` in all), and
    that round alone gives the estimate: a plain importance-sampling estimate under its
    proposal.

    With the centre frozen no sampling is needed: r is integrated over its whole prior
    range, and the result is exact up to the intensity quadrature.

    Parameters
    ----------
    size : int
        Image side in pixels.
    free : str or sequence of str
        Free parameters, as for ``DiskFamily``; the others are fixed at the prior default.
    n_samples : int
        Importance samples of a full round (pilot rounds use a quarter).
    n_starts : int
        Least-squares starts (grid points of highest evidence).
    max_rounds : int
        Rounds at most.
    seed : int
        Seed of the base random numbers: round t uses ``default_rng([seed, t])`` for every
        image, so the output is a deterministic function of (y, σ).
    supersample : int
        Supersampling of the family's renderer (``DiskFamily`` uses 4).
    name : str
        Short identifier used in result files.

    Notes
    -----
    The window half-width is ``h = 0.2/S · min(1, 0.02/σ)`` pixels: wide enough at small σ
    to hold the posterior's cells, and narrow at large σ where the posterior is smooth in r
    and each interval of the window costs a quadrature. Cost per image: ``n_starts`` small
    least-squares fits, then per sample a render and the window's intervals (about 60 at
    32×32, S = 4, σ <= 0.02). The Monte Carlo error shows in the ESS
    (:meth:`posterior_mean`) and in :func:`sample_doubling`.

    References
    ----------
    T. Hesterberg, "Weighted average importance sampling and defensive mixture
    distributions", Technometrics 37 (1995). O. Cappé, A. Guillin, J.-M. Marin, C. Robert,
    "Population Monte Carlo", J. Comput. Graph. Stat. 13 (2004). R. Y. Rubinstein,
    "The cross-entropy method for combinatorial and continuous optimization", Methodol.
    Comput. Appl. Probab. 1 (1999) (the elite step).
    """

    def __init__(
        self,
        size: int,
        free: str | Sequence[str] = DISK_PARAMETERS,
        n_samples: int = 512,
        n_starts: int = 4,
        max_rounds: int = 10,
        seed: int = 0,
        supersample: int = 4,
        name: str = "disk_posterior",
    ) -> None:
        self.size = check_int("size", size, 2)
        self.prior = disk_prior(self.size, free)
        self.n_samples = check_int("n_samples", n_samples, 20)
        self.n_starts = check_int("n_starts", n_starts, 1)
        self.max_rounds = check_int("max_rounds", max_rounds, 1)
        self.seed = check_int("seed", seed, 0)
        self.supersample = check_int("supersample", supersample, 1)
        self.name = name
        mask = self.prior.free_mask
        self.geometry_free = mask[_GEOMETRY]
        self.intensity_free = mask[3:]
        self.low = self.prior.low[_GEOMETRY][self.geometry_free]
        self.high = self.prior.high[_GEOMETRY][self.geometry_free]
        # Start grid: 8 points per centre coordinate, 5 for the radius, at cell midpoints.
        axes = [
            self.low[k] + (self.high[k] - self.low[k]) * (np.arange(n) + 0.5) / n
            for k, n in enumerate(np.array([8, 8, 5])[self.geometry_free])
        ]
        # No geometry free (only intensities): one point, the default geometry.
        self.grid = (
            np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
            if axes
            else np.zeros((1, 0))
        )
        self.grid_coverage = disk_coverage(self._geometry(self.grid), self.size, self.supersample)

    def __call__(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoise a batch ``y`` of shape (B, 1, H, W) at noise level ``sigma`` (float or (B,))."""
        return self.posterior_mean(y, sigma)[0]

    def posterior_mean(
        self, y: torch.Tensor, sigma: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``E[x | y]`` with the Monte Carlo diagnostics of each image.

        Returns
        -------
        x_hat : tensor like ``y``
        ess : float64 tensor of shape (B,)
            Effective sample size ``(Σw)²/Σw²`` of the final round (out of ``n_samples``);
            ``inf`` where nothing is sampled (the centre frozen: the integral is exact).
        mc_variance : float64 tensor of shape (B,)
            Delta-method estimate ``Σ_i w̄_i² ‖x̄_i − x̂‖²`` (normalised weights) of the
            expected squared Monte Carlo error ``E‖x̂ − E[x | y]‖²``, in total (sse) units.
            At small σ the ESS can be low while every heavy sample carries the same cell,
            and this stays small: it is the error that matters.
        """
        images, sigmas = self._flatten(y, sigma)
        out = np.empty_like(images)
        ess, mc_variance = np.empty(len(y)), np.empty(len(y))
        for i, (image, s) in enumerate(zip(images, sigmas, strict=True)):
            out[i], ess[i], mc_variance[i] = self._posterior_mean(image, float(s))
        x_hat = torch.from_numpy(out.reshape(y.shape)).to(y)
        return x_hat, torch.from_numpy(ess), torch.from_numpy(mc_variance)

    def _flatten(self, y: torch.Tensor, sigma: float | torch.Tensor) -> tuple:
        """The images of y as float64 rows and their σ, after checking the shape."""
        if y.ndim != 4 or y.shape[1] != 1 or tuple(y.shape[2:]) != (self.size, self.size):
            raise ValueError(
                f"y must be a (B, 1, {self.size}, {self.size}) tensor for this denoiser, got "
                f"{tuple(y.shape)}; build DiskPosteriorMean with size={y.shape[-1]} for "
                "other images"
            )
        sigmas = sigma_like(sigma, y).reshape(-1).detach().cpu().double().numpy()
        images = y.detach().cpu().double().numpy().reshape(len(y), -1)
        return images, sigmas

    def _geometry(self, free_values: np.ndarray) -> np.ndarray:
        """Full (n, 3) geometries from the free coordinates (frozen ones at their defaults)."""
        geometry = np.tile(self.prior.default[_GEOMETRY], (len(free_values), 1))
        geometry[:, self.geometry_free] = free_values
        return geometry

    def _windows(self, free_values: np.ndarray, half_width: float) -> tuple:
        """Centres and radius windows ``[r − h, r + h]`` cut to the prior (``[r, r]`` with
        r frozen), and which samples have a centre in the prior and a non-empty window."""
        geometry = self._geometry(free_values)
        r_low, r_high = self.prior.low[2], self.prior.high[2]
        if self.geometry_free[2]:
            lo = np.maximum(geometry[:, 2] - half_width, r_low)
            hi = np.minimum(geometry[:, 2] + half_width, r_high)
        else:
            lo = hi = geometry[:, 2]
        centre = geometry[:, :2]
        valid = np.all((centre >= self.prior.low[:2]) & (centre <= self.prior.high[:2]), axis=1)
        valid &= (hi > lo) | ~self.geometry_free[2]
        return centre, lo, hi, valid

    def _evaluate(self, centre, lo, hi, image: np.ndarray, sigma: float) -> tuple:
        """:func:`radius_window_posterior` with this family's intensities."""
        return radius_window_posterior(
            centre,
            lo,
            hi,
            image,
            sigma,
            self.intensity_free,
            self.prior.default[3:],
            self.supersample,
        )

    def posterior_covariance(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """``Cov[x | y]`` of each image, shape (B, d, d) with d = size²: the optimal
        denoiser's Jacobian times σ² (second-order Tweedie, ``∇E[x | y] = Cov[x | y]/σ²``).

        The final importance-sampling round of :meth:`posterior_mean` (the same draws, so
        the mean matches it) gives window weights w_i; :func:`radius_window_covariance`
        adds, over every sample and radius interval, the intensities' truncated covariance
        and the spread of the interval means (law of total covariance). With the centre
        frozen it is exact up to the intensity quadrature. Its Monte Carlo error is that of
        a self-normalised importance-sampling estimate with the ESS of
        :meth:`posterior_mean`.
        """
        images, sigmas = self._flatten(y, sigma)
        d = images.shape[1]
        out = np.empty((len(images), d, d))
        for i, (image, s) in enumerate(zip(images, sigmas, strict=True)):
            centre, lo, hi, weights, _, _ = self._final_round(image, float(s))
            _, out[i] = radius_window_covariance(
                centre,
                lo,
                hi,
                image,
                float(s),
                self.intensity_free,
                self.prior.default[3:],
                self.supersample,
                weights,
            )
        return torch.from_numpy(out).to(y)

    def _posterior_mean(self, image: np.ndarray, sigma: float) -> tuple[np.ndarray, float, float]:
        """``E[x | y]`` for one flattened image, its ESS and Monte Carlo variance."""
        _, _, _, weights, mean, ess = self._final_round(image, sigma)
        x_hat = weights @ mean
        return x_hat, ess, float(np.sum(weights**2 * ((mean - x_hat) ** 2).sum(1)))

    def _final_round(self, image: np.ndarray, sigma: float) -> tuple:
        """The windows ``(centre, lo, hi)`` of the estimate's samples with a centre in the
        prior, their normalised weights, their posterior means and the ESS; one window of
        weight 1 (ESS inf) when the centre is frozen and nothing is sampled."""
        if not self.geometry_free[:2].any():
            low, high = self.prior.low[2], self.prior.high[2]
            r = self.prior.default[2]
            lo, hi = (low, high) if self.geometry_free[2] else (r, r)
            centre, lo, hi = self.prior.default[None, :2], np.array([lo]), np.array([hi])
            _, mean = self._evaluate(centre, lo, hi, image, sigma)
            return centre, lo, hi, np.ones(1), mean, np.inf
        half_width = _WINDOW_SUBPIXELS / self.supersample * min(1.0, _WINDOW_SIGMA / sigma)
        components = [self._fit(start, image, sigma) for start in self._starts(image, sigma)]
        adapted, full = None, False
        n_pilot = max(self.n_samples // 4, 20)
        for t in range(self.max_rounds):
            n = self.n_samples if full or t == self.max_rounds - 1 else n_pilot
            rng = np.random.default_rng([self.seed, t])
            samples, log_q = self._draw(rng, n, components, adapted, half_width)
            centre, lo, hi, valid = self._windows(samples, half_width)
            log_target = np.full(n, -np.inf)  # the prior density is constant on its box
            log_target[valid], mean = self._evaluate(
                centre[valid], lo[valid], hi[valid], image, sigma
            )
            log_w = log_target - log_q
            weights = np.exp(log_w - special.logsumexp(log_w))
            ess = 1.0 / np.sum(weights**2)
            full = ess >= _ESS_TARGET * n
            if full and n == self.n_samples:
                break
            adapted = _fit_gaussian(samples, log_target, weights, ess)
        return centre[valid], lo[valid], hi[valid], weights[valid], mean, float(ess)

    def _starts(self, image: np.ndarray, sigma: float) -> np.ndarray:
        """The ``n_starts`` grid points of highest evidence ``p(y | g)``."""
        c = self.grid_coverage
        stats = np.stack([(c * c).sum(1), c.sum(1), c @ image], 1)
        y_stats = np.array([image @ image, image.sum(), image.size])
        log_evidence, _ = intensity_posterior(
            stats, y_stats, sigma, self.intensity_free, self.prior.default[3:]
        )
        return self.grid[np.argsort(-log_evidence)[: self.n_starts]]

    def _fit(self, start: np.ndarray, image: np.ndarray, sigma: float) -> tuple:
        """Least-squares fit of g from ``start`` on the soft coverage: a Gaussian component."""
        default = self.prior.default[3:]
        fixed = ~self.intensity_free

        def residual(free_values: np.ndarray) -> np.ndarray:
            c = _soft_coverage(self._geometry(free_values[None])[0], self.size, self.supersample)
            columns = np.stack([c, 1 - c], 1)
            r = image - columns[:, fixed] @ default[fixed]
            if self.intensity_free.any():
                design = columns[:, self.intensity_free]
                r = r - design @ np.linalg.lstsq(design, r, rcond=None)[0]
            return r

        fit = optimize.least_squares(residual, start, bounds=(self.low, self.high), max_nfev=60)
        precision = fit.jac.T @ fit.jac / sigma**2 + np.diag(12 / (self.high - self.low) ** 2)
        # The soft coverage misses the exact one by a fraction of a sub-pixel: its optimum
        # lies ~0.1 sub-pixel off, more than the curvature's scale at small σ.
        floor = (_FIT_FLOOR / self.supersample) ** 2 * np.eye(len(fit.x))
        return fit.x, 4 * np.linalg.inv(precision) + floor

    def _draw(
        self,
        rng: np.random.Generator,
        n: int,
        components: list,
        adapted: tuple | None,
        half_width: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """n samples of the free geometry from the mixture and their log density log q."""
        k = len(self.low)
        z, u = rng.standard_normal((n, k)), rng.random((n, k))
        # The defensive component covers every sample whose window meets the prior.
        widen = np.where(self.geometry_free[2] & (np.arange(k) == k - 1), half_width, 0.0)
        low, high = self.low - widen, self.high + widen
        gaussians = list(components) + ([adapted] if adapted is not None else [])
        n_prior = n // 10
        n_fits = (n - n_prior) if adapted is None else (n - n_prior) // 5
        counts = [n_fits // len(components)] * len(components)
        counts[0] += n_fits - sum(counts)
        if adapted is not None:
            counts.append(n - n_prior - n_fits)
        samples = [low + (high - low) * u[:n_prior]]
        start = n_prior
        for (mean, cov), count in zip(gaussians, counts, strict=True):
            samples.append(mean + z[start : start + count] @ np.linalg.cholesky(cov).T)
            start += count
        samples = np.concatenate(samples)
        inside = np.all((samples >= low) & (samples <= high), axis=1)
        log_terms = [np.where(inside, -np.sum(np.log(high - low)), -np.inf)]
        log_terms += [_log_gaussian(samples, mean, cov) for mean, cov in gaussians]
        fractions = np.array([n_prior, *counts]) / n
        return samples, special.logsumexp(np.stack(log_terms, 1), axis=1, b=fractions)


def _log_gaussian(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``log N(x; mean, cov)`` for the rows of x."""
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, (x - mean).T)
    return -0.5 * (z * z).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * len(mean) * _LOG_2PI


def _fit_gaussian(
    samples: np.ndarray, log_target: np.ndarray, weights: np.ndarray, ess: float
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and doubled covariance of the samples; of the best 5 % by target density
    (equal weights) when the weights degenerate (ESS below that), so that the proposal
    shrinks onto the mode round by round instead of collapsing on one sample."""
    elite = max(len(samples) // 20, 2 * samples.shape[1] + 2)
    if ess < elite:
        weights = np.zeros_like(weights)
        weights[np.argsort(-log_target)[:elite]] = 1.0 / elite
    mean = weights @ samples
    centred = samples - mean
    cov = (weights[:, None] * centred).T @ centred
    # A tiny ridge keeps the Cholesky factor defined when the elite samples are collinear.
    return mean, 2 * cov + 1e-12 * np.eye(len(mean))


def sample_doubling(
    images: torch.Tensor,
    sigma: float,
    free: str | Sequence[str] = DISK_PARAMETERS,
    n_samples: int = 512,
    seed: int = 0,
    noise_seed: int = 0,
) -> dict[str, float]:
    """Convergence check: the Monte Carlo SSE with n and with 2n importance samples.

    Denoises ``y = x + σz`` (z from ``noise_seed``) with ``DiskPosteriorMean`` at
    ``n_samples`` (seed ``seed``) and at ``2 n_samples`` (seed ``seed + 1``, independent
    draws) and compares the mean SSE ``‖x̂ − x‖²`` over the images. The integration is
    converged when doubling moves the mean SSE by less than its standard error over images
    (``passed``).

    Parameters
    ----------
    images : tensor of shape (B, 1, H, W), B >= 2
        Clean disk images of the family ``DiskFamily(H, free=free)``.
    sigma : float
        Noise standard deviation (pixel units).

    Returns
    -------
    dict
        ``sse_n``, ``sse_2n`` (mean SSE), ``se`` (standard error of ``sse_2n`` over
        images), ``difference`` (``sse_2n − sse_n``), ``se_difference`` (its paired
        standard error), ``ess_n`` and ``ess_2n`` (median ESS), ``passed``.
    """
    if images.ndim != 4 or images.shape[0] < 2:
        raise ValueError(
            f"images must be a (B, 1, H, W) tensor with B >= 2, got {tuple(images.shape)}"
        )
    x = images.double()
    gen = torch.Generator().manual_seed(noise_seed)
    y = x + sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    size = x.shape[-1]
    sse, ess = [], []
    for n, s in ((n_samples, seed), (2 * n_samples, seed + 1)):
        x_hat, e, _ = DiskPosteriorMean(size, free, n_samples=n, seed=s).posterior_mean(y, sigma)
        sse.append((x_hat - x).flatten(1).square().sum(1).numpy())
        ess.append(float(np.median(e.numpy())))
    root_b = np.sqrt(len(x))
    se = float(sse[1].std(ddof=1) / root_b)
    difference = sse[1] - sse[0]
    return {
        "sse_n": float(sse[0].mean()),
        "sse_2n": float(sse[1].mean()),
        "se": se,
        "difference": float(difference.mean()),
        "se_difference": float(difference.std(ddof=1) / root_b),
        "ess_n": ess[0],
        "ess_2n": ess[1],
        "passed": bool(abs(difference.mean()) < se),
    }
