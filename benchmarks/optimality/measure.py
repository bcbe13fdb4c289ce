"""The optimality benchmark's measurements: families, networks, held-out and training curves.

Everything takes an :class:`~benchmarks.optimality.config.OptimalityConfig` and objects;
the held-out evaluation is :mod:`benchmarks.api`'s, so a network measured here and by
``benchmarks.api.evaluate`` gets the same numbers.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.api import (
    EFFECTIVE_DIMENSION_IMAGES,
    Comparison,
    best_reference_rows,
    comparison_for,
    draw_images,
    held_out_curves,
    kl_bracket,
    measure_effective_dimension,
    ratio_to_best,
)
from benchmarks.common import TrainedRun, check_device, derive_seed, kl_record, train_or_load
from benchmarks.evaluation import RiskCurves, psnr, risk_curves
from benchmarks.local_score import local_score_agreement, split_held_out
from benchmarks.optimality.config import OptimalityConfig
from benchmarks.output import provenance
from models.memorizer import Memorizer
from models.objectives import OBJECTIVES, sigma_range
from models.runstore import RunStore
from models.symmetrized import Symmetrized, symmetry_group
from models.training import TrainConfig
from models.wiener import Wiener
from synthetic import FAMILY_NAMES, family_parameters, get_family
from synthetic.family import Family
from theory.gaussian import gaussian_kl, gaussian_mmse, mismatched_sse
from theory.kl import kl_curve
from theory.rates import fit_power_law, local_slopes, minimax_exponent

# The project's root, and the default network's finished run shipped with it (a read-only
# run store).
ROOT = Path(__file__).resolve().parents[2]
WEIGHTS_DIR = ROOT / "benchmarks" / "weights"
# The wrong model of the Gaussian KL check: the true spectrum times max(|k|, 1)^-1, rescaled
# to the same pixel variance (for a power law |k|^-γ: the exponent γ + 1).
WRONG_SPECTRUM_POWER = 1.0


def family_options(name: str, config: OptimalityConfig) -> dict:
    """The family options of ``config`` that the family ``name`` takes (by its signature)."""
    options = {
        "alpha": config.alpha,
        "beta": config.beta,
        "gamma": config.gamma,
        "folder": config.faces_dir,
    }
    accepted = family_parameters(name) if name in FAMILY_NAMES else ()
    return {key: value for key, value in options.items() if key in accepted}


def make_families(config: OptimalityConfig) -> list[Family]:
    """Build every requested family up front, so bad input fails before any work."""
    families = [
        get_family(name, size=config.size, seed=config.seed, **family_options(name, config))
        for name in config.family_names()
    ]
    if config.network == "unet":
        multiple = 2**config.blocks
        for family in families:
            if family.size % multiple:
                raise ValueError(
                    f"{family.name} images of {family.size} px cannot pass {config.blocks} UNet "
                    f"levels (needs a multiple of {multiple}): change --size or --blocks"
                )
    return families


def train_config(config: OptimalityConfig, objective: str) -> TrainConfig:
    """The training configuration: halvings spread evenly over the step budget, then a cooldown.

    Field for field what the run store keys the shipped weights by: change nothing here
    without retraining them.
    """
    epoch_steps = max(1, config.steps // (config.lr_halvings + 1))
    return TrainConfig(
        network=config.network,
        network_params=(
            {"channels": config.channels, "blocks": config.blocks}
            if config.network == "unet"
            else {"channels": config.channels, "depth": config.blocks}
        ),
        objective=objective,
        objective_params=sigma_range(
            objective,
            config.train_sigma_min,
            config.train_sigma_max,
            *((config.sigma_law, config.sigma_d, config.sigma_mix) if objective == "edm" else ()),
        ),
        lr=config.lr,
        lr_step_epochs=1,
        lr_gamma=0.5,
        cooldown_steps=round(config.cooldown * config.steps),
        cooldown_lr=config.cooldown_lr,
        ema_halflife=config.ema_halflife,
        batch_size=config.batch_size,
        samples_per_epoch=epoch_steps * config.batch_size,
        epochs=config.lr_halvings + 1,
        max_steps=config.steps,
        seed=config.seed,
        device=str(check_device(config.device)),
    )


def shown_path(path: str) -> str:
    """``path`` relative to the project's root when it is an absolute path inside it."""
    p = Path(path)
    if p.is_absolute() and p.is_relative_to(ROOT):
        return str(p.relative_to(ROOT))
    return path


def run_store(config: OptimalityConfig) -> RunStore:
    """The writable store ``config.runs``, with the shipped weights behind it unless retraining."""
    return RunStore(config.runs, shipped=() if config.retrain else (WEIGHTS_DIR,))


def objectives(config: OptimalityConfig) -> list[str]:
    """The configured objective first, then the others when comparing objectives."""
    others = [o for o in sorted(OBJECTIVES) if o != config.objective]
    return [config.objective] + (others if config.compare_objectives else [])


def train_data(family: Family, n: int) -> dict:
    """The description of ``n`` training images of ``family`` that the run store keys by."""
    return {"family": family.params, "part": "A", "n": int(n)}


def train_networks(
    family: Family, train: torch.Tensor, config: OptimalityConfig
) -> tuple[dict[str, nn.Module], dict[str, TrainedRun]]:
    """The network of each objective, trained on ``train`` or loaded, and its run record."""
    store = run_store(config)
    data = train_data(family, train.shape[0])
    nets, runs = {}, {}
    for objective in objectives(config):
        nets[objective], runs[objective] = train_or_load(
            store,
            train_config(config, objective),
            data,
            train,
            progress=config.progress,
            checkpoint_s=60 * config.checkpoint_minutes,
        )
    return nets, runs


def summarize(family: Family, curves: RiskCurves, window: tuple[float, float]) -> dict:
    """Per-denoiser curves, standard errors, slope fits and local slopes for one family."""
    out: dict = {
        "mse": {},
        "mse_se": {},
        "sse": {},
        "sse_se": {},
        "psnr": {},
        "slopes": {},
        "local_slopes": {},
    }
    for name in curves.sse:
        mse, se = curves.mse(name), curves.mse_se(name)
        out["mse"][name], out["mse_se"][name] = mse, se
        out["sse"][name], out["sse_se"][name] = mse * curves.d, se * curves.d
        out["psnr"][name] = psnr(mse)
        out["slopes"][name] = fit_power_law(curves.sigma, mse, se=se, window=window).to_dict()
        mid, slope = local_slopes(curves.sigma, mse)
        out["local_slopes"][name] = {"sigma": mid, "slope": slope}
    if family.regularity is not None:
        out["minimax_exponent"] = minimax_exponent(family.regularity)
    return out


def wrong_spectrum(spectrum: np.ndarray) -> np.ndarray:
    """``spectrum · max(|k|, 1)^-1`` rescaled to the same mean (pixel variance), FFT order."""
    k = np.fft.fftfreq(spectrum.shape[0], d=1.0 / spectrum.shape[0])
    radius = np.maximum(np.hypot(k[:, None], k[None, :]), 1.0)
    wrong = spectrum * radius**-WRONG_SPECTRUM_POWER
    return wrong * (spectrum.mean() / wrong.mean())


def gaussian_kl_check(
    family: Family, images: torch.Tensor, sigma: np.ndarray, seed: int, progress: bool
) -> dict:
    """KL integral of a Wiener filter built on a wrong spectrum, against the closed form.

    For a stationary Gaussian family (``family.spectrum()`` not None) the wrong filter is
    the exact optimal denoiser of another stationary Gaussian q (same mean and pixel
    variance, spectrum steeper by one power of |k|), so the identity of ``theory.kl`` holds
    exactly: ``KL(p_σ0 ‖ q_σ0) = ∫_σ0^∞ (SSE_q − SSE*_p) σ^-3 dσ``. Reported three ways:
    Monte Carlo (per-image rows, with standard error), the same quadrature applied to the
    closed-form excess risk (isolates quadrature and tail error), and the closed form.
    """
    p = family.spectrum()
    q = wrong_spectrum(p)
    filters = {
        "wiener": Wiener.stationary(family.mean, torch.as_tensor(p)),
        "wrong": Wiener.stationary(family.mean, torch.as_tensor(q)),
    }
    curves = risk_curves(
        {k: f.to(images.device) for k, f in filters.items()},
        images,
        sigma,
        seed,
        progress=progress,
        desc="gaussian KL check",
    )
    mc = kl_curve(sigma, (curves.sse["wrong"] - curves.sse["wiener"]).T)
    p, q, zero = p.ravel(), q.ravel(), np.zeros(p.size)
    quad = kl_curve(sigma, mismatched_sse(zero, p, zero, q, sigma) - gaussian_mmse(p, sigma))
    closed = np.array([gaussian_kl(zero, p + s0**2, zero, q + s0**2) for s0 in sigma])
    gamma = family.params.get("gamma")
    return {
        "wrong_gamma": None if gamma is None else gamma + WRONG_SPECTRUM_POWER,
        "wrong_model": "the family's spectrum times max(|k|, 1)^-1, same pixel variance",
        "sigma0": sigma,
        "value": mc.value,
        "se": mc.se,
        "kind": "exact",
        "quadrature_of_closed_form": quad.value,
        "closed_form": closed,
        "tail": mc.tail,
        "units": "nats per image",
    }


def run_family(family: Family, config: OptimalityConfig) -> dict:
    """Train or load the network, evaluate it and every reference; the family's results."""
    start = time.perf_counter()
    device = check_device(config.device)
    test, train = draw_images(family, config.n_test, config.n_train, device)
    comparison = comparison_for(family, train, test.shape[0])
    sigmas = np.asarray(config.sigmas)
    result: dict = {
        "family": family.name,
        "params": family.params,
        "n_test": test.shape[0],
        "n_train": train.shape[0],
        "d": test[0].numel(),
        "errors": "mse per pixel, sse per image; se = Monte Carlo standard error",
    }
    candidates: dict[str, nn.Module] = {}
    extra: dict[str, nn.Module] = {}
    net = None
    if config.network != "none":
        nets, runs = train_networks(family, train, config)
        result["network"] = runs[config.objective].to_dict()
        result["network"]["run_dir"] = shown_path(result["network"]["run_dir"])
        raw = nets[config.objective]
        result["network"]["symmetrized"] = None
        if config.symmetry_shifts and family.symmetries:
            group = symmetry_group(family.symmetries, family.size, config.symmetry_shifts)
            nets = {o: Symmetrized(n, group) for o, n in nets.items()}
            result["network"]["symmetrized"] = {
                "symmetries": list(family.symmetries),
                "shifts": config.symmetry_shifts,
                "group_order": len(group),
            }
        net = nets[config.objective]
        candidates = {net.name: net, **({raw.name: raw} if net is not raw else {})}
        extra = {f"{net.name}_{o}": nets[o] for o in objectives(config)[1:]}
    curves = held_out_curves(
        candidates,
        comparison,
        test,
        sigmas,
        config.seed,
        extra=extra,
        progress=config.progress,
        desc=f"{family.name} held-out",
    )
    result.update(sigma=curves.sigma, **summarize(family, curves, config.slope_window))
    if net is not None:
        params = {o: run.config["objective_params"] for o, run in runs.items()}
        result.update(
            network_results(config, family, curves, comparison, net, raw, params, test, train)
        )
    if family.spectrum() is not None:
        result["gaussian_check"] = gaussian_kl_check(
            family, test, curves.sigma, derive_seed(config.seed, "gaussian-check"), config.progress
        )
    result.update(provenance_of(device, config), wall_s=time.perf_counter() - start)
    return result


def network_results(
    config: OptimalityConfig,
    family: Family,
    curves: RiskCurves,
    comparison: Comparison,
    net: nn.Module,
    raw: nn.Module,
    params: dict[str, dict],
    test: torch.Tensor,
    train: torch.Tensor,
) -> dict:
    """Ratios, KL curves, the training-image comparison, the effective dimension and how
    well the local score machines predict the network alone.

    ``net`` is the evaluated network (symmetry-averaged when the family has symmetries),
    ``raw`` the network alone, ``params`` each objective's parameters as trained.
    """
    usable = list(comparison.references)
    out: dict = {"ratio_to_best_reference": ratio_to_best(curves, net.name, usable)}
    if net is not raw:
        out["ratio_to_best_reference_raw"] = ratio_to_best(curves, raw.name, usable)
    if config.compare_objectives:
        entries = {}
        for i, objective in enumerate(objectives(config)):
            name = net.name if i == 0 else f"{net.name}_{objective}"
            entries[objective] = ratio_to_best(curves, name, usable) | {"params": params[objective]}
        out["objectives"] = {
            "sigma": curves.sigma,
            "budget": f"{config.steps} steps of {config.batch_size}",
            "objectives": entries,
        }
    # The bracket: an exact curve or a certified upper bound where the family has one, and
    # always the estimate against the best usable reference at each σ.
    out["kl_best_reference_per_sigma"] = best_reference_rows(curves, usable)[1]
    out["kl_curves"] = kl_bracket(curves, net.name, comparison)
    out["kl"] = out["kl_curves"][0]
    memorizer = comparison.references.get("memorizer")
    on_train = risk_curves(
        {net.name: net, "memorizer": Memorizer(train) if memorizer is None else memorizer},
        train[: test.shape[0]],
        curves.sigma,
        derive_seed(config.seed, "training-images"),
        progress=config.progress,
        desc=f"{family.name} training images",
    )
    out["train"] = {
        "mse": {k: on_train.mse(k) for k in on_train.sse},
        "mse_se": {k: on_train.mse_se(k) for k in on_train.sse},
    }
    out["kl_train"] = kl_record(
        curves.sigma,
        (on_train.sse[net.name] - on_train.sse["memorizer"]).T,
        "exact",
        "memorizer of the training set",
    )
    out["effective_dimension"] = measure_effective_dimension(
        net,
        test[:EFFECTIVE_DIMENSION_IMAGES],
        curves.sigma,
        config.probes,
        derive_seed(config.seed, "effective-dimension"),
        net.name,
    )
    compared, calibration = split_held_out(test, config.local_score_images)
    if compared.shape[0] > 0:
        out["local_score"] = local_score_agreement(
            raw,
            train,
            train[: config.local_score_train],
            compared,
            calibration,
            curves.sigma,
            derive_seed(config.seed, "local-score"),
            progress=config.progress,
            desc=f"{family.name} local score machines",
        )
        out["local_score"]["network"] = raw.name
    return out


def provenance_of(device: torch.device, config: OptimalityConfig) -> dict:
    """``benchmarks.output.provenance`` with the resolved configuration as its options."""
    return provenance(device, options=asdict(config))


def permutation_checks(families: list[Family], results: list[dict]) -> dict[str, dict]:
    """For each family that permutes another's pixels: MSE on it over MSE on the original.

    Same images, same noise. A fixed pixel permutation changes nothing for a
    permutation-invariant denoiser (the memorizer, the PCA Wiener filter): their ratios are
    1 up to Monte Carlo error. Wavelets and convolutional networks rely on pixel
    neighbourhoods, so their ratios exceed 1. Keyed by the permuting family's name.
    """
    by_name = {r["family"]: r for r in results}
    checks = {}
    for family in families:
        original = by_name.get(family.permutes) if family.permutes else None
        if original is None:
            continue
        permuted = by_name[family.name]
        names = [name for name in original["mse"] if name in permuted["mse"]]
        checks[family.name] = {
            "sigma": original["sigma"],
            "ratio": {
                n: np.asarray(permuted["mse"][n]) / np.asarray(original["mse"][n]) for n in names
            },
            "note": f"MSE({family.name}) / MSE({family.permutes}); 1 (up to Monte Carlo error) "
            "for permutation-invariant denoisers",
        }
    return checks
