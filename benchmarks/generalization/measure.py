"""Training the A and B networks and measuring their denoising: PSNR curves and KL integrals.

On training rows the memorizer of the training set is the exact optimal denoiser of the
training law p_n, so the KL integral of a network against it is the distance from memorizing;
on families whose optimum is exact (``family.optimum.kind == "exact"``) the same integral
against that optimum on held-out images is the distance from generalizing
(docs/design.md §4, §12).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from benchmarks.common import kl_record, train_or_load
from benchmarks.evaluation import RiskCurves, psnr, risk_curves
from benchmarks.generalization.config import stream_seeds
from benchmarks.generalization.prepare import Setup, train_data
from models.memorizer import Memorizer
from models.runstore import RunStore
from theory.protocol import Denoiser


def training_rows(train: torch.Tensor, n_eval: int) -> torch.Tensor:
    """Rows on which a network is scored on its training law (uniform over ``train``).

    The first ``n_eval`` images when there are more; otherwise every image repeated the same
    number of times (``ceil(n_eval / n)``), so each row is a draw from the uniform law.
    """
    n = train.shape[0]
    if n >= n_eval:
        return train[:n_eval]
    return train.repeat_interleave(math.ceil(n_eval / n), dim=0)


@dataclass(frozen=True)
class HeldOutOptimum:
    """The exact optimum's errors on the held-out images, shared by every network.

    The held-out noise is the same for every network (one seed), so the optimum is measured
    once and each network's excess over it is paired image by image.
    """

    reference: str
    curves: RiskCurves

    @property
    def sse(self) -> np.ndarray:
        return self.curves.sse["optimum"]


def held_out_optimum(
    optimum: Denoiser, test: torch.Tensor, sigma: np.ndarray, seed: int, progress: bool = False
) -> HeldOutOptimum:
    """Measure ``optimum`` on ``test`` with the held-out noise of ``seed`` (the root seed)."""
    curves = risk_curves(
        {"optimum": optimum},
        test,
        sigma,
        _held_out_seed(seed),
        progress=progress,
        desc="optimum",
    )
    return HeldOutOptimum(reference=optimum.name, curves=curves)


def _training_rows_seed(seed: int) -> int:
    return stream_seeds(seed)["training_rows"]


def _held_out_seed(seed: int) -> int:
    return stream_seeds(seed)["held_out"]


def denoising_curves(
    net: Denoiser,
    train: torch.Tensor,
    test: torch.Tensor,
    sigma: np.ndarray,
    n_eval: int,
    seed: int,
    progress: bool = False,
    optimum: HeldOutOptimum | None = None,
) -> dict:
    """Train/test PSNR of ``net`` and of the memorizer of ``train``, and the KL between them.

    On training rows the memorizer is the exact optimal denoiser of the training law p_n,
    so ``int (SSE_net - SSE_mem) s^-3 ds`` from sigma0 up is the KL between the
    sigma0-smoothed p_n and the law whose optimal denoiser the network is (a bound on the
    KL of the network's sampler when it is not exactly optimal for some law), with no
    approximation but Monte Carlo. With ``optimum``, the errors of the optimal denoiser of the
    family's law p on ``test`` (:func:`held_out_optimum`), the same integral on held-out
    images against it is the KL from p: the distance from generalizing (``kl_test``), beside
    the distance from memorizing (``kl``). ``seed`` is the root seed: the training rows and
    the held-out images draw their noise from its streams ``training-rows`` and ``held-out``.
    """
    memorizer = Memorizer(train)
    denoisers = {"network": net, "memorizer": memorizer}
    rows = training_rows(train, n_eval)
    on_train = risk_curves(
        denoisers, rows, sigma, _training_rows_seed(seed), progress=progress, desc="train PSNR"
    )
    on_test = risk_curves(
        denoisers, test, sigma, _held_out_seed(seed), progress=progress, desc="test PSNR"
    )
    kl = kl_record(
        sigma,
        (on_train.sse["network"] - on_train.sse["memorizer"]).T,
        kind="exact_vs_memorizer",
        reference="memorizer",
        note="KL(p_n,sigma0 || q_net,sigma0) on training rows; p_n = uniform law of the "
        "training set, whose optimal denoiser is the memorizer",
    )
    extra = {}
    if optimum is not None:
        extra = {
            "optimum_test_psnr": psnr(optimum.curves.mse("optimum")),
            "kl_test": kl_record(
                sigma,
                (on_test.sse["network"] - optimum.sse).T,
                kind="exact_vs_optimum",
                reference=optimum.reference,
                note="KL(p_sigma0 || q_net,sigma0) on held-out images; p = the family's law, "
                "whose optimal denoiser is known exactly",
            ),
        }
    return {
        "train_psnr": psnr(on_train.mse("network")),
        "test_psnr": psnr(on_test.mse("network")),
        # The memorizer of one image is exact on it: mse 0, PSNR inf (null in JSON).
        "memorizer_train_psnr": psnr(on_train.mse("memorizer")),
        "memorizer_test_psnr": psnr(on_test.mse("memorizer")),
        "train_mse": on_train.mse("network"),
        "train_mse_se": on_train.mse_se("network"),
        "test_mse": on_test.mse("network"),
        "test_mse_se": on_test.mse_se("network"),
        "n_train_rows": rows.shape[0],
        "kl": kl,
        **extra,
    }


def train_network(
    s: Setup, n: int, part: str, train: torch.Tensor, store: RunStore
) -> tuple[nn.Module, dict]:
    """Train (or load from ``store``) the network of part ``part`` at set size ``n``.

    Returns the network and its record: its run folder, whether it was reused, the training
    seed, time, parameters, steps, images seen, final loss and training PSNR.
    """
    data = train_data(s.family, part, n)
    config = s.train[part]
    net, run = train_or_load(
        store, config, data, train.to(s.device), s.config.progress, s.checkpoint_s()
    )
    return net, {
        "run_dir": run.run_dir,
        "reused": run.reused,
        "seed": config.seed,
        "train_wall_s": run.train_wall_s,
        "parameters": run.parameters,
        "steps": run.steps,
        "images_seen": run.steps * config.batch_size,
        "final_loss": run.final_loss,
        "final_train_psnr": run.final_psnr,
    }
