"""Evaluate denoisers of your own against a family's references on held-out images.

:func:`evaluate` is the toolkit's public entry point: give it callables under the denoiser
protocol (``f(y, sigma) -> x_hat`` on batches ``(B, 1, H, W)``, ``theory.protocol``) and an
image family; it returns an :class:`Evaluation` with risk curves, ratios to the best
reference, KL curves and effective dimensions, which writes itself to JSON. The
optimality benchmark (``python -m benchmarks.optimality``) measures its networks with the
same pieces (:func:`draw_images`, :func:`comparison_for`, :func:`held_out_curves`,
:func:`ratio_to_best`, :func:`kl_bracket`, :func:`measure_effective_dimension`), so the two give the
same numbers for the same denoiser, images and seed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmarks.common import check_device, derive_seed, format_table, kl_record
from benchmarks.evaluation import RiskCurves, psnr, risk_curves
from benchmarks.output import provenance, write_json
from models.references import build_optimum, build_references
from synthetic.family import Family
from theory.jacobian import sure, trace_exact, trace_hutchinson
from theory.protocol import Denoiser

__all__ = [
    "Comparison",
    "Evaluation",
    "comparison_for",
    "draw_images",
    "evaluate",
    "held_out_curves",
    "kl_bracket",
    "measure_effective_dimension",
    "ratio_to_best",
]

# Above this many pixels the exact Jacobian trace costs too many backward passes.
EXACT_TRACE_MAX_D = 256
# Held-out images the effective dimension is measured on (the first ones).
EFFECTIVE_DIMENSION_IMAGES = 16


def draw_images(
    family: Family, n_test: int, n_train: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n_test`` held-out images and ``n_train`` training images (part A).

    Each count is capped by what a finite family holds; both tensors are ``(n, 1, H, W)``
    on ``device``.
    """
    test = family.images("test", min(n_test, family.capacity("test"))).to(device)
    train = family.images("A", min(n_train, family.capacity("A"))).to(device)
    return test, train


@dataclass(frozen=True)
class Comparison:
    """What a family's denoisers are measured against.

    Attributes
    ----------
    references : the family's usable reference denoisers by result-file name
        (``models.references.build_references``); the best of them at each σ is the
        denominator of every ratio.
    optimum_name : the name of the family's optimal denoiser or oracle bound
        (``family.optimum.reference``), None when it knows none.
    kl_kind : ``family.optimum.kl_kind``: "exact", "upper_bound" or "estimate".
    optimum : the optimum when it is not among ``references`` (the genie, bound to the
        held-out masks), else None.
    """

    references: dict[str, Denoiser]
    optimum_name: str | None
    kl_kind: str
    optimum: Denoiser | None = None

    def denoisers(self) -> dict[str, Denoiser]:
        """The references, then the optimum if it is not one of them."""
        extra = {} if self.optimum is None else {self.optimum_name: self.optimum}
        return {**self.references, **extra}


def comparison_for(family: Family, train: torch.Tensor, n_test: int) -> Comparison:
    """Build the family's references from ``train`` and its optimum for ``n_test`` images."""
    references = build_references(family, train)
    name = family.optimum.reference
    optimum = None
    if name is not None and name not in references:
        optimum = build_optimum(family, train, n_test)
    return Comparison(references, name, family.optimum.kl_kind, optimum)


def held_out_curves(
    candidates: Mapping[str, Denoiser],
    comparison: Comparison,
    test: torch.Tensor,
    sigmas: Sequence[float],
    seed: int,
    extra: Mapping[str, Denoiser] | None = None,
    progress: bool = False,
    desc: str = "held-out",
) -> RiskCurves:
    """Risk curves of the candidates, the references, the optimum and ``extra`` (in that order).

    All on the same noise: at the j-th σ every denoiser sees ``test + σ z`` with ``z`` drawn
    from ``SeedSequence([seed, j])`` (``benchmarks.evaluation.risk_curves``).
    """
    clash = sorted(set(candidates) & set(comparison.denoisers()))
    if clash:
        raise ValueError(
            f"denoiser names {clash} are taken by the family's references: rename yours"
        )
    denoisers = {**candidates, **comparison.denoisers(), **(extra or {})}
    return risk_curves(denoisers, test, sigmas, seed, progress=progress, desc=desc)


def best_reference_rows(curves: RiskCurves, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Per-image SSE ``(n_sigma, n_images)`` of the reference with the lowest mean SSE at each
    σ, and its name at each σ."""
    best = [
        min(names, key=lambda name: curves.sse[name][j].mean()) for j in range(len(curves.sigma))
    ]
    rows = np.stack([curves.sse[name][j] for j, name in enumerate(best)])
    return rows, best


def ratio_to_best(curves: RiskCurves, name: str, references: Sequence[str]) -> dict:
    """``MSE_name(σ) / min_r MSE_r(σ)`` over the references r, with its worst values."""
    best = np.min([curves.mse(ref) for ref in references], axis=0)
    ratio = curves.mse(name) / best
    high = curves.sigma >= 0.1
    return {
        "denoiser": name,
        "sigma": curves.sigma,
        "ratio": ratio,
        "worst": float(ratio.max()),
        "worst_sigma_ge_0.1": float(ratio[high].max()) if high.any() else None,
    }


def kl_bracket(curves: RiskCurves, name: str, comparison: Comparison) -> list[dict]:
    """The KL curves of ``name`` over the lower cut σ0 (``benchmarks.common.kl_record``).

    First, when the family has an optimum, the integral against it (kind "exact", or
    "upper_bound" for an oracle whose risk lies below the optimum's); last, always, the
    "estimate" against the best reference at each σ (not a bound).
    """
    best_rows, _ = best_reference_rows(curves, list(comparison.references))
    records = [
        kl_record(curves.sigma, (curves.sse[name] - best_rows).T, "estimate", "best_reference")
    ]
    if comparison.kl_kind != "estimate":
        rows = (curves.sse[name] - curves.sse[comparison.optimum_name]).T
        records.insert(
            0, kl_record(curves.sigma, rows, comparison.kl_kind, comparison.optimum_name)
        )
    return records


def not_differentiable(f: Denoiser, images: torch.Tensor, sigma: float) -> str | None:
    """None when torch can differentiate ``f`` at ``images``, else the reason."""
    with torch.enable_grad():
        y = images.detach().clone().requires_grad_()
        try:
            out = f(y, sigma)
        except (RuntimeError, TypeError, ValueError) as err:
            return f"calling it on a tensor that requires grad failed ({type(err).__name__})"
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        return "torch cannot differentiate it (its output is not computed by torch from y)"
    return None


def measure_effective_dimension(
    f: Denoiser, images: torch.Tensor, sigma: np.ndarray, probes: int, seed: int, name: str
) -> dict:
    """``E tr ∇f(y)`` per σ with the SSE, ``σ² E tr ∇f`` and SURE beside it.

    The trace is exact for ``d <= 256`` pixels, else Hutchinson's estimate with ``probes``
    Rademacher probes per image. The noise and the probes come from one generator seeded
    with ``seed``, σ after σ. For the optimal denoiser ``SSE* = σ² E tr ∇f*`` (Stein's
    identity for the posterior mean); for any weakly differentiable f,
    ``SURE = ‖f(y) − y‖² − dσ² + 2σ² tr ∇f(y)`` is an unbiased estimate of its SSE. The
    gap between SSE and ``σ² E tr ∇f`` measures how far f is from behaving like a
    posterior mean.
    """
    d = images[0].numel()
    gen = torch.Generator(device=images.device).manual_seed(seed)
    out: dict = {
        "sigma": sigma,
        "trace": [],
        "trace_se": [],
        "sse": [],
        "sigma2_trace": [],
        "sure": [],
        "denoiser": name,
        "method": "exact" if d <= EXACT_TRACE_MAX_D else f"hutchinson ({probes} probes)",
    }
    n = images.shape[0]
    for s in sigma:
        y = images + float(s) * torch.randn(images.shape, generator=gen, device=images.device)
        if d <= EXACT_TRACE_MAX_D:
            trace = trace_exact(f, y, float(s)).detach()
        else:
            trace = trace_hutchinson(f, y, float(s), n_probes=probes, generator=gen)[0].detach()
        with torch.no_grad():
            sse = (f(y, float(s)) - images).flatten(1).square().sum(1)
        estimate = sure(f, y, float(s), trace).detach()
        out["trace"].append(float(trace.mean()))
        out["trace_se"].append(float(trace.std() / np.sqrt(n)))
        out["sse"].append(float(sse.mean()))
        out["sigma2_trace"].append(float(s) ** 2 * float(trace.mean()))
        out["sure"].append(float(estimate.mean()))
    return out


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` measured. Arrays run over ``sigma``.

    Attributes
    ----------
    family : the family's parameters (``get_family(**family)`` rebuilds it).
    sigma : the noise levels (pixel units).
    d : pixels per image.
    n_test, n_train : held-out and training images used.
    mse, mse_se, psnr : per denoiser (yours, the references, the optimum): MSE per pixel,
        its Monte Carlo standard error over images, ``10 log10(1 / MSE)`` in dB.
    references : names of the references; ``optimum``: ``{"kind", "reference", "kl_kind"}``
        of the family's optimum.
    ratio : per denoiser of yours, ``MSE / min over references of MSE`` at each σ.
    best_reference : the reference of lowest MSE at each σ.
    kl : per denoiser of yours, its KL records (``benchmarks.common.kl_record``): against
        the optimum first when the family has one, then the estimate against the best
        reference at each σ.
    effective_dimension : per denoiser of yours that torch can differentiate, the dict of
        :func:`measure_effective_dimension`.
    skipped : per denoiser of yours whose effective dimension was not measured, why.
    options : the arguments of the call; ``device`` where it ran.
    """

    family: dict
    sigma: np.ndarray
    d: int
    n_test: int
    n_train: int
    mse: dict[str, np.ndarray]
    mse_se: dict[str, np.ndarray]
    psnr: dict[str, np.ndarray]
    references: tuple[str, ...]
    optimum: dict
    ratio: dict[str, np.ndarray]
    best_reference: list[str]
    kl: dict[str, list[dict]]
    effective_dimension: dict[str, dict] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    device: str = "cpu"

    def to_dict(self) -> dict:
        """Every field, arrays included (``benchmarks.output.write_json`` makes them lists)."""
        return {
            "family": self.family,
            "sigma": self.sigma,
            "d": self.d,
            "n_test": self.n_test,
            "n_train": self.n_train,
            "errors": "mse per pixel; se = Monte Carlo standard error over images",
            "mse": self.mse,
            "mse_se": self.mse_se,
            "psnr": self.psnr,
            "references": list(self.references),
            "optimum": self.optimum,
            "ratio": self.ratio,
            "best_reference": self.best_reference,
            "kl": self.kl,
            "effective_dimension": self.effective_dimension,
            "skipped": self.skipped,
        }

    def write_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` with the provenance (code, machine, options) atomically."""
        write_json(path, {**self.to_dict(), **provenance(self.device, options=self.options)})

    def table(self, columns: int = 5) -> str:
        """Ratios to the best reference at ``columns`` σ spread over the grid, with the best
        reference at those σ and the first KL record at the smallest σ0."""
        idx = sorted(set(np.linspace(0, len(self.sigma) - 1, columns).round().astype(int)))
        header = ["MSE / best reference"] + [f"σ={self.sigma[i]:.3g}" for i in idx]
        rows = [[name] + [float(ratio[i]) for i in idx] for name, ratio in self.ratio.items()]
        lines = [format_table(header, rows, ["s"] + [".3f"] * len(idx))]
        lines.append(
            "best reference: " + ", ".join(f"{self.best_reference[i]}" for i in idx) + " (same σ)"
        )
        for name, records in self.kl.items():
            kl = records[0]
            lines.append(
                f"{name}: KL ({kl['kind']} vs {kl['reference']}) from σ0 = "
                f"{kl['sigma0'][0]:.3g}: {kl['value'][0]:.4g} ± {kl['se'][0]:.2g} nats per image"
            )
        lines += [f"{name}: no effective dimension: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def evaluate(
    denoisers: Mapping[str, Callable],
    family: Family,
    *,
    sigmas: Sequence[float] = np.geomspace(1e-3, 1, 13),
    n_test: int = 64,
    n_train: int = 10_000,
    seed: int = 0,
    device: str = "cpu",
    probes: int = 4,
    effective_dimension: bool = True,
    progress: bool = False,
) -> Evaluation:
    r"""Measure denoisers against a family's references on held-out images.

    Draws ``n_test`` held-out images and ``n_train`` training images (part A) of
    ``family``, builds its reference denoisers (the memorizer and the PCA Wiener filter
    from the training images, wavelet and curvelet thresholding, the family's own) and its
    optimum when it has one (``family.optimum``), and measures every denoiser on the same
    noisy images.

    With ``x_i`` the held-out images, ``d`` pixels each, and ``z_i`` standard normal noise
    shared by all denoisers at a given σ:

    * risk: ``MSE_f(σ) = (1 / n d) Σ_i ‖f(x_i + σ z_i, σ) − x_i‖²`` with its standard error
      over images, and ``PSNR = 10 log10(1 / MSE)`` for pixels in [0, 1];
    * ratio: ``MSE_f(σ) / min_r MSE_r(σ)`` over the references r (1 = as good as the best);
    * KL: ``KL(σ0) = ∫_σ0^∞ (SSE_f(σ) − SSE_ref(σ)) σ⁻³ dσ`` in nats per image, integrated
      on the grid (``theory.kl.kl_curve``, tail above the largest σ included), with
      ``SSE = d · MSE``. Against the exact optimum it is ``KL(p_σ0 ‖ q_σ0)`` of the law q
      whose optimal denoiser is f; against an oracle lower bound it bounds that KL from
      above; against the best reference it is an estimate only;
    * effective dimension: ``E tr ∇f(y)``, SSE, ``σ² E tr ∇f`` and SURE per σ on the first
      16 held-out images (:func:`measure_effective_dimension`), for callables torch can
      differentiate.

    Parameters
    ----------
    denoisers : name -> callable ``f(y, sigma)``: ``y`` a float tensor ``(B, 1, H, W)`` on
        ``device``, ``sigma`` a float; returns a tensor of y's shape. The key is the name
        (no ``name`` attribute needed); it must differ from the references' names.
    family : an image family (``synthetic.get_family``).
    sigmas : noise levels in pixel units.
    n_test, n_train : held-out and training images (capped by what a finite family holds).
    seed : the noise at the j-th σ comes from ``SeedSequence([seed, j])``; the effective
        dimension's from ``derive_seed(seed, "effective-dimension")``.
    device : torch device of the images and the references ("cpu", "cuda").
    probes : Hutchinson probes per image when ``d > 256``.
    effective_dimension : measure the effective dimension (skipped, with the reason in
        ``skipped``, for callables torch cannot differentiate).
    progress : show progress bars.

    Returns
    -------
    Evaluation

    Examples
    --------
    >>> import numpy as np
    >>> from benchmarks.api import evaluate
    >>> from synthetic import get_family
    >>> family = get_family("cartoons", size=32, alpha=2.0)
    >>> def shrink(y, sigma):
    ...     return 0.5 + (y - 0.5) / (1 + sigma**2 / 0.04)
    >>> result = evaluate({"shrink": shrink}, family, sigmas=np.geomspace(1e-3, 1, 13), n_test=64)
    >>> print(result.table())  # doctest: +SKIP
    >>> result.kl["shrink"][0]["kind"]
    'estimate'
    >>> result.write_json("out/shrink.json")  # doctest: +SKIP
    """
    torch_device = check_device(device)
    sigma = np.asarray(sigmas, dtype=float)
    if n_test < 2 or n_train < 1:
        raise ValueError(
            f"need n_test >= 2 (standard errors) and n_train >= 1 (got {n_test}, {n_train})"
        )
    if probes < 2:
        raise ValueError(f"probes must be >= 2 for a standard error (got {probes})")
    test, train = draw_images(family, n_test, n_train, torch_device)
    comparison = comparison_for(family, train, test.shape[0])
    curves = held_out_curves(
        denoisers, comparison, test, sigma, seed, progress=progress, desc=f"{family.name} held-out"
    )
    references = list(comparison.references)
    _, best = best_reference_rows(curves, references)
    ratio = {name: ratio_to_best(curves, name, references)["ratio"] for name in denoisers}
    kl = {name: kl_bracket(curves, name, comparison) for name in denoisers}
    dims, skipped = {}, {}
    if effective_dimension:
        images = test[:EFFECTIVE_DIMENSION_IMAGES]
        ed_seed = derive_seed(seed, "effective-dimension")
        for name, f in denoisers.items():
            why = not_differentiable(f, images, float(sigma[0]))
            if why is None:
                dims[name] = measure_effective_dimension(f, images, sigma, probes, ed_seed, name)
            else:
                skipped[name] = why
    return Evaluation(
        family=family.params,
        sigma=curves.sigma,
        d=curves.d,
        n_test=int(test.shape[0]),
        n_train=int(train.shape[0]),
        mse={name: curves.mse(name) for name in curves.sse},
        mse_se={name: curves.mse_se(name) for name in curves.sse},
        psnr={name: psnr(curves.mse(name)) for name in curves.sse},
        references=tuple(references),
        optimum={
            "kind": family.optimum.kind,
            "reference": family.optimum.reference,
            "kl_kind": family.optimum.kl_kind,
        },
        ratio=ratio,
        best_reference=best,
        kl=kl,
        effective_dimension=dims,
        skipped=skipped,
        options={
            "denoisers": list(denoisers),
            "family": family.params,
            "sigmas": sigma,
            "n_test": n_test,
            "n_train": n_train,
            "seed": seed,
            "device": str(torch_device),
            "probes": probes,
            "effective_dimension": effective_dimension,
        },
        device=str(torch_device),
    )
