"""Monte Carlo risk of denoisers on a fixed image set, noise level by noise level."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from theory.protocol import Denoiser


@dataclass(frozen=True)
class RiskCurves:
    """Per-image squared errors of several denoisers on a shared σ grid.

    ``sse[name]`` has shape ``(n_sigma, n_images)``: the total squared error
    ``‖f(x + σz) − x‖²`` of each image, with the same noise ``z`` for every denoiser
    (paired comparisons) and independent noise from one σ to the next.
    """

    sigma: np.ndarray
    sse: dict[str, np.ndarray]
    d: int

    def mse(self, name: str) -> np.ndarray:
        """Per-pixel mean squared error at each σ."""
        return self.sse[name].mean(axis=1) / self.d

    def mse_se(self, name: str) -> np.ndarray:
        """Monte Carlo standard error of :meth:`mse` (over images)."""
        n = self.sse[name].shape[1]
        return self.sse[name].std(axis=1, ddof=1) / np.sqrt(n) / self.d


def psnr(mse: np.ndarray | float) -> np.ndarray:
    """Peak signal-to-noise ratio ``10 log10(1 / mse)`` in dB for pixels in [0, 1].

    An exact reconstruction (the memorizer on its own training images) has mse 0 and PSNR
    inf, without a warning.
    """
    with np.errstate(divide="ignore"):
        return 10 * np.log10(1.0 / np.asarray(mse, dtype=float))


@torch.no_grad()
def risk_curves(
    denoisers: Mapping[str, Denoiser],
    images: torch.Tensor,
    sigmas: Sequence[float],
    seed: int,
    progress: bool = True,
    desc: str = "evaluating",
) -> RiskCurves:
    """Measure every denoiser's per-image total squared error at each noise level.

    Parameters
    ----------
    denoisers : mapping from name to denoiser ``f(y, sigma)``, each called once per σ on the
        whole image set (so a denoiser bound to these images, like the genie bound to their
        masks, is called like any other).
    images : tensor ``(n, 1, H, W)`` of clean images in [0, 1], on the evaluation device.
    sigmas : noise standard deviations in pixel units.
    seed : the noise at the j-th σ is drawn from a generator seeded with
        ``SeedSequence([seed, j])``, the same noise for every denoiser.
    """
    sigma = np.asarray(sigmas, dtype=float)
    n, d = images.shape[0], images[0].numel()
    sse = {name: np.empty((len(sigma), n)) for name in denoisers}
    steps = tqdm(total=len(sigma) * len(denoisers), desc=desc, disable=not progress, leave=False)
    for j, s in enumerate(sigma):
        gen = torch.Generator(device="cpu").manual_seed(
            int(np.random.SeedSequence([seed, j]).generate_state(1)[0])
        )
        noise = torch.randn(images.shape, generator=gen).to(images)
        y = images + float(s) * noise
        for name, f in denoisers.items():
            err = (f(y, float(s)) - images).flatten(1).double()
            sse[name][j] = (err * err).sum(1).cpu().numpy()
            steps.update()
    steps.close()
    return RiskCurves(sigma=sigma, sse=sse, d=d)
