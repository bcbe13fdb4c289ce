"""Training objectives: a law for the noise level sigma and a weight per sigma.

See docs/design.md §9.2.

Every objective is the weighted denoising loss

    L = E_sigma E_{x, z} [ w(sigma) * mse(f(x + sigma z), x) ],

with ``mse`` the per-pixel mean of the squared error over the d = H*W pixels (so
``d * mse = sse``, and the loss scale does not depend on the image size). The relative weight
of two noise levels is exactly ``p(sigma) w(sigma)``. References: Kadkhodaie et al., ICLR 2024
(the ``paper`` law); Karras, Aittala, Aila, Laine, *Elucidating the design space of
diffusion-based generative models*, NeurIPS 2022 (the ``edm`` weight).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import nn


class Objective:
    """Common interface: ``sample_sigma``, ``weight``, ``terms``, ``__call__``, ``to_dict``."""

    name: ClassVar[str]

    def sample_sigma(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``n`` noise levels (float32, on the generator's device)."""
        raise NotImplementedError

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """Loss weight ``w(sigma)`` of each noise level."""
        raise NotImplementedError

    def terms(
        self, net: nn.Module, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw sigma (B,) then z, and return ``(sigma, mse)`` with ``mse`` per image (B,).

        ``y = x + sigma z``, ``mse_i = mean over pixels of (f(y_i, sigma_i) - x_i)**2``,
        computed in the dtype of ``x`` (the network may run under autocast).
        """
        sigma = self.sample_sigma(x.shape[0], generator).to(x.dtype)
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        y = x + sigma.view(-1, *(1,) * (x.ndim - 1)) * z
        error = net(y, sigma).to(x.dtype) - x
        return sigma, error.square().flatten(1).mean(dim=1)

    def __call__(self, net: nn.Module, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Scalar loss: batch mean of ``w(sigma_i) * mse_i`` (see :meth:`terms`)."""
        sigma, mse = self.terms(net, x, generator)
        return (self.weight(sigma) * mse).mean()

    def to_dict(self) -> dict:
        """Name and parameters, as plain JSON values (part of the run-store key)."""
        return {"name": self.name, **asdict(self)}


def _uniform(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device)


def _check_range(sigma_min: float, sigma_max: float) -> None:
    if not 0 < sigma_min < sigma_max < math.inf:
        raise ValueError(
            f"need 0 < sigma_min < sigma_max (got sigma_min={sigma_min}, sigma_max={sigma_max})"
        )


@dataclass(frozen=True)
class PaperObjective(Objective):
    """The paper's law: ``sigma = sigma_max * u**2``, ``u ~ U(0, 1)``; weight 1.

    The density of sigma is ``1 / (2 sqrt(sigma * sigma_max))`` on ``(0, sigma_max]``.
    """

    sigma_max: float = 1.0
    name: ClassVar[str] = "paper"

    def __post_init__(self) -> None:
        if not 0 < self.sigma_max < math.inf:
            raise ValueError(f"need 0 < sigma_max < inf (got sigma_max={self.sigma_max})")

    def sample_sigma(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.sigma_max * _uniform(n, generator).square()

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(sigma)


@dataclass(frozen=True)
class KLObjective(Objective):
    """The KL bound itself: log-uniform sigma on ``[sigma_min, sigma_max]``, weight ``1/sigma**2``.

    ``ln sigma ~ U(ln sigma_min, ln sigma_max)``, so the loss times ``d ln(sigma_max /
    sigma_min)`` is the Monte Carlo estimate of ``int SSE(sigma) sigma^-3 d sigma`` over the
    range (docs/design.md §4.2).
    """

    sigma_min: float = 1e-3
    sigma_max: float = 1.0
    name: ClassVar[str] = "kl"

    def __post_init__(self) -> None:
        _check_range(self.sigma_min, self.sigma_max)

    def sample_sigma(self, n: int, generator: torch.Generator) -> torch.Tensor:
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return torch.exp(lo + (hi - lo) * _uniform(n, generator))

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma.pow(-2)


SIGMA_LAWS = ("log_uniform", "log_normal", "paper", "mixed")


@dataclass(frozen=True)
class EDMObjective(Objective):
    """EDM weighting ``(sigma**2 + sigma_d**2) / (sigma * sigma_d)**2`` (Karras et al. 2022).

    ``law="log_uniform"``: ``ln sigma ~ U(ln sigma_min, ln sigma_max)``;
    ``law="log_normal"``: ``ln sigma ~ N(p_mean, p_std**2)``;
    ``law="paper"``: the paper's ``sigma = sigma_max * u**2`` cut below at ``sigma_min``, i.e.
    ``u ~ U(sqrt(sigma_min / sigma_max), 1)``, density
    ``1 / (2 sqrt(sigma sigma_max) (1 - sqrt(sigma_min / sigma_max)))`` on
    ``[sigma_min, sigma_max]`` (the cut keeps the ``1/sigma**2`` part of the weight bounded;
    uncut, one draw near 0 swamps a whole batch);
    ``law="mixed"``: a fraction ``mix`` of the draws log-uniform, the rest from the cut paper
    law, density ``mix * q_log_uniform + (1 - mix) * q_paper``. The paper's law puts few
    draws at small sigma (2 % below 3e-3 on ``[1e-3, 1.5]``), where a blind network must
    learn not to mistake fine detail for noise; the log-uniform part gives every octave its
    share, the paper part keeps the large sigma.

    ``sigma_d`` is the data standard deviation (0.25 for [0, 1] images; EDM's 0.5 is for
    [-1, 1]); the default ``p_mean`` is EDM's -1.2 shifted by ``ln(1/2)`` for the same reason.
    The weight is the inverse of the optimal-denoiser error of Gaussian data of variance
    ``sigma_d**2``, per pixel: ``1/sigma**2`` (every octave of small sigma counts the same)
    below ``sigma_d`` and constant (the paper's plain sum) above, so ``sigma_d`` also sets
    where the loss turns from one regime to the other.
    """

    law: str = "log_uniform"
    sigma_min: float = 1e-3
    sigma_max: float = 1.0
    p_mean: float = -1.2 - math.log(2.0)
    p_std: float = 1.2
    sigma_d: float = 0.25
    mix: float = 0.5
    name: ClassVar[str] = "edm"

    def __post_init__(self) -> None:
        if self.law not in SIGMA_LAWS:
            raise ValueError(f"unknown sigma law {self.law!r}: use one of {SIGMA_LAWS}")
        _check_range(self.sigma_min, self.sigma_max)
        if not (self.p_std > 0 and self.sigma_d > 0):
            raise ValueError(f"need p_std > 0 and sigma_d > 0 (got {self.p_std}, {self.sigma_d})")
        if not 0 <= self.mix <= 1:
            raise ValueError(f"mix is a fraction of draws: need 0 <= mix <= 1 (got {self.mix})")

    def sample_sigma(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.law == "log_normal":
            normal = torch.randn(n, generator=generator, device=generator.device)
            return torch.exp(self.p_mean + self.p_std * normal)
        u = _uniform(n, generator)
        cut = math.sqrt(self.sigma_min / self.sigma_max)
        paper = self.sigma_max * (cut + (1 - cut) * u).square()
        if self.law == "paper":
            return paper
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        log_uniform = torch.exp(lo + (hi - lo) * u)
        if self.law == "log_uniform":
            return log_uniform
        return torch.where(_uniform(n, generator) < self.mix, log_uniform, paper)

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        return (sigma.square() + self.sigma_d**2) / (sigma * self.sigma_d).square()


OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (PaperObjective, KLObjective, EDMObjective)
}


def sigma_range(
    name: str,
    sigma_min: float,
    sigma_max: float,
    law: str | None = None,
    sigma_d: float | None = None,
    mix: float | None = None,
) -> dict:
    """Parameters giving objective ``name`` the training range ``[sigma_min, sigma_max]``.

    The paper's law ``sigma_max u**2`` has no lower end, so it takes ``sigma_max`` only.
    ``law``, ``sigma_d`` and ``mix`` (``edm`` only; None keeps the objective's default) name
    the sigma law, the weight's crossover and the log-uniform fraction of the mixed law.
    """
    params: dict = (
        {"sigma_max": sigma_max}
        if name == "paper"
        else {"sigma_min": sigma_min, "sigma_max": sigma_max}
    )
    for key, value in (("law", law), ("sigma_d", sigma_d), ("mix", mix)):
        if value is not None:
            if name != "edm":
                raise ValueError(f"{key} is an option of the edm objective, not of {name!r}")
            params[key] = value
    return params


def get_objective(name: str, **params: float | str) -> Objective:
    """The objective called ``name`` (one of ``OBJECTIVES``) with its parameters.

    Floats are normalised (``1`` and ``1.0`` give the same objective and the same key).
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}: choose one of {sorted(OBJECTIVES)}")
    cls = OBJECTIVES[name]
    fields = cls.__dataclass_fields__
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValueError(
            f"objective {name!r} has no parameter(s) {unknown}: it takes {sorted(fields)}"
        )
    normal = {k: float(v) if fields[k].type == "float" else v for k, v in params.items()}
    return cls(**normal)
