"""Samplers that draw images from a denoiser: the paper's stochastic ascent and probability flow.

Each sampler is a plain function of (denoiser, initial noise, options), batched, with an
optional progress bar and an optional ``callback`` called once per step with a dict of the
current state (as in k-diffusion's ``sampling.py``). Noise schedules and the ascent's step
rules are separate small functions. Every random draw comes from an explicit
``torch.Generator``: two calls with generators seeded alike inject the same noise, whatever
the denoiser, so networks trained on disjoint sets A and B can be compared from the same
initial *and* injected noise (docs/design.md §10).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import trange

from theory.protocol import Denoiser
from theory.sigma import check_sigma, log_sigmas

Callback = Callable[[dict[str, Any]], None]


def initial_noise(
    n: int,
    size: int | tuple[int, int],
    sigma0: float = 1.0,
    mean: float = 0.5,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Initial images ``y0 ~ N(mean, sigma0^2 I)``, centred on the data (docs/design.md §10).

    Parameters
    ----------
    n : int
        Number of images.
    size : int or (int, int)
        Image size ``H`` (square) or ``(H, W)`` in pixels.
    sigma0 : float
        Standard deviation in pixel units (clean pixels lie in [0, 1]).
    mean : float
        Mean intensity; 0.5 centres the noise on [0, 1] images.
    generator : torch.Generator
        Source of the draw; the result lies on its device.
    dtype : torch.dtype
        Floating dtype of the result.

    Returns
    -------
    tensor of shape (n, 1, H, W)

    References
    ----------
    Kadkhodaie & Simoncelli, "Solving linear inverse problems using the prior implicit in a
    denoiser", NeurIPS 2021, Algorithm 1.
    """
    check_sigma(sigma0)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if n < 1 or h < 1 or w < 1:
        raise ValueError(f"need n >= 1 and a positive size, got n={n}, size={size}")
    z = torch.randn(n, 1, h, w, generator=generator, dtype=dtype, device=generator.device)
    return mean + sigma0 * z


def log_sigmas_schedule(n: int, sigma_max: float = 1.0, sigma_min: float = 0.01) -> torch.Tensor:
    """``n`` log-spaced noise levels from ``sigma_max`` down to ``sigma_min`` (float64)."""
    return torch.from_numpy(log_sigmas(sigma_min, sigma_max, n)[::-1].copy())


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Noise levels of Karras et al. (2022), decreasing, float64.

    ``sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
    for ``i = 0, ..., n - 1``; larger ``rho`` spends more steps at small sigma. Unlike
    k-diffusion no final 0 is appended: :func:`probability_flow` ends with a denoising step.

    References
    ----------
    Karras, Aittala, Aila, Laine, "Elucidating the design space of diffusion-based
    generative models", NeurIPS 2022, eq. 5.
    """
    check_sigma(np.array([sigma_min, sigma_max]))
    if not sigma_max > sigma_min or n < 2 or not rho > 0:
        raise ValueError(
            f"need sigma_min < sigma_max, n >= 2, rho > 0 "
            f"(got sigma_min={sigma_min}, sigma_max={sigma_max}, n={n}, rho={rho})"
        )
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def ascent_step_size(t: int, h0: float) -> float:
    """Step size ``h_t = h0 t / (1 + h0 (t - 1))`` of step ``t >= 1``: h0 at t = 1, -> 1."""
    return h0 * t / (1 + h0 * (t - 1))


def ascent_noise_scale(sigma: torch.Tensor, h: float, beta: float) -> torch.Tensor:
    """Injected noise ``gamma_t = sigma_t sqrt((1 - beta h_t)^2 - (1 - h_t)^2)``.

    After ``y <- y + h d + gamma z`` the effective noise of y drops from ``sigma_t`` to
    ``(1 - beta h_t) sigma_t``: a fraction ``(1 - h_t)`` of the old noise stays and the
    fresh noise tops it up. ``beta = 1`` gives ``gamma = 0`` (no injected noise).
    """
    return sigma * math.sqrt(max((1 - beta * h) ** 2 - (1 - h) ** 2, 0.0))


class AscentResult(NamedTuple):
    """What :func:`stochastic_ascent` returns; tensors have the batch first.

    Attributes
    ----------
    x : tensor (B, ...)
        The samples: ``f(y, sigma)`` evaluated at each image's last step, i.e. the denoised
        estimate at a noise level below ``sigma_final`` (the usual clean-up).
    y : tensor (B, ...)
        The last iterate itself (the paper's output), still carrying noise of standard
        deviation about ``(1 - beta h_T) sigma_T``.
    sigma : tensor (B,)
        The last measured ``sigma_t = ||f(y) - y|| / sqrt(d)`` of each image.
    steps : tensor (B,), int64
        Number of updates each image received.
    """

    x: torch.Tensor
    y: torch.Tensor
    sigma: torch.Tensor
    steps: torch.Tensor


def _check_output(out: torch.Tensor, y: torch.Tensor, denoiser: Denoiser) -> torch.Tensor:
    if out.shape != y.shape:
        raise ValueError(
            f"denoiser {getattr(denoiser, 'name', denoiser)!r} returned shape "
            f"{tuple(out.shape)} for input {tuple(y.shape)}; it must return x_hat shaped like y"
        )
    return out


def _check_images(y0: torch.Tensor) -> None:
    if y0.ndim < 2 or y0.shape[0] == 0 or not y0.is_floating_point():
        raise ValueError(
            f"y0 must be a non-empty floating (B, 1, H, W) batch, got {tuple(y0.shape)} "
            f"{y0.dtype}; draw it with initial_noise(...)"
        )


def stochastic_ascent(
    denoiser: Denoiser,
    y0: torch.Tensor,
    h0: float = 0.01,
    beta: float = 0.5,
    sigma_final: float = 0.01,
    sigma0: float = 1.0,
    generator: torch.Generator | None = None,
    max_steps: int = 1000,
    callback: Callback | None = None,
    progress: bool = False,
) -> AscentResult:
    """Coarse-to-fine stochastic gradient ascent on log p (Kadkhodaie & Simoncelli 2021).

    Each step ``t = 1, 2, ...`` updates every active image::

        d_t     = f(y, s_t) - y                  (= s_t^2 grad log p_{s_t}(y), Tweedie)
        sigma_t = ||d_t|| / sqrt(d)              (per image, d pixels)
        h_t     = h0 t / (1 + h0 (t - 1))
        gamma_t = sigma_t sqrt((1 - beta h_t)^2 - (1 - h_t)^2)
        y      <- y + h_t d_t + gamma_t z_t,     z_t ~ N(0, I)

    An image stops after the step whose ``sigma_t <= sigma_final`` (the paper's loop test,
    so its last update is still applied), or after ``max_steps`` (with a warning). The
    denoiser is called at the level the previous step predicts for y,
    ``s_t = (1 - beta h_{t-1}) sigma_{t-1}`` per image, and ``s_1 = sigma0``; blind
    denoisers ignore it, the memorizer needs it.

    Parameters
    ----------
    denoiser : Denoiser
        ``f(y, sigma) -> x_hat``, called on the active images only with a (B_active,) sigma.
    y0 : tensor of shape (B, 1, H, W)
        Initial images, e.g. ``initial_noise(B, H, sigma0, generator=...)``.
    h0 : float in (0, 1]
        First step size; the paper uses 0.01. ``h0 = 1`` (every step jumps to f(y))
        needs ``beta < 1``.
    beta : float in (0, 1]
        Fraction of the step's noise reduction kept; smaller beta injects more noise.
        ``beta = 1`` injects none (deterministic; ``generator`` is then not used).
    sigma_final : float > 0
        Stopping level sigma_L in pixel units (paper: 0.01).
    sigma0 : float > 0
        Noise level of ``y0``, passed to the denoiser at the first step.
    generator : torch.Generator, required when beta < 1
        Source of the injected noise, on y0's device.
    max_steps : int
        Cap on the number of steps.
    callback : callable, optional
        Called after every step with a dict: ``step`` (t), ``y`` (B, ...) the iterates,
        ``denoised`` (B, ...) each image's latest ``f(y)``, ``sigma`` (B,) each image's
        latest sigma_t, ``h`` (h_t), ``noise`` (B, ...) the z_t drawn (None when beta = 1)
        and ``active`` (B,) bool, the images updated at this step. The tensors are the
        sampler's live buffers: clone what you keep.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    AscentResult
        ``x`` the samples (denoised at the last step), ``y`` the last iterates, ``sigma``
        and ``steps`` per image.

    Notes
    -----
    Noise sharing: step t draws ``z_t = torch.randn(y0.shape, generator=generator)`` (y0's
    dtype and device) for the whole batch, stopped images included, while any image is
    active. The stream therefore depends only on the generator's seed, the batch shape and
    dtype, never on the denoiser: two runs from the same seed give image i the same z_t at
    every step t both of them take.

    References
    ----------
    Kadkhodaie & Simoncelli, "Solving linear inverse problems using the prior implicit in a
    denoiser", NeurIPS 2021, Algorithm 1; Kadkhodaie, Guth, Simoncelli, Mallat, ICLR 2024.
    """
    _check_images(y0)
    if not 0 < h0 <= 1:
        raise ValueError(f"h0 must lie in (0, 1], got {h0}; the paper uses h0 = 0.01")
    if not 0 < beta <= 1:
        raise ValueError(f"beta must lie in (0, 1], got {beta}; beta = 1 injects no noise")
    if h0 == 1 and beta == 1:
        raise ValueError("h0 = 1 with beta = 1 predicts noise level 0 after one step; use h0 < 1")
    if not sigma_final > 0 or not sigma0 > 0:
        raise ValueError(
            f"sigma_final and sigma0 must be > 0 (got {sigma_final}, {sigma0}); "
            "the paper stops at sigma_final = 0.01"
        )
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if beta < 1:
        if generator is None:
            raise ValueError(
                "beta < 1 injects noise: pass generator=torch.Generator(device).manual_seed(seed)"
            )
        if generator.device.type != y0.device.type:
            raise ValueError(
                f"generator is on {generator.device} but y0 on {y0.device}; "
                "create the generator on y0's device"
            )
    b = y0.shape[0]
    d = y0[0].numel()
    y = y0.clone()
    x = torch.zeros_like(y0)
    sigma = torch.full((b,), math.inf, dtype=y0.dtype, device=y0.device)
    level = torch.full((b,), sigma0, dtype=y0.dtype, device=y0.device)
    steps = torch.zeros(b, dtype=torch.int64, device=y0.device)
    active = torch.ones(b, dtype=torch.bool, device=y0.device)
    bar = trange(1, max_steps + 1, desc="stochastic ascent", disable=not progress, leave=False)
    for t in bar:
        idx = active.nonzero().squeeze(1)
        ya = y[idx]
        xa = _check_output(denoiser(ya, level[idx]), ya, denoiser)
        da = xa - ya
        sa = da.flatten(1).norm(dim=1) / math.sqrt(d)
        h = ascent_step_size(t, h0)
        z = None
        ya = ya + h * da
        if beta < 1:
            z = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
            gamma = ascent_noise_scale(sa, h, beta).reshape((-1,) + (1,) * (y.ndim - 1))
            ya = ya + gamma * z[idx]
        y[idx] = ya
        x[idx], sigma[idx], level[idx] = xa, sa, (1 - beta * h) * sa
        steps[idx] += 1
        if callback is not None:
            callback(
                {
                    "step": t,
                    "y": y,
                    "denoised": x,
                    "sigma": sigma,
                    "h": h,
                    "noise": z,
                    "active": active.clone(),
                }
            )
        active[idx] = sa > sigma_final
        bar.set_postfix(active=int(active.sum()), sigma=f"{float(sa.max()):.3g}")
        if not active.any():
            break
    if active.any():
        warnings.warn(
            f"{int(active.sum())} of {b} images did not reach sigma_final={sigma_final} within "
            f"max_steps={max_steps}; raise max_steps or h0",
            RuntimeWarning,
            stacklevel=2,
        )
    return AscentResult(x=x, y=y, sigma=sigma, steps=steps)


def probability_flow(
    denoiser: Denoiser,
    y0: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float] | np.ndarray,
    method: str = "euler",
    callback: Callback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Deterministic sampler: the probability-flow ODE integrated down a sigma schedule.

    ``dx/dsigma = (x - f(x, sigma)) / sigma`` (= -sigma grad log p_sigma(x), Tweedie) from
    ``sigmas[0]`` down to ``sigmas[-1]``, then one last denoising ``f(x, sigmas[-1])``.
    Euler: ``x <- x + (s_{i+1} - s_i) D(x, s_i)`` with ``D(x, s) = (x - f(x, s)) / s``.
    Heun (second order, two denoiser calls per step): the Euler proposal ``x'`` and then
    ``x <- x + (s_{i+1} - s_i) (D(x, s_i) + D(x', s_{i+1})) / 2``.

    Parameters
    ----------
    denoiser : Denoiser
        ``f(y, sigma) -> x_hat``, called with a (B,) sigma.
    y0 : tensor of shape (B, 1, H, W)
        Initial images, distributed ideally as the data smoothed at ``sigmas[0]``; in
        practice ``initial_noise(B, H, sigma0=sigmas[0], generator=...)``.
    sigmas : 1-D, strictly decreasing, > 0, length >= 2
        The schedule in pixel units, e.g. :func:`log_sigmas_schedule` or
        :func:`karras_sigmas`.
    method : {"euler", "heun"}
        Integration rule.
    callback : callable, optional
        Called after every step with a dict: ``step`` (i), ``y`` the state at level
        ``sigma`` (= sigmas[i + 1]) and ``denoised`` = ``f`` at the step's start.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    tensor shaped like y0
        ``f(x, sigmas[-1])``: the final state denoised at the last level.

    References
    ----------
    Song et al., "Score-based generative modeling through stochastic differential
    equations", ICLR 2021; Karras, Aittala, Aila, Laine, NeurIPS 2022, Algorithm 1.
    """
    _check_images(y0)
    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")
    s = torch.as_tensor(sigmas).detach().to("cpu", torch.float64)
    if s.ndim != 1 or s.numel() < 2 or not bool(torch.all(s[1:] < s[:-1])):
        raise ValueError(
            f"sigmas must be a 1-D strictly decreasing schedule of length >= 2 (got shape "
            f"{tuple(s.shape)}); build one with log_sigmas_schedule(n) or karras_sigmas(n, ...)"
        )
    check_sigma(s)
    levels = s.tolist()
    b = y0.shape[0]

    def drift(x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        level = torch.full((b,), sigma, dtype=x.dtype, device=x.device)
        denoised = _check_output(denoiser(x, level), x, denoiser)
        return (x - denoised) / sigma, denoised

    x = y0.clone()
    for i in trange(len(levels) - 1, desc="probability flow", disable=not progress, leave=False):
        lo, hi = levels[i + 1], levels[i]
        slope, denoised = drift(x, hi)
        proposal = x + (lo - hi) * slope
        if method == "heun":
            proposal = x + (lo - hi) * 0.5 * (slope + drift(proposal, lo)[0])
        x = proposal
        if callback is not None:
            callback({"step": i, "y": x, "sigma": lo, "denoised": denoised})
    return drift(x, levels[-1])[1]
