"""Samplers against exact denoisers: the memorizer (samples are training images) and a
Gaussian's Wiener filter (the probability flow has a closed form), plus shared noise."""

from __future__ import annotations

import math

import pytest
import torch

from models.memorizer import Memorizer
from models.samplers import (
    ascent_noise_scale,
    ascent_step_size,
    initial_noise,
    karras_sigmas,
    log_sigmas_schedule,
    probability_flow,
    stochastic_ascent,
)
from theory.sigma import sigma_like
from theory.similarity import cosine_similarity_matrix, nearest_neighbours

SIZE = 8


def _train(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _noise(n: int, seed: int, sigma0: float = 1.0) -> torch.Tensor:
    return initial_noise(n, SIZE, sigma0, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rms(a: torch.Tensor) -> torch.Tensor:
    return a.flatten(1).square().mean(1).sqrt()


class DiagonalWiener:
    """Exact denoiser of x ~ N(mu, diag(s^2)) on (B, 1, 1, d) tensors."""

    name = "diagonal_wiener"

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean, self.var = mean, std.square()

    def __call__(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        s2 = sigma_like(sigma, y).square()
        return self.mean + self.var / (self.var + s2) * (y - self.mean)


# --- step rules and schedules -------------------------------------------------------------


@pytest.mark.parametrize("h0", [0.01, 0.3, 1.0])
def test_step_size_solves_its_recurrence(h0):
    # h_t = h0 t / (1 + h0 (t - 1))  <=>  1/h_t - 1 = (1/h0 - 1) / t.
    for t in [1, 2, 3, 10, 1000]:
        h = ascent_step_size(t, h0)
        assert 1 / h - 1 == pytest.approx((1 / h0 - 1) / t, abs=1e-12)
    assert ascent_step_size(1, h0) == pytest.approx(h0)


@pytest.mark.parametrize("beta", [0.05, 0.5, 1.0])
@pytest.mark.parametrize("h", [0.01, 0.4, 1.0])
def test_noise_scale_makes_effective_noise_shrink_by_one_minus_beta_h(beta, h):
    sigma = torch.tensor([0.02, 0.3, 1.0], dtype=torch.float64)
    gamma = ascent_noise_scale(sigma, h, beta)
    # Old noise kept, (1 - h) sigma, plus independent fresh noise gamma: (1 - beta h) sigma.
    expected = ((1 - beta * h) ** 2 - (1 - h) ** 2) * sigma**2
    torch.testing.assert_close(gamma**2, expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(
        ((1 - h) * sigma) ** 2 + gamma**2, ((1 - beta * h) * sigma) ** 2, rtol=1e-12, atol=0
    )
    if beta == 1.0:
        assert torch.equal(gamma, torch.zeros_like(sigma))


def test_one_ascent_step_shrinks_the_noise_as_designed():
    # Memorizer of one image: f(y) = x, so y - x after one step is (1-h) e + gamma z and its
    # mean square is (1 - beta h)^2 sigma_1^2 up to Monte Carlo error (d = 16 * 64 * 64).
    x = torch.rand(1, 1, 64, 64, generator=_gen(0), dtype=torch.float64)
    y0 = x + 0.5 * torch.randn(16, 1, 64, 64, generator=_gen(1), dtype=torch.float64)
    h0, beta = 0.3, 0.4
    out = stochastic_ascent(
        Memorizer(x), y0, h0=h0, beta=beta, generator=_gen(2), max_steps=1, sigma_final=0.6
    )
    sigma1 = _rms(y0 - x)
    torch.testing.assert_close(out.sigma, sigma1)
    ratio = (out.y - x).square().sum() / ((1 - beta * h0) ** 2 * sigma1.square().sum() * 64 * 64)
    se = math.sqrt(2 / (16 * 64 * 64))  # relative standard error of a mean of squares
    assert abs(ratio.item() - 1) < 3 * se
    assert out.steps.tolist() == [1] * 16
    torch.testing.assert_close(out.x, x.expand(16, -1, -1, -1))


def test_schedules():
    s = log_sigmas_schedule(5, sigma_max=1.0, sigma_min=0.01)
    torch.testing.assert_close(
        s, torch.tensor([1.0, 10**-0.5, 0.1, 10**-1.5, 0.01], dtype=torch.float64)
    )
    k = karras_sigmas(6, 0.002, 80.0, rho=7.0)
    assert k[0].item() == pytest.approx(80.0) and k[-1].item() == pytest.approx(0.002)
    assert bool(torch.all(k[1:] < k[:-1]))
    steps = k ** (1 / 7)
    torch.testing.assert_close(steps.diff(), steps.diff()[:1].expand(5))
    torch.testing.assert_close(
        karras_sigmas(5, 0.2, 1.0, rho=1.0),
        torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2], dtype=torch.float64),
    )


def test_initial_noise_moments_and_seed():
    y = initial_noise(64, (16, 12), sigma0=0.7, mean=0.5, generator=_gen(3))
    assert y.shape == (64, 1, 16, 12) and y.dtype == torch.float32
    n = y.numel()
    assert abs(y.mean().item() - 0.5) < 3 * 0.7 / math.sqrt(n)
    assert abs(y.var().item() / 0.49 - 1) < 3 * math.sqrt(2 / n)
    assert torch.equal(y, initial_noise(64, (16, 12), 0.7, generator=_gen(3)))
    assert not torch.equal(y, initial_noise(64, (16, 12), 0.7, generator=_gen(4)))


# --- determinism and shared noise -----------------------------------------------------------


def test_samplers_are_deterministic_for_a_seed():
    mem = Memorizer(_train(5, 10))

    def ascent(noise_seed, z_seed, beta=0.5):
        return stochastic_ascent(mem, _noise(4, noise_seed), beta=beta, generator=_gen(z_seed))

    a, b = ascent(0, 1), ascent(0, 1)
    for first, second in zip(a, b, strict=True):
        assert torch.equal(first, second)
    assert not torch.equal(a.y, ascent(0, 2).y)  # another injected noise
    assert not torch.equal(a.y, ascent(3, 1).y)  # another initial noise
    # beta = 1 injects nothing: the generator plays no part.
    assert torch.equal(ascent(0, 1, beta=1.0).y, ascent(0, 2, beta=1.0).y)
    sigmas = log_sigmas_schedule(10)
    for method in ("euler", "heun"):
        p = probability_flow(mem, _noise(4, 0), sigmas, method=method)
        assert torch.equal(p, probability_flow(mem, _noise(4, 0), sigmas, method=method))
        assert not torch.equal(p, probability_flow(mem, _noise(4, 3), sigmas, method=method))


def test_a_and_b_receive_identical_noise():
    # Two different denoisers (memorizers of two different images), one seed.
    recorded = {}
    for key, seed in (("A", 20), ("B", 21)):
        zs = []
        stochastic_ascent(
            Memorizer(_train(1, seed)),
            _noise(3, 5),
            generator=_gen(7),
            callback=lambda info, zs=zs: zs.append(info["noise"].clone()),
        )
        recorded[key] = zs
    a, b = recorded["A"], recorded["B"]
    assert len(a) > 10 and len(b) > 10
    # Step t draws randn(batch shape) from the generator, whatever the denoiser.
    reference = _gen(7)
    for t in range(max(len(a), len(b))):
        z = torch.randn(3, 1, SIZE, SIZE, generator=reference)
        for zs in (a, b):
            if t < len(zs):
                assert torch.equal(zs[t], z)


def test_denoiser_gets_the_predicted_level_of_active_images():
    calls = []
    mem = Memorizer(_train(3, 30))

    def recording(y, sigma):
        assert isinstance(sigma, torch.Tensor) and sigma.shape == (y.shape[0],)
        calls.append(sigma.clone())
        return mem(y, sigma)

    states = []
    out = stochastic_ascent(
        recording,
        _noise(6, 31),
        h0=0.05,
        beta=0.5,
        sigma0=1.0,
        generator=_gen(32),
        callback=lambda info: states.append(
            (info["sigma"].clone(), info["h"], info["active"].clone())
        ),
    )
    assert torch.equal(calls[0], torch.ones(6))
    for t in range(1, len(calls)):
        sigma, h, active = states[t - 1]
        still = active & (sigma > 0.01)
        torch.testing.assert_close(calls[t], ((1 - 0.5 * h) * sigma)[still])
    steps = torch.stack([s[2] for s in states]).sum(0)
    assert torch.equal(steps, out.steps)
    assert (out.sigma <= 0.01).all()


# --- samplers with the exact memorizer --------------------------------------------------------


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_ascent_with_memorizer_of_one_image_returns_it(beta):
    x = _train(1, 40)
    out = stochastic_ascent(Memorizer(x), _noise(6, 41), beta=beta, generator=_gen(42))
    cos_x = cosine_similarity_matrix(out.x, x)[:, 0]
    cos_y = cosine_similarity_matrix(out.y, x)[:, 0]
    assert cos_x.min() > 0.999 and cos_y.min() > 0.999
    # The last iterate still carries noise of level (1 - beta h_T) sigma_T < sigma_final.
    assert (_rms(out.y - x) < 0.01).all()


def test_probability_flow_with_memorizer_of_one_image_returns_it():
    x = _train(1, 43)
    y0 = _noise(6, 44)
    sigmas = log_sigmas_schedule(12, 1.0, 0.01)
    for method in ("euler", "heun"):
        states = []
        out = probability_flow(
            Memorizer(x),
            y0,
            sigmas,
            method=method,
            callback=lambda info, s=states: s.append(info["y"].clone()),
        )
        assert cosine_similarity_matrix(out, x)[:, 0].min() > 0.999
        # f = x at every level: the flow is x + (y0 - x) sigma / sigma_0, which both rules
        # integrate exactly.
        torch.testing.assert_close(states[-1], x + (y0 - x) * 0.01, rtol=0, atol=1e-5)
        assert len(states) == 11


def test_samples_from_memorizer_of_a_few_images_are_training_images():
    train = _train(4, 50)
    mem = Memorizer(train)
    out = stochastic_ascent(mem, _noise(8, 51), generator=_gen(52))
    flow = probability_flow(mem, _noise(8, 51), log_sigmas_schedule(20), method="heun")
    for samples in (out.x, out.y, flow):
        index, similarity = nearest_neighbours(samples, train)
        assert similarity.min() > 0.999
        assert len(set(index.tolist())) >= 2  # not all collapsed onto one image


def test_progress_bar_and_step_cap_warning():
    mem = Memorizer(_train(2, 60))
    with pytest.warns(RuntimeWarning, match="did not reach sigma_final"):
        out = stochastic_ascent(mem, _noise(2, 61), generator=_gen(62), max_steps=3, progress=True)
    assert out.steps.tolist() == [3, 3]
    probability_flow(mem, _noise(2, 61), log_sigmas_schedule(3), progress=True)


# --- probability flow against a Gaussian's closed form ---------------------------------------

MU = torch.tensor([0.5, 0.2, 0.8, 0.4], dtype=torch.float64)
STD = torch.tensor([0.05, 0.1, 0.3, 0.6], dtype=torch.float64)
SIGMA_MAX, SIGMA_MIN = 2.0, 1e-3


def _gaussian_start(n: int, seed: int) -> torch.Tensor:
    """Draws from the data law smoothed at SIGMA_MAX, N(mu, (s^2 + sigma_max^2) I)."""
    z = torch.randn(n, 1, 1, 4, generator=_gen(seed), dtype=torch.float64)
    return MU + (STD.square() + SIGMA_MAX**2).sqrt() * z


def test_probability_flow_samples_the_gaussian():
    y0 = _gaussian_start(100_000, 70)
    out = probability_flow(
        DiagonalWiener(MU, STD), y0, log_sigmas_schedule(100, SIGMA_MAX, SIGMA_MIN), method="heun"
    )
    var = out.reshape(-1, 4).var(0)
    # Returned: f(x, sigma_min) of x ~ N(mu, s^2 + sigma_min^2): variance s^4/(s^2 + sigma_min^2).
    expected = STD**4 / (STD**2 + SIGMA_MIN**2)
    se = expected * math.sqrt(2 / (100_000 - 1))
    assert ((var - expected).abs() < 3 * se).all(), (var / expected).tolist()
    assert ((out.reshape(-1, 4).mean(0) - MU).abs() < 3 * STD / math.sqrt(100_000)).all()


def test_probability_flow_converges_at_first_and_second_order():
    # The Gaussian flow is linear: x(sigma) - mu = (y0 - mu) sqrt((s^2 + sigma^2)/(s^2 + smax^2)).
    y0 = _gaussian_start(64, 71)
    shrink = (STD**2 + SIGMA_MIN**2) / (STD**2 + SIGMA_MAX**2)
    exact = MU + (y0 - MU) * shrink.sqrt() * STD**2 / (STD**2 + SIGMA_MIN**2)
    wiener = DiagonalWiener(MU, STD)
    for method, order in (("euler", 1), ("heun", 2)):
        errors = []
        for n in (20, 40, 80):
            out = probability_flow(
                wiener, y0, log_sigmas_schedule(n + 1, SIGMA_MAX, SIGMA_MIN), method=method
            )
            errors.append(((out - exact) / (exact - MU)).abs().max().item())
        for coarse, fine in zip(errors, errors[1:], strict=False):
            assert 2**order * 0.85 < coarse / fine < 2**order * 1.15, (method, errors)
    assert errors[-1] < 2e-3


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"sigma_final": 0.0}, "sigma_final and sigma0 must be > 0"),
        ({"sigma_final": -0.1}, "sigma_final and sigma0 must be > 0"),
        ({"sigma0": 0.0}, "sigma_final and sigma0 must be > 0"),
        ({"h0": 0.0}, r"h0 must lie in \(0, 1\]"),
        ({"h0": 1.5}, r"h0 must lie in \(0, 1\]"),
        ({"beta": 0.0}, r"beta must lie in \(0, 1\]"),
        ({"beta": 1.2}, r"beta must lie in \(0, 1\]"),
        ({"h0": 1.0, "beta": 1.0}, "use h0 < 1"),
        ({"max_steps": 0}, "max_steps must be >= 1"),
        ({"generator": None}, "pass generator="),
    ],
)
def test_ascent_rejects_bad_options(options, match):
    kwargs = {"generator": _gen(0)} | options
    with pytest.raises(ValueError, match=match):
        stochastic_ascent(Memorizer(_train(1, 0)), _noise(2, 1), **kwargs)


def test_samplers_reject_bad_shapes_and_schedules():
    mem = Memorizer(_train(1, 0))

    def wrong_shape(y, sigma):
        return y[:, :, :-1]

    wrong_shape.name = "wrong_shape"
    for call in (
        lambda: stochastic_ascent(wrong_shape, _noise(2, 1), generator=_gen(0)),
        lambda: probability_flow(wrong_shape, _noise(2, 1), log_sigmas_schedule(3)),
    ):
        with pytest.raises(ValueError, match="must return x_hat shaped like y"):
            call()
    with pytest.raises(ValueError, match="non-empty floating"):
        stochastic_ascent(mem, _noise(2, 1)[:0], generator=_gen(0))
    with pytest.raises(ValueError, match="non-empty floating"):
        probability_flow(mem, torch.zeros(2, 1, SIZE, SIZE, dtype=torch.int64), [1.0, 0.1])
    for sigmas in ([0.1, 1.0], [1.0], [[1.0, 0.1]]):
        with pytest.raises(ValueError, match="strictly decreasing"):
            probability_flow(mem, _noise(2, 1), sigmas)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        probability_flow(mem, _noise(2, 1), [1.0, 0.0])
    with pytest.raises(ValueError, match="method must be"):
        probability_flow(mem, _noise(2, 1), [1.0, 0.1], method="rk4")
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        karras_sigmas(5, 1.0, 0.1)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        initial_noise(2, 4, sigma0=0.0, generator=_gen(0))
