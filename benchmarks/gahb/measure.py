"""The GAHB benchmark's measurements: decompose a network's Jacobian against what is known.

For each family, noise level and held-out image: the eigenpairs of the network's
symmetrized Jacobian (``theory.decomposition``), the optimum's where it is known (the
memorizer of the training set, exactly, for every family; the stationary Wiener filter for
Gaussian fields; the disk posterior's ``Cov[x | y]/σ²`` and the tangent space of the disk
manifold, its small-σ limit), principal angles between them, and how well the network's
leading eigenvectors compact the clean image against the best k-term approximation in
fixed bases (db4 wavelets, adapted bandlets, Fourier, the training set's PCA), with the
risk of oracle diagonal shrinkage in each.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.ndimage import binary_dilation
from tqdm.auto import tqdm

from benchmarks.api import draw_images
from benchmarks.common import check_device, derive_seed
from benchmarks.gahb.config import ANGLE_RANKS, SUMMARY_TERMS, GahbConfig
from benchmarks.optimality.measure import make_families, shown_path, train_networks
from models.bandlets import BandletThreshold
from models.memorizer import Memorizer
from models.references import REFERENCES
from synthetic import family_parameters
from synthetic.family import Family
from theory.bases import (
    captured_fraction,
    fourier_coefficients,
    oracle_shrinkage_sse,
    pca_basis,
    principal_cosines,
    wavelet_coefficients,
)
from theory.decomposition import Decomposition, decompose, stationary_eigenpairs, top_eigenpairs

FIXED_BASES = ("wavelet_db4", "bandlet_db4", "fourier", "pca")


def family_specs(config: GahbConfig) -> list[tuple[str, float | None]]:
    """(family name, α or None) of every family measured, cartoons once per α."""
    specs: list[tuple[str, float | None]] = []
    for name in config.family_names():
        takes_alpha = "alpha" in family_parameters(name)
        specs += [(name, a) for a in config.alphas] if takes_alpha else [(name, None)]
    return specs


def build_family(name: str, alpha: float | None, config: GahbConfig) -> Family:
    """The family at the configured size (the checks of the optimality benchmark)."""
    return make_families(config.optimality(name, alpha))[0]


def label(family: Family) -> str:
    """A short name for files and tables: the family's name, with α for C^α families."""
    alpha = family.regularity
    return family.name if alpha is None else f"{family.name}_alpha{alpha:g}"


def _decompose(net, y: torch.Tensor, sigma: float, config: GahbConfig) -> Decomposition:
    if config.top_k is None:
        return decompose(net, y, sigma, chunk_size=256)
    return top_eigenpairs(net, y, sigma, config.top_k, seed=derive_seed(config.seed, "lanczos"))


def _eigh_desc(matrix: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    eigvals, eigvecs = torch.linalg.eigh(matrix.double())
    return eigvals.flip(-1).cpu().numpy(), eigvecs.flip(-1).cpu().numpy()


def fixed_coefficients(
    centred: np.ndarray, sigma: float, pca: tuple[np.ndarray, np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Coefficients of centred images (B, H, W) in each fixed basis, and the energy outside it."""
    flat = centred.reshape(len(centred), -1)
    bandlets = BandletThreshold()
    out = {
        "wavelet_db4": wavelet_coefficients(centred),
        "bandlet_db4": np.stack([bandlets.coefficients(x, sigma) for x in centred]),
        "fourier": fourier_coefficients(centred),
        "pca": flat @ pca[1],
    }
    energy = np.square(flat).sum(1)
    return {k: (c, np.maximum(energy - np.square(c).sum(1), 0.0)) for k, c in out.items()}


def measure_sigma(
    family: Family,
    net,
    x: torch.Tensor,
    memorizer: Memorizer,
    pca: tuple[np.ndarray, np.ndarray],
    sigma: float,
    config: GahbConfig,
    posterior=None,
) -> dict:
    """Every measure at one σ on the clean images ``x`` (B, 1, H, W).

    ``pca`` is :func:`theory.bases.pca_basis` of the training set: its mean image centres
    the images for the compaction measures. ``posterior`` is the family's exact optimal
    denoiser when it gives ``Cov[x | y]`` (:func:`exact_posterior`), else None.
    """
    g = torch.Generator().manual_seed(
        derive_seed(config.seed, "gahb-noise", label(family), f"{sigma:.6g}")
    )
    y = x + sigma * torch.randn(x.shape, generator=g).to(x)
    dec = _decompose(net, y, sigma, config)
    with torch.no_grad():
        output = net(y, sigma).flatten(1).double().cpu()
    clean_flat = x.flatten(1).double().cpu()
    symmetric = dec.symmetric_output.cpu()
    mem_vals, mem_vecs = _eigh_desc(memorizer.jacobian(y.double(), sigma))
    mean = pca[0].reshape(x.shape[-2:])
    clean = x.double().cpu().numpy()[:, 0]
    centred = clean - mean
    energy = np.square(centred).sum((1, 2))
    eigvecs = dec.eigvecs.cpu().numpy()
    coeff = np.einsum("bd,bdk->bk", centred.reshape(len(x), -1), eigvecs)
    m = min(ANGLE_RANKS, eigvecs.shape[2])
    out = {
        "sigma": sigma,
        "eigvals": dec.eigvals.cpu().numpy(),
        "clean_coefficients": dec.coefficients(x).cpu().numpy(),
        "noisy_coefficients": dec.coefficients(y).cpu().numpy(),
        "trace": dec.trace.cpu().numpy(),
        "trace_se": dec.trace_se.cpu().numpy(),
        "asymmetry": dec.asymmetry.cpu().numpy(),
        "homogeneity": dec.homogeneity.cpu().numpy(),
        "leading_asymmetry": dec.leading_asymmetry.cpu().numpy(),
        # The share of the output the asymmetric part makes, and what keeping only the
        # symmetric part (S y) does to the error.
        "asymmetric_output": ((output - symmetric).norm(dim=1) / output.norm(dim=1)).numpy(),
        "sse_network": (output - clean_flat).square().sum(1).numpy(),
        "sse_symmetric": (symmetric - clean_flat).square().sum(1).numpy(),
        "memorizer_eigvals": mem_vals,
        "memorizer_trace": mem_vals.sum(1),
        "memorizer_cosines": np.stack(
            [principal_cosines(eigvecs[b, :, :m], mem_vecs[b, :, :m]) for b in range(len(x))]
        ),
        "captured": {"gahb": captured_fraction(coeff, energy, best=False)},
        "oracle_sse": {},
    }
    if eigvecs.shape[2] == eigvecs.shape[1]:  # a complete basis: its oracle risk is defined
        out["oracle_sse"]["gahb"] = oracle_shrinkage_sse(coeff, sigma)
    for name, (c, residual) in fixed_coefficients(centred, sigma, pca).items():
        out["captured"][name] = captured_fraction(c, energy)
        out["oracle_sse"][name] = oracle_shrinkage_sse(c, sigma, residual)
    optimum = optimum_eigenpairs(family, posterior, y, sigma)
    if optimum is not None:
        gains, vectors = optimum
        out["optimum_eigvals"] = gains
        out["optimum_trace"] = gains.sum(1)
        out["optimum_cosines"] = np.stack(
            [principal_cosines(eigvecs[b, :, :m], vectors[b, :, :m]) for b in range(len(x))]
        )
    if callable(getattr(family, "tangent", None)):  # a manifold that declares its tangents
        out.update(tangent_measures(family, x.shape[0], eigvecs))
    if callable(getattr(family, "masks", None)):  # a contour that separates two regions
        out.update(contour_measures(family, x.shape[0], eigvecs))
    out["grid"] = {"noisy": y[0, 0].cpu().numpy(), "eigvecs": eigvecs[0]}
    return out


def exact_posterior(family: Family, train: torch.Tensor):
    """The family's exact optimal denoiser when it also gives ``Cov[x | y]``
    (a ``posterior_covariance`` method), else None."""
    if family.optimum.kind != "exact":
        return None
    denoiser = REFERENCES[family.optimum.reference](family, train)
    return denoiser if callable(getattr(denoiser, "posterior_covariance", None)) else None


def optimum_eigenpairs(
    family: Family, posterior, y: torch.Tensor, sigma: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """Eigenvalues (B, d) and eigenvectors (B, d, d), in decreasing order, of the optimal
    denoiser's Jacobian at each noisy image, where it is known exactly.

    Stationary Gaussian fields: ``Σ(Σ + σ²I)⁻¹`` on real Fourier vectors, the same at
    every image. A posterior that gives its covariance (the disks): ``Cov[x | y]/σ²``.
    """
    spectrum = family.spectrum()
    if spectrum is not None:
        gains, vectors = stationary_eigenpairs(spectrum, sigma)
        return np.tile(gains, (len(y), 1)), np.broadcast_to(vectors, (len(y), *vectors.shape))
    if posterior is None:
        return None
    return _eigh_desc(posterior.posterior_covariance(y.double().cpu(), sigma) / sigma**2)


def tangent_measures(family: Family, n: int, eigvecs: np.ndarray) -> dict:
    """Principal cosines of the network's leading eigenvectors to the disk's tangent space.

    The tangent space of the 5-dimensional manifold at the true parameters is the span
    of the renderer's derivatives (``synthetic.disks.disk_tangent``); as σ -> 0 the optimal
    denoiser's Jacobian tends to the orthogonal projection onto it.
    """
    tangent = family.tangent("test", n)
    basis = [np.linalg.qr(t.reshape(len(t), -1).T)[0] for t in tangent]
    dim = basis[0].shape[1]
    return {
        "tangent_dim": dim,
        "tangent_cosines": np.stack(
            [principal_cosines(eigvecs[b, :, :dim], basis[b]) for b in range(n)]
        ),
        # the fraction of the tangent space inside the span of the leading 20 eigenvectors
        "tangent_in_top20": np.array(
            [np.square(eigvecs[b, :, :20].T @ basis[b]).sum() / dim for b in range(n)]
        ),
        "tangent": tangent[0],
    }


def contour_measures(family: Family, n: int, eigvecs: np.ndarray, k: int = 20) -> dict:
    """How much of the leading eigenvectors' energy lies along the contour of a cartoon.

    The band is the pixels the contour crosses (the mask is fractional there) dilated by
    one pixel in each direction; ``contour_energy`` is the mean over the ``k`` leading unit
    eigenvectors of ``Σ_{i in band} e_k[i]²``, to compare with ``contour_area``, the
    band's share of the pixels (what a vector spread evenly over the image would give).
    """
    masks = family.masks("test", n)[:, 0].numpy()
    crossed = (masks > 0) & (masks < 1)
    band = binary_dilation(crossed, structure=np.ones((1, 3, 3), dtype=bool))
    inside = band.reshape(n, -1, 1)
    return {
        "contour_energy": (np.square(eigvecs[:, :, :k]) * inside).sum(1).mean(1),
        "contour_area": band.reshape(n, -1).mean(1),
    }


def run_family(name: str, alpha: float | None, config: GahbConfig) -> dict:
    """Train or load the family's network and measure it at every σ."""
    start = time.perf_counter()
    family = build_family(name, alpha, config)
    oconfig = config.optimality(name, alpha)
    device = check_device(config.device)
    test, train = draw_images(family, oconfig.n_test, oconfig.n_train, device)
    nets, runs = train_networks(family, train, oconfig)
    net = nets[oconfig.objective].eval()
    x = test[: config.n_images]
    memorizer = Memorizer(train.double())
    pca = pca_basis(train.double().cpu().numpy()[:, 0])
    posterior = exact_posterior(family, train)
    rows = [
        measure_sigma(family, net, x, memorizer, pca, float(sigma), config, posterior)
        for sigma in tqdm(
            config.sigmas, desc=f"{label(family)} decompositions", disable=not config.progress
        )
    ]
    run = runs[oconfig.objective].to_dict()
    run["run_dir"] = shown_path(run["run_dir"])
    result = {
        "family": label(family),
        "name": family.name,
        "params": family.params,
        "n_train": int(train.shape[0]),
        "n_images": int(x.shape[0]),
        "d": int(x[0].numel()),
        "network": run,
        "clean": x[:, 0].cpu().numpy(),
        "rows": rows,
        "wall_s": time.perf_counter() - start,
    }
    if callable(getattr(family, "unshuffle", None)):  # eigenvectors shown both ways
        result["unshuffle"] = family.unshuffle
    return result


def summarize(result: dict) -> list[dict]:
    """One row per σ of medians over the images: the table and the CSV."""
    out = []
    for row in result["rows"]:
        oracle = {k: float(np.median(v)) for k, v in row["oracle_sse"].items()}
        k_star = max(1, int(round(float(np.median(row["trace"])))))
        captured = {
            name: float(np.median(curve[:, min(k_star, curve.shape[1]) - 1]))
            for name, curve in row["captured"].items()
        }
        entry = {
            "family": result["family"],
            "sigma": row["sigma"],
            "trace": float(np.median(row["trace"])),
            "memorizer_trace": float(np.median(row["memorizer_trace"])),
            "optimum_trace": (
                float(np.median(row["optimum_trace"])) if "optimum_trace" in row else None
            ),
            "asymmetry": float(np.median(row["asymmetry"])),
            "homogeneity": float(np.median(row["homogeneity"])),
            "leading_asymmetry": float(np.median(row["leading_asymmetry"])),
            "asymmetric_output": float(np.median(row["asymmetric_output"])),
            "mse_network": float(np.median(row["sse_network"])) / result["d"],
            "mse_symmetric": float(np.median(row["sse_symmetric"])) / result["d"],
            "k_star": k_star,
            "captured_at_k_star": captured,
            "captured_at": {
                str(k): {
                    name: float(np.median(curve[:, k - 1]))
                    for name, curve in row["captured"].items()
                    if curve.shape[1] >= k
                }
                for k in SUMMARY_TERMS
            },
            "oracle_mse": {k: v / result["d"] for k, v in oracle.items()},
            "best_oracle_basis": min(oracle, key=oracle.get),
            "best_compaction_basis": max(captured, key=captured.get),
            "memorizer_cosine_mean": float(np.median(row["memorizer_cosines"].mean(1))),
        }
        if "optimum_cosines" in row:
            entry["optimum_cosine_mean"] = float(np.median(row["optimum_cosines"].mean(1)))
        if "tangent_cosines" in row:
            entry["tangent_cosines"] = np.median(row["tangent_cosines"], axis=0).tolist()
            entry["tangent_in_top20"] = float(np.median(row["tangent_in_top20"]))
        if "contour_energy" in row:
            entry["contour_energy"] = float(np.median(row["contour_energy"]))
            entry["contour_area"] = float(np.median(row["contour_area"]))
        out.append(entry)
    return out
