"""Speed of the Jacobian kernels, each timed against the method it replaces in one process.

Both sections use the optimality default's shipped network (a bias-free UNet trained on
32 x 32 C^2 cartoons; convolutional, so it takes larger images too) at a noisy cartoon:

* the full Jacobian by d vector-Jacobian products batched over cotangents
  (``theory.jacobian.jacobian``) against one autograd call per output pixel, the method of
  the paper's code (aim: >= 20x at 32 x 32 on CPU);
* the leading k eigenpairs of the symmetrized Jacobian by Lanczos over Jacobian-vector
  products (``theory.decomposition.top_eigenpairs``) against the full Jacobian and
  ``eigh`` (``decompose``), with the largest relative eigenvalue difference.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from benchmarks.common import derive_seed
from models.runstore import load_run
from synthetic.registry import get_family
from theory.decomposition import decompose, top_eigenpairs
from theory.jacobian import jacobian

WEIGHTS = Path(__file__).resolve().parent / "weights" / "433e8444faaa498d"
SIGMA = 0.1


def _noisy(size: int, seed: int, device: torch.device) -> torch.Tensor:
    x = get_family("cartoons", size=size, seed=seed).images("test", 1).to(device)
    g = torch.Generator().manual_seed(derive_seed(seed, "jacobian-noise"))
    return x + SIGMA * torch.randn(x.shape, generator=g).to(x)


def _seconds(fn, device: torch.device) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, value


def per_pixel_jacobian(f, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """The Jacobian (d, d) of one image by one autograd call per output pixel."""
    y_in = y.detach().requires_grad_()
    with torch.enable_grad():
        out = f(y_in, sigma).reshape(-1)
    rows = [
        torch.autograd.grad(out[i], y_in, retain_graph=True)[0].reshape(-1)
        for i in range(out.numel())
    ]
    return torch.stack(rows)


def jacobian_speed(size: int, seed: int, device: torch.device, chunk_size: int = 256) -> dict:
    """Batched vector-Jacobian products against one autograd call per pixel, same image."""
    net, _ = load_run(WEIGHTS, device=str(device))
    y = _noisy(size, seed, device)
    _seconds(lambda: jacobian(net, y, SIGMA, chunk_size), device)  # warm-up
    batched_s, batched = _seconds(lambda: jacobian(net, y, SIGMA, chunk_size)[0], device)
    per_pixel_s, reference = _seconds(lambda: per_pixel_jacobian(net, y, SIGMA), device)
    return {
        "size": size,
        "sigma": SIGMA,
        "chunk_size": chunk_size,
        "batched_s": batched_s,
        "per_pixel_s": per_pixel_s,
        "ratio": per_pixel_s / batched_s,
        "max_abs_difference": float((batched - reference).abs().max()),
    }


def lanczos_speed(size: int, k: int, seed: int, device: torch.device) -> dict:
    """The leading k eigenpairs by Lanczos against the full Jacobian and eigh, same image."""
    net, _ = load_run(WEIGHTS, device=str(device))
    y = _noisy(size, seed, device)
    full_s, full = _seconds(lambda: decompose(net, y, SIGMA, chunk_size=256), device)
    top_s, top = _seconds(lambda: top_eigenpairs(net, y, SIGMA, k, seed=seed), device)
    exact = full.eigvals[0, :k]
    return {
        "size": size,
        "k": k,
        "sigma": SIGMA,
        "full_s": full_s,
        "lanczos_s": top_s,
        "ratio": full_s / top_s,
        "max_relative_difference": float(((top.eigvals[0] - exact).abs() / exact.abs()).max()),
        "trace_exact": float(full.trace[0]),
        "trace_hutchinson": float(top.trace[0]),
        "trace_hutchinson_se": float(top.trace_se[0]),
    }


def print_tables(jac: dict, lanczos: dict) -> None:
    print(
        f"jacobian: shipped UNet at {jac['size']}x{jac['size']}, σ = {jac['sigma']:g}: batched "
        f"VJPs {jac['batched_s']:.2f} s, one autograd call per pixel {jac['per_pixel_s']:.2f} s, "
        f"ratio {jac['ratio']:.1f}x (max |difference| {jac['max_abs_difference']:.1e})"
    )
    print(
        f"eigenpairs: top {lanczos['k']} at {lanczos['size']}x{lanczos['size']}: Lanczos "
        f"{lanczos['lanczos_s']:.1f} s, full Jacobian + eigh {lanczos['full_s']:.1f} s, ratio "
        f"{lanczos['ratio']:.1f}x (max relative eigenvalue difference "
        f"{lanczos['max_relative_difference']:.1e})"
    )
