"""The disk posterior mean against exact quadratures, brute-force grids and other denoisers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from benchmarks.evaluation import risk_curves
from models.disk_integrals import (
    box_gaussian_moments,
    disk_coverage,
    intensity_posterior,
    radius_window_posterior,
)
from models.disk_posterior import DiskPosteriorMean, sample_doubling
from models.memorizer import Memorizer
from models.wiener import Wiener
from synthetic.disks import DiskFamily, disk_prior, render_disks

S = 4  # the family's supersampling


def _noisy(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return x + sigma * torch.randn(x.shape, generator=g, dtype=x.dtype)


def _exact_over(axis: int, y: np.ndarray, sigma: float, size: int, crossings: np.ndarray):
    """``E[x | y]`` integrating coordinate ``axis`` of θ over its prior range, the others at
    the default: the image is constant between consecutive ``crossings``."""
    prior = disk_prior(size)
    lo, hi = prior.low[axis], prior.high[axis]
    cuts = np.unique(crossings[(crossings > lo) & (crossings < hi)])
    edges = np.concatenate([[lo], cuts, [hi]])
    params = np.tile(prior.default, (len(edges) - 1, 1))
    params[:, axis] = (edges[1:] + edges[:-1]) / 2
    x = render_disks(params, size).reshape(len(params), -1)
    log_w = np.log(np.diff(edges)) - ((x - y) ** 2).sum(1) / (2 * sigma**2)
    w = np.exp(log_w - special.logsumexp(log_w))
    return w @ x


def _subpixels(size: int) -> tuple[np.ndarray, np.ndarray]:
    grid = (np.arange(size * S) + 0.5) / S
    py, px = np.meshgrid(grid, grid, indexing="ij")
    return px.ravel(), py.ravel()


# --- the intensity integral -------------------------------------------------------------


@pytest.mark.parametrize(
    ("mean", "sd", "rho"),
    [
        ((0.4, 0.7), (0.1, 0.2), 0.0),
        ((0.52, 1.49), (0.05, 0.8), -0.34),
        ((1.1, -0.2), (0.12, 0.06), 0.45),
        ((0.02, 0.97), (0.3, 0.5), -0.5),
    ],
)
def test_box_gaussian_moments_match_dblquad(mean, sd, rho):
    mu = np.array(mean)
    cov = np.array([[sd[0] ** 2, rho * sd[0] * sd[1]], [rho * sd[0] * sd[1], sd[1] ** 2]])
    log_mass, truncated, truncated_cov = box_gaussian_moments(mu[None], cov[None])
    pdf = stats.multivariate_normal(mu, cov).pdf
    opts = {"epsabs": 1e-13, "epsrel": 1e-11}
    weights = [
        lambda u, v: 1.0,
        lambda u, v: u,
        lambda u, v: v,
        lambda u, v: u * u,
        lambda u, v: u * v,
        lambda u, v: v * v,
    ]
    moments = [
        integrate.dblquad(lambda v, u, g=g: g(u, v) * pdf([u, v]), 0, 1, 0, 1, **opts)[0]
        for g in weights
    ]
    mass, m1, m2, m11, m12, m22 = moments
    assert log_mass[0] == pytest.approx(math.log(mass), abs=1e-9)
    e = np.array([m1, m2]) / mass
    np.testing.assert_allclose(truncated[0], e, atol=1e-9)
    second = np.array([[m11, m12], [m12, m22]]) / mass
    np.testing.assert_allclose(truncated_cov[0], second - np.outer(e, e), atol=1e-9)


@pytest.mark.parametrize(
    ("mean", "sd"),
    [((0.03, 0.5), (0.01, 0.2)), ((0.5, 0.5), (0.01, 0.02)), ((0.2, -3.0), (0.1, 0.2))],
)
def test_box_gaussian_moments_factorise_without_correlation(mean, sd):
    """ρ = 0: the mass is a product of 1-D masses, the mean that of two truncated normals
    (the second case lies 25 sd inside: the shortcut; the third 15 sd outside)."""
    mu, sd = np.array(mean), np.array(sd)
    log_mass, truncated, truncated_cov = box_gaussian_moments(mu[None], np.diag(sd**2)[None])
    a, b = -mu / sd, (1 - mu) / sd
    # Φ(b) − Φ(a), or Q(a) − Q(b) in the upper tail where Φ rounds to 1.
    mass = np.where(a < 0, special.ndtr(b) - special.ndtr(a), stats.norm.sf(a) - stats.norm.sf(b))
    assert log_mass[0] == pytest.approx(np.log(mass).sum(), abs=1e-10)
    dist = stats.truncnorm(a, b, loc=mu, scale=sd)
    np.testing.assert_allclose(truncated[0], dist.mean(), atol=1e-10)
    np.testing.assert_allclose(truncated_cov[0], np.diag(dist.var()), atol=1e-10)


def test_box_gaussian_moments_one_dimensional_and_far_tails():
    mean = np.array([[0.3], [1.4], [-8.0], [0.5]])
    sd = np.array([0.2, 0.1, 0.5, 1e-4])
    log_mass, truncated, truncated_cov = box_gaussian_moments(mean, (sd**2)[:, None, None])
    a, b = -mean[:, 0] / sd, (1 - mean[:, 0]) / sd
    dist = stats.truncnorm(a, b, loc=mean[:, 0], scale=sd)
    ref = np.log(stats.norm.sf(a) - stats.norm.sf(b))
    np.testing.assert_allclose(log_mass, ref, rtol=1e-10)
    np.testing.assert_allclose(truncated[:, 0], dist.mean(), rtol=1e-9)
    np.testing.assert_allclose(truncated_cov[:, 0, 0], dist.var(), rtol=1e-6)


@pytest.mark.parametrize("free", [(True, True), (True, False), (False, True), (False, False)])
def test_intensity_posterior_matches_a_grid(free):
    size, sigma = 8, 0.15
    free, frozen = np.array(free), np.array([0.8, 0.2])
    coverage = disk_coverage(np.array([[4.1, 3.7, 1.6], [3.9, 4.4, 1.9]]), size)
    rng = np.random.default_rng(0)
    y = 0.75 * coverage[0] + 0.35 * (1 - coverage[0]) + sigma * rng.standard_normal(size**2)
    st = np.stack([(coverage**2).sum(1), coverage.sum(1), coverage @ y], 1)
    log_evidence, intensities = intensity_posterior(
        st, np.array([y @ y, y.sum(), y.size]), sigma, free, frozen
    )
    # Brute force: the likelihood itself on a 600 x 600 midpoint grid of (fg, bg).
    u = (np.arange(600) + 0.5) / 600
    fg = u[:, None] if free[0] else np.full((1, 1), frozen[0])
    bg = u[None, :] if free[1] else np.full((1, 1), frozen[1])
    cell = 1 / 600 ** free.sum()
    for k, c in enumerate(coverage):
        x = bg[..., None] + (fg - bg)[..., None] * c  # (nf, nb, d)
        log_lik = -((y - x) ** 2).sum(-1) / (2 * sigma**2)
        top = log_lik.max()
        w = np.exp(log_lik - top)
        assert log_evidence[k] == pytest.approx(top + math.log(w.sum() * cell), abs=2e-5)
        mean_fg = (w * fg).sum() / w.sum()
        mean_bg = (w * bg).sum() / w.sum()
        np.testing.assert_allclose(intensities[k], [mean_fg, mean_bg], atol=2e-5)


# --- rendering and the radius integral --------------------------------------------------


def test_render_is_linear_in_the_intensities():
    theta = DiskFamily(size=16, seed=4).parameters("A", 50).numpy()
    coverage = disk_coverage(theta[:, :3], 16).reshape(-1, 16, 16)
    fg, bg = theta[:, 3, None, None], theta[:, 4, None, None]
    np.testing.assert_array_equal(render_disks(theta, 16), bg + (fg - bg) * coverage)


@pytest.mark.parametrize("half_width", [0.0, 0.04, 0.4, 1.0])
def test_radius_window_matches_interval_enumeration(half_width):
    size, sigma = 16, 0.05
    rng = np.random.default_rng(1)
    free, frozen = np.array([True, True]), np.array([0.8, 0.2])
    centre = rng.uniform(5, 11, (3, 2))
    r0 = rng.uniform(2.5, 3.5, 3)
    lo, hi = r0 - half_width, r0 + half_width
    x = render_disks(np.column_stack([centre, r0, np.full(3, 0.7), np.full(3, 0.3)]), size)
    y = x[0].ravel() + sigma * rng.standard_normal(size**2)
    log_mass, mean = radius_window_posterior(centre, lo, hi, y, sigma, free, frozen)
    px, py = _subpixels(size)
    y_stats = np.array([y @ y, y.sum(), y.size])
    for i in range(3):
        dist = np.hypot(px - centre[i, 0], py - centre[i, 1])
        cuts = np.unique(dist[(dist > lo[i]) & (dist < hi[i])])
        edges = np.concatenate([[lo[i]], cuts, [hi[i]]])
        mids = (edges[1:] + edges[:-1]) / 2 if half_width else np.array([r0[i]])
        lengths = np.diff(edges) if half_width else np.ones(1)
        c = disk_coverage(np.column_stack([np.tile(centre[i], (len(mids), 1)), mids]), size)
        st = np.stack([(c * c).sum(1), c.sum(1), c @ y], 1)
        log_ev, u = intensity_posterior(st, y_stats, sigma, free, frozen)
        log_w = np.log(lengths) + log_ev
        w = np.exp(log_w - special.logsumexp(log_w))
        assert log_mass[i] == pytest.approx(special.logsumexp(log_w), abs=1e-9)
        ref = w @ (u[:, 1:] + (u[:, :1] - u[:, 1:]) * c)
        np.testing.assert_allclose(mean[i], ref, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.002, 0.01, 0.05, 0.3, 1.0])
def test_radius_only_matches_exact_quadrature(sigma):
    """With only r free the image is constant between sub-pixel distances from the centre:
    the posterior mean is a finite sum, computed here from the likelihood itself."""
    size = 32
    family = DiskFamily(size=size, seed=5, free=("r",))
    x = family.images("test", 3).double()
    y = _noisy(x, sigma, seed=6)
    f = DiskPosteriorMean(size, free=("r",))
    x_hat, ess, mc_variance = f.posterior_mean(y, sigma)
    assert torch.all(torch.isinf(ess)) and torch.all(mc_variance == 0)
    px, py = _subpixels(size)
    prior = disk_prior(size, ("r",))
    distances = np.hypot(px - prior.default[0], py - prior.default[1])
    for i in range(3):
        ref = _exact_over(2, y[i].reshape(-1).numpy(), sigma, size, distances)
        got = x_hat[i].reshape(-1).numpy()
        assert np.linalg.norm(got - ref) <= 1e-9 * np.linalg.norm(ref)


def test_radius_and_intensities_match_a_3d_grid():
    size, sigma = 16, 0.3
    x = DiskFamily(size=size, seed=7, free=("r", "fg", "bg")).images("test", 2).double()
    y = _noisy(x, sigma, seed=8)
    x_hat = DiskPosteriorMean(size, free=("r", "fg", "bg"))(y, sigma)
    prior = disk_prior(size, ("r",))
    px, py = _subpixels(size)
    distances = np.hypot(px - prior.default[0], py - prior.default[1])
    lo, hi = prior.low[2], prior.high[2]
    edges = np.concatenate([[lo], np.unique(distances[(distances > lo) & (distances < hi)]), [hi]])
    params = np.tile(prior.default, (len(edges) - 1, 1))
    params[:, 2] = (edges[1:] + edges[:-1]) / 2
    coverage = disk_coverage(params[:, :3], size)
    u = (np.arange(400) + 0.5) / 400  # fg, bg midpoint grid
    for i in range(2):
        yi = y[i].reshape(-1).numpy()
        a = u[:, None] - u[None, :]  # fg − bg on the grid
        log_w = []
        for k in range(0, len(coverage), 16):
            c = coverage[k : k + 16]
            # ‖y − bg − (fg − bg) c‖² at every grid point, expanded in per-interval sums.
            sq = (
                (yi @ yi)
                - 2 * u[None, None, :] * yi.sum()
                - 2 * a[None] * (c @ yi)[:, None, None]
                + u[None, None, :] ** 2 * size**2
                + 2 * u[None, None, :] * a[None] * c.sum(1)[:, None, None]
                + a[None] ** 2 * (c * c).sum(1)[:, None, None]
            )
            lw = np.log(np.diff(edges)[k : k + 16])[:, None, None] - sq / (2 * sigma**2)
            log_w.append(lw)
        lw = np.concatenate(log_w)
        w = np.exp(lw - lw.max())
        w /= w.sum()
        ref = (w * u[None, None, :]).sum() + (w * a[None]).sum((1, 2)) @ coverage
        got = x_hat[i].reshape(-1).numpy()
        print(
            f"3-D grid: relative difference {np.linalg.norm(got - ref) / np.linalg.norm(ref):.1e}"
        )
        assert np.linalg.norm(got - ref) <= 1e-4 * np.linalg.norm(ref)


# --- importance sampling ----------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.003, 0.03, 0.3])
def test_centre_sampling_matches_exact_quadrature(sigma):
    """free = ('cx',): importance sampling against the exact finite sum over cx."""
    size = 16
    x = DiskFamily(size=size, seed=1, free=("cx",)).images("test", 4).double()
    y = _noisy(x, sigma, seed=2)
    x_hat, ess, mc_variance = DiskPosteriorMean(size, free=("cx",)).posterior_mean(y, sigma)
    prior = disk_prior(size, ("cx",))
    _, cy, r = prior.default[:3]
    px, py = _subpixels(size)
    near = np.abs(py - cy) <= r
    half = np.sqrt(r**2 - (py[near] - cy) ** 2)
    crossings = np.concatenate([px[near] - half, px[near] + half])
    for i in range(4):
        ref = _exact_over(0, y[i].reshape(-1).numpy(), sigma, size, crossings)
        err2 = float(((x_hat[i].reshape(-1).numpy() - ref) ** 2).sum())
        print(
            f"sigma {sigma}: ESS {ess[i]:.0f}, error² {err2:.1e}, MC variance {mc_variance[i]:.1e}"
        )
        assert ess[i] > 100
        assert err2 <= 16 * mc_variance[i] + 1e-24
        assert math.sqrt(err2) <= 3e-3 * np.linalg.norm(ref)


def test_collapses_onto_the_true_cell_at_small_sigma():
    """σ = 1e-3 and contrast > 0.3: a neighbouring cell (one sub-pixel flipped) costs over
    (0.3/16)²/(2σ²) = 175 nats, so E[x | y] is the intensity posterior of the true cell."""
    size, sigma = 16, 1e-3
    family = DiskFamily(size=size, seed=3)
    theta = family.parameters("test", 40).numpy()
    keep = np.abs(theta[:, 3] - theta[:, 4]) > 0.3
    x = family.images("test", 40).double()[keep][:12]
    theta = theta[keep][:12]
    y = _noisy(x, sigma, seed=4)
    x_hat, ess, _ = DiskPosteriorMean(size).posterior_mean(y, sigma)
    coverage = disk_coverage(theta[:, :3], size)
    for i, c in enumerate(coverage):
        yi = y[i].reshape(-1).numpy()
        st = np.array([[c @ c, c.sum(), c @ yi]])
        _, u = intensity_posterior(
            st, np.array([yi @ yi, yi.sum(), yi.size]), sigma, np.ones(2, bool), np.zeros(2)
        )
        oracle = u[0, 1] + (u[0, 0] - u[0, 1]) * c
        err2 = float(((x_hat[i].reshape(-1).numpy() - oracle) ** 2).sum())
        assert err2 < 0.01 * sigma**2, (i, err2 / sigma**2, float(ess[i]))


def test_all_free_doubling_moves_sse_by_less_than_one_standard_error():
    x = DiskFamily(size=16, seed=9).images("test", 16)
    report = sample_doubling(x, 0.05, n_samples=256, seed=0, noise_seed=1)
    print(report)
    assert report["passed"]
    assert abs(report["difference"]) < report["se"]


# --- the posterior covariance: the optimal denoiser's Jacobian ---------------------------


def _fd_jacobian(f, y: torch.Tensor, sigma: float, h: float) -> np.ndarray:
    """Central finite differences of f at one image y (1, 1, n, n): J[:, j] = ∂f/∂y_j."""
    d = y.numel()
    eye = torch.eye(d, dtype=y.dtype).reshape(d, *y.shape[1:])
    return ((f(y + h * eye, sigma) - f(y - h * eye, sigma)) / (2 * h)).reshape(d, d).numpy().T


@pytest.mark.parametrize("free", [("r", "fg", "bg"), ("r",), ("fg", "bg")])
@pytest.mark.parametrize("sigma", [0.03, 0.3])
def test_frozen_centre_covariance_is_the_jacobian(free, sigma):
    """Centre frozen: the posterior mean is exact, so its finite-difference Jacobian must
    equal Cov[x | y]/σ² (second-order Tweedie) to the differencing error."""
    size = 12
    x = DiskFamily(size=size, seed=3, free=free).images("test", 1).double()
    y = _noisy(x, sigma, seed=1)
    f = DiskPosteriorMean(size, free=free)
    cov = f.posterior_covariance(y, sigma)[0].numpy()
    np.testing.assert_array_equal(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() > -1e-12 * np.abs(cov).max()
    fd = _fd_jacobian(f, y, sigma, 1e-3 * sigma)
    assert np.linalg.norm(fd - cov / sigma**2) <= 1e-6 * np.linalg.norm(fd)


def test_covariance_matches_finite_differences_within_monte_carlo_error():
    """All five parameters free (importance sampling): along the manifold's tangent
    directions v, ``vᵀ Cov v / σ²`` and the finite difference ``vᵀ (f(y + hv) − f(y − hv))/2h``
    over 4 independent seeds agree within 4 standard errors of their difference, and the
    effective dimension is near the manifold's 5."""
    size, sigma, h = 16, 0.05, 0.05 * 0.05
    family = DiskFamily(size=size, seed=3)
    y = _noisy(family.images("test", 1).double(), sigma, seed=1)
    tangent = family.tangent("test", 1)[0]
    stein, fd, traces = [], [], []
    for seed in range(4):
        f = DiskPosteriorMean(size, seed=seed)
        cov = f.posterior_covariance(y, sigma)[0].numpy()
        traces.append(np.trace(cov) / sigma**2)
        for k in (0, 2, 3):  # cx, r, fg
            v = tangent[k].ravel() / np.linalg.norm(tangent[k])
            vt = torch.from_numpy(v).reshape(y.shape)
            stein.append(v @ cov @ v / sigma**2)
            step = (f(y + h * vt, sigma) - f(y - h * vt, sigma)) / (2 * h)
            fd.append(float(step.ravel().numpy() @ v))
    stein, fd = np.reshape(stein, (4, 3)), np.reshape(fd, (4, 3))
    difference = (stein - fd).mean(0)
    se = np.sqrt(stein.var(0, ddof=1) / 4 + fd.var(0, ddof=1) / 4)
    print(f"stein {stein.mean(0)}, fd {fd.mean(0)}, difference / se {difference / se}")
    assert np.all(np.abs(difference) <= 4 * se)
    assert 3.5 < np.median(traces) < 5.5


# --- optimality -------------------------------------------------------------------------


def test_no_reference_denoiser_beats_it():
    """On held-out disks, paired: posterior mean <= memorizer (5000 training images) and
    Wiener PCA within 3 standard errors, at every σ."""
    size = 16
    family = DiskFamily(size=size, seed=10)
    train = family.images("A", 5000).double()
    x = family.images("test", 32).double()
    f = DiskPosteriorMean(size, n_samples=256)
    denoisers = {
        "posterior": f,
        "memorizer": Memorizer(train),
        "wiener": Wiener.from_data(train),
    }
    curves = risk_curves(denoisers, x, [0.03, 0.1, 0.3], seed=11, progress=False)
    for j, sigma in enumerate(curves.sigma):
        mse = {name: curves.sse[name][j].mean() / curves.d for name in denoisers}
        print(f"sigma {sigma}: " + ", ".join(f"{k} {v:.2e}" for k, v in mse.items()))
        for other in ("memorizer", "wiener"):
            diff = curves.sse["posterior"][j] - curves.sse[other][j]
            se = diff.std(ddof=1) / math.sqrt(len(diff))
            assert diff.mean() <= 3 * se, (sigma, other, diff.mean(), se)
            assert mse["posterior"] < mse[other]


# --- determinism and bad input ----------------------------------------------------------


def test_deterministic_and_independent_of_the_batch():
    x = DiskFamily(size=16, seed=12).images("test", 4).double()
    y = _noisy(x, 0.1, seed=13)
    f = DiskPosteriorMean(16, n_samples=128)
    assert f.name == "disk_posterior"
    a = f(y, 0.1)
    assert torch.equal(a, f(y, 0.1))
    assert torch.equal(a, DiskPosteriorMean(16, n_samples=128)(y, 0.1))
    assert torch.equal(a[1:3], f(y[1:3], 0.1))
    assert torch.equal(a[2:3], f(y[2:3], torch.tensor([0.1], dtype=torch.float64)))
    _, _, mc_variance = f.posterior_mean(y, 0.1)
    other, _, mc_other = DiskPosteriorMean(16, n_samples=128, seed=1).posterior_mean(y, 0.1)
    assert not torch.equal(a, other)
    # Another seed moves each image by about its Monte Carlo error, not more.
    assert torch.all((a - other).flatten(1).square().sum(1) < 9 * (mc_variance + mc_other))
    assert a.dtype == y.dtype and a.shape == y.shape
    assert f(y.float(), 0.1).dtype == torch.float32


def test_per_image_sigma():
    x = DiskFamily(size=16, seed=14).images("test", 2).double()
    sigma = torch.tensor([0.02, 0.4], dtype=torch.float64)
    y = x + sigma[:, None, None, None] * torch.randn(x.shape, dtype=x.dtype)
    f = DiskPosteriorMean(16, n_samples=128)
    both = f(y, sigma)
    assert torch.equal(both[:1], f(y[:1], 0.02))
    assert torch.equal(both[1:], f(y[1:], 0.4))


def test_bad_input():
    f = DiskPosteriorMean(16, n_samples=64)
    y = torch.zeros(2, 1, 16, 16)
    for sigma in [0.0, -0.1, float("nan"), torch.tensor([0.1, 0.0])]:
        with pytest.raises(ValueError, match="sigma"):
            f(y, sigma)
    with pytest.raises(ValueError, match="size=8"):
        f(torch.zeros(2, 1, 8, 8), 0.1)
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        f(torch.zeros(2, 16, 16), 0.1)
    with pytest.raises(ValueError, match="free disk parameters"):
        DiskPosteriorMean(16, free=("radius",))
    with pytest.raises(ValueError, match="n_samples"):
        DiskPosteriorMean(16, n_samples=5)
    with pytest.raises(ValueError, match="B >= 2"):
        sample_doubling(torch.zeros(1, 1, 16, 16), 0.1)


@pytest.mark.benchmark
def test_speed_32px():
    """Seconds per 32x32 image at the default sample count, all five parameters free."""
    import time

    x = DiskFamily(size=32, seed=15).images("test", 8).double()
    f = DiskPosteriorMean(32)
    for sigma in [0.001, 0.01, 0.1, 1.0]:
        y = _noisy(x, sigma, seed=16)
        start = time.perf_counter()
        _, ess, _ = f.posterior_mean(y, sigma)
        per_image = (time.perf_counter() - start) / len(x)
        print(f"sigma {sigma}: {per_image:.3f} s/image, median ESS {ess.median():.0f}")
        assert per_image < 1.0
