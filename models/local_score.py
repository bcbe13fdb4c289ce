"""Local score machines: exact posterior means under locality (docs/design.md §9).

The LS machine denoises each pixel from the P x P patch around it, as if the image were
drawn from the training patches at that location; the ELS machine adds translation
equivariance and draws from the training patches at every location. Neither is trained:
both are closed forms over the training set, which Kamb & Ganguli show predict the outputs
of trained convolutional denoisers once P is calibrated per noise level.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F

from theory.sigma import check_sigma, sigma_like

PADDINGS = ("zeros", "circular")

# Entries of one block of logits (queries x training patches): 2^20 float32 is 4 MiB, which
# stays near the cache through the five passes over it; larger blocks measured no faster.
_BLOCK = 2**20
# Queries per block for the ELS machine (the rest of the block goes to training patches).
_QUERY_CHUNK = 1024

PatchSpec = int | Mapping[float, int] | Callable[[float], int]


def check_patch(patch: int, side: int, padding: str) -> None:
    """Raise ``ValueError`` (one line naming the fix) unless ``patch`` is a valid patch side.

    P must be an odd integer >= 1 (so that the patch has a centre pixel). Under zero
    padding ``P <= 2 side - 1``: that patch already covers the whole image from every
    pixel, and a larger one only adds zeros. Under circular padding ``P <= side``: a larger
    patch would wrap onto itself and see some pixels twice.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    integral = isinstance(patch, numbers.Integral) and not isinstance(patch, bool)
    if not integral or patch < 1 or patch % 2 == 0:
        raise ValueError(
            f"patch size P must be an odd integer >= 1, got {patch!r}; use 1, 3, 5, ..."
        )
    limit = 2 * side - 1 if padding == "zeros" else side
    if patch > limit:
        why = (
            "2*side-1 covers the image from every pixel"
            if padding == "zeros"
            else "larger patches would wrap onto themselves"
        )
        raise ValueError(
            f"patch size {patch} exceeds {limit} for side {side} under {padding} padding "
            f"({why}); pass an odd P <= {limit}"
        )


def nearest_level(levels: Iterable[float], sigma: float) -> float:
    """The level nearest to ``sigma`` in log sigma (the smaller one on a tie)."""
    levels = sorted(levels)
    check_sigma(sigma)
    if not levels:
        raise ValueError("no noise levels to choose from; pass at least one {sigma: P} entry")
    check_sigma(torch.tensor(levels, dtype=torch.float64))
    return min(levels, key=lambda level: abs(math.log(level) - math.log(sigma)))


def bounding_side(height: int, width: int, padding: str) -> int:
    """The side that bounds P: the longer one under zeros, the shorter one under circular."""
    return max(height, width) if padding == "zeros" else min(height, width)


def _patches(x: torch.Tensor, patch: int, padding: str) -> torch.Tensor:
    """The P x P patches centred at every pixel of ``x`` (N, 1, H, W): shape (N, P^2, H W)."""
    r = patch // 2
    if r:
        x = F.pad(x, (r, r, r, r), mode="constant" if padding == "zeros" else "circular")
    return F.unfold(x, patch)


def _augment_queries(queries: torch.Tensor, inv_s2: torch.Tensor) -> torch.Tensor:
    """``[a / sigma^2, 1 / sigma^2]`` (``inv_s2`` broadcast over the last axis of each query):
    against :func:`_augment_keys`, one product gives the logits, whatever each query's σ."""
    return torch.cat([queries * inv_s2, inv_s2.expand_as(queries[..., :1])], -1)


def _augment_keys(keys: torch.Tensor, dim: int) -> torch.Tensor:
    """``[b, -||b||^2 / 2]`` along ``dim``, so that the product with a query is a logit.

    The logits ``(a.b - ||b||^2 / 2) / sigma^2`` differ from ``-||a - b||^2 / (2 sigma^2)``
    by ``-||a||^2 / (2 sigma^2)``, constant over the training patches b of a query a, so it
    cancels in the softmax. Folding the bias into the product saves a pass over the logits,
    and keeping σ on the query side lets one pass serve queries at different noise levels.
    """
    return torch.cat([keys, keys.square().sum(dim, keepdim=True) * -0.5], dim)


def _accumulate(state, logits: torch.Tensor, values: torch.Tensor, floor: float):
    """One step of the online softmax: fold a block of logits (..., q, k) into ``state``.

    ``state = (m, s, v)``: the running maximum logit, the normaliser ``sum exp(l - m)`` and
    the weighted sum ``sum exp(l - m) x`` of the patch-centre pixels; ``values`` (..., k, 2)
    holds those pixels and a column of ones, so one product updates ``v`` and ``s``.
    Logits more than ``-floor`` below the maximum are raised to it: exp is about 30 times
    slower on inputs whose result underflows, and with ``floor = log(eps / K)`` for K
    training patches the raised terms add at most ``eps`` to the normalised weights.
    """
    m = logits.detach().amax(-1)
    if state is not None:
        m = torch.maximum(m, state[0])
    ref = (m + floor).unsqueeze(-1)
    if logits.requires_grad:
        weights = torch.exp(torch.maximum(logits, ref) - m.unsqueeze(-1))
    else:  # in place: a block of logits is the largest tensor here
        weights = logits.clamp_min_(ref).sub_(m.unsqueeze(-1)).exp_()
    sums = weights @ values
    if state is None:
        return m, sums[..., 1], sums[..., 0]
    scale = torch.exp(state[0] - m)
    return m, state[1] * scale + sums[..., 1], state[2] * scale + sums[..., 0]


def _equivariant(
    queries: torch.Tensor, train: torch.Tensor, inv_s2: torch.Tensor, patch: int, padding: str
) -> torch.Tensor:
    """ELS posterior means for queries (Q, P^2), each at its 1/σ² (Q, 1), over every patch of
    every training image."""
    n, _, height, width = train.shape
    hw = height * width
    floor = math.log(torch.finfo(queries.dtype).eps / (n * hw))
    q = _augment_queries(queries, inv_s2)
    qc = min(q.shape[0], _QUERY_CHUNK)
    kb = max(1, _BLOCK // qc)
    nb = max(1, kb // hw)
    chunks = list(range(0, q.shape[0], qc))
    states: list = [None] * len(chunks)
    # Training images are unfolded a block at a time, so memory stays O(block), not O(n H W P^2).
    for n0 in range(0, n, nb):
        x = train[n0 : n0 + nb]
        keys = _patches(x, patch, padding).transpose(0, 1).reshape(patch * patch, -1)
        k = _augment_keys(keys, dim=0)
        values = torch.stack([x.reshape(-1), torch.ones_like(x.reshape(-1))], 1)
        for k0 in range(0, k.shape[1], kb):
            for c, q0 in enumerate(chunks):
                logits = q[q0 : q0 + qc] @ k[:, k0 : k0 + kb]
                states[c] = _accumulate(states[c], logits, values[k0 : k0 + kb], floor)
    return torch.cat([v / s for _, s, v in states])


def _local(
    queries: torch.Tensor,
    train: torch.Tensor,
    inv_s2: torch.Tensor,
    patch: int,
    padding: str,
    pixels: torch.Tensor,
) -> torch.Tensor:
    """LS posterior means for queries (k, B, P^2), image b at its 1/σ² ``inv_s2[b]``, at
    ``pixels`` over the same-location patches."""
    n = train.shape[0]
    floor = math.log(torch.finfo(queries.dtype).eps / n)
    nb = max(1, _BLOCK // (queries.shape[0] * queries.shape[1]))
    q = _augment_queries(queries, inv_s2.reshape(1, -1, 1))
    state = None
    for n0 in range(0, n, nb):
        x = train[n0 : n0 + nb]
        keys = _patches(x, patch, padding)[:, :, pixels].permute(2, 1, 0)  # (k, P^2, nb)
        k = _augment_keys(keys, dim=1)
        centre = x.reshape(x.shape[0], -1)[:, pixels].T
        values = torch.stack([centre, torch.ones_like(centre)], -1)  # (k, nb, 2)
        state = _accumulate(state, torch.bmm(q, k), values, floor)
    return state[2] / state[1]


def local_posterior_mean(
    y: torch.Tensor,
    train: torch.Tensor,
    sigma: float | torch.Tensor,
    patch: int,
    equivariant: bool = True,
    padding: str = "zeros",
    pixels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Posterior mean of each pixel given the noisy P x P patch around it (Kamb & Ganguli).

    LS (``equivariant=False``): ``f(y)_i = sum_n w_n x_n[i]`` with
    ``w = softmax_n(-||P_i y - P_i x_n||^2 / (2 sigma^2))``, training patches at location i.
    ELS (``equivariant=True``): ``f(y)_i = sum_{n,j} w_{n,j} x_n[j]`` with
    ``w = softmax_{n,j}(-||P_i y - P_j x_n||^2 / (2 sigma^2))`` over every training image n
    and location j. P_i is the patch centred at pixel i, padded as the network pads: with
    zeros past the border, or periodically (then ELS commutes with ``torch.roll``). For
    y = x + sigma z no rescaling of the weights is needed (Kamb & Ganguli's process is
    variance preserving). Each output pixel is a separate posterior mean, so ``pixels``
    computes a subset at proportionally lower cost.

    Parameters
    ----------
    y : tensor of shape (B, 1, H, W)
        Noisy images; the result takes their dtype and device.
    train : tensor of shape (n, 1, H, W)
        Training images (clean pixels in [0, 1]).
    sigma : float or tensor of shape (B,)
        Noise standard deviation in pixel units, > 0, one for all images or one per image
        (a single pass serves them all).
    patch : int
        Patch side P in pixels (odd; see :func:`check_patch`).
    equivariant : bool
        ELS if true, LS otherwise.
    padding : {"zeros", "circular"}
        Boundary handling, for y and the training images alike.
    pixels : tensor of shape (k,), optional
        Flat (row-major) indices in [0, H W) of the output pixels to compute.

    Returns
    -------
    tensor of shape (B, 1, H, W), or (B, k) when ``pixels`` is given.

    Notes
    -----
    Squared distances come from products, ``||a||^2 - 2 a.b + ||b||^2``, over blocks of
    training patches, with an online log-sum-exp (running maximum, normaliser and weighted
    sum), so memory is O(queries x block). Cost in multiply-adds per image: ELS
    ``(H W) (n H W) P^2``; LS ``(H W) n P^2``. Logits more than log(K / eps) below the
    maximum (K training patches per query) are raised to that floor, which moves each
    output pixel by at most ``2 eps max|x|``. In float32 each distance carries an absolute
    error of about ``eps ||P_i y|| ||P_j x_n||``, i.e. about ``eps P^2 / sigma^2`` on a
    logit for pixels near 1: use float64 when sigma is small or patches nearly tie.
    Differentiable by autograd (out-of-place path) when y requires grad.

    References
    ----------
    M. Kamb, S. Ganguli, "An analytic theory of creativity in convolutional diffusion
    models", ICML 2025 (PMLR 267:28795-28831; arXiv:2412.20292).
    """
    if y.ndim != 4 or y.shape[1] != 1 or train.ndim != 4 or train.shape[1:] != y.shape[1:]:
        raise ValueError(
            f"y (B, 1, H, W) and train (n, 1, H, W) need equal trailing shapes, got "
            f"{tuple(y.shape)} and {tuple(train.shape)}; add the channel axis with unsqueeze(1)"
        )
    if train.shape[0] == 0:
        raise ValueError("the training set is empty; pass at least one training image")
    batch, _, height, width = y.shape
    check_patch(patch, bounding_side(height, width, padding), padding)
    train = train.to(y.device, y.dtype)
    flat = pixels is None
    if flat:
        pixels = torch.arange(height * width, device=y.device)
    else:
        pixels = torch.as_tensor(pixels, device=y.device).long().reshape(-1)
        if pixels.numel() and not 0 <= int(pixels.min()) <= int(pixels.max()) < height * width:
            raise ValueError(f"pixels must be flat indices in [0, {height * width})")
    inv_s2 = sigma_like(sigma, y).reshape(-1).square().reciprocal()  # (B,)
    queries = _patches(y, patch, padding)[:, :, pixels]  # (B, P^2, k)
    if equivariant:
        rows = queries.transpose(1, 2).reshape(-1, patch * patch)
        per_row = inv_s2.repeat_interleave(pixels.numel()).unsqueeze(1)
        out = _equivariant(rows, train, per_row, patch, padding).reshape(batch, -1)
    else:
        out = _local(queries.permute(2, 0, 1), train, inv_s2, patch, padding, pixels).T
    return out.reshape(y.shape) if flat else out


class LocalScoreMachine:
    """The LS or ELS machine of Kamb & Ganguli as a denoiser (docs/design.md §9).

    ``f(y)_i = sum w x`` over training patches, the posterior mean of pixel i given the
    P x P patch around it (:func:`local_posterior_mean`), with P chosen per noise level.

    Parameters
    ----------
    train : tensor of shape (n, 1, H, W)
        Training images (clean pixels in [0, 1]).
    patch : int, {sigma: P} or callable sigma -> P
        Patch side in pixels: one for every sigma, per level (the level nearest in log
        sigma, :func:`nearest_level`; e.g. from :func:`calibrate_patch_sizes`), or a rule.
    equivariant : bool
        ELS (patches from every location) if true, LS (same location) otherwise.
    padding : {"zeros", "circular"}
        Boundary handling, as the network pads.
    name : str, optional
        Result-file name; "els" or "ls" by default.

    Notes
    -----
    Calls run on y's device and dtype; keep the machine there (``.to(...)``) to avoid a copy
    of the training set per call. A (B,) sigma is grouped by patch size: the images of one
    group share one pass over the training patches, each at its own sigma.
    """

    def __init__(
        self,
        train: torch.Tensor,
        patch: PatchSpec,
        equivariant: bool = True,
        padding: str = "zeros",
        name: str | None = None,
    ) -> None:
        if train.ndim != 4 or train.shape[1] != 1 or train.shape[0] == 0:
            raise ValueError(
                f"train must be a non-empty (n, 1, H, W) tensor, got {tuple(train.shape)}; "
                "add the channel axis with train.unsqueeze(1)"
            )
        self.side = bounding_side(train.shape[2], train.shape[3], padding)
        check_patch(1, self.side, padding)  # checks the padding
        if isinstance(patch, Mapping):
            nearest_level(patch, 1.0)  # checks the levels
            for p in patch.values():
                check_patch(p, self.side, padding)
        elif not callable(patch):
            check_patch(patch, self.side, padding)
        self.train = train
        self.patch = patch
        self.equivariant = equivariant
        self.padding = padding
        self.name = name if name is not None else ("els" if equivariant else "ls")

    def to(self, *args, **kwargs) -> LocalScoreMachine:
        """Return a copy on another device or dtype (arguments as for ``Tensor.to``)."""
        return LocalScoreMachine(
            self.train.to(*args, **kwargs), self.patch, self.equivariant, self.padding, self.name
        )

    def patch_for(self, sigma: float) -> int:
        """The patch side used at noise level ``sigma``."""
        if isinstance(self.patch, Mapping):
            patch = self.patch[nearest_level(self.patch, sigma)]
        elif callable(self.patch):
            check_sigma(sigma)
            patch = self.patch(sigma)
        else:
            patch = self.patch
        check_patch(patch, self.side, self.padding)
        return int(patch)

    def __call__(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoise a batch ``y`` of shape (B, 1, H, W) at noise level ``sigma`` (float or (B,))."""
        levels = sigma_like(sigma, y).reshape(-1)
        patches = torch.tensor([self.patch_for(s) for s in levels.tolist()])
        distinct = torch.unique(patches)
        parts = []
        for patch in distinct.tolist():
            index = (patches == patch).nonzero().squeeze(1).to(y.device)
            whole = len(distinct) == 1
            machine_out = local_posterior_mean(
                y if whole else y[index],
                self.train,
                levels if whole else levels[index],
                patch,
                self.equivariant,
                self.padding,
            )
            parts.append((index, machine_out))
        if len(parts) == 1:
            return parts[0][1]
        out = y.new_empty(y.shape)
        for index, machine_out in parts:
            out = out.index_copy(0, index, machine_out)
        return out


def r_squared(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Pooled coefficient of determination of ``pred`` for ``target``.

    ``r^2 = 1 - sum (pred - target)^2 / sum (target - mean target)^2``, sums and mean over
    every entry (all images and pixels pooled; Kamb & Ganguli report the median over images
    of per-image values instead). 1 is exact agreement; it is negative when ``pred`` is
    worse than the constant mean of ``target``.
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}"
        )
    target = target.to(pred.dtype)
    spread = (target - target.mean()).square().sum()
    if not spread > 0:
        raise ValueError("r^2 is undefined for a constant target; use more images or pixels")
    return float(1 - (pred - target).square().sum() / spread)


def calibrate_patch_sizes(
    network: Callable[[torch.Tensor, float], torch.Tensor],
    train: torch.Tensor,
    clean: torch.Tensor,
    sigmas: Iterable[float],
    candidates: Iterable[int],
    equivariant: bool = True,
    padding: str = "zeros",
    pixels_per_image: int = 64,
    seed: int = 0,
    patience: int | None = None,
) -> dict[float, dict]:
    """Choose, per noise level, the patch side whose machine best predicts ``network``.

    At each sigma the images ``clean + sigma z`` (one seeded draw of z shared by all levels)
    go through the network (without gradients) and through the machine for each candidate
    P; the chosen P maximises :func:`r_squared` of the machine's output for the network's.
    Each output pixel is a separate posterior mean, so the machine is evaluated only at
    ``pixels_per_image`` pixels, one seeded random subset shared by all images and levels.

    Parameters
    ----------
    network : denoiser ``f(y, sigma)`` (docs/design.md §2)
    train : tensor of shape (n, 1, H, W)
        The network's training images.
    clean : tensor of shape (B, 1, H, W)
        Clean images to noise (held-out or training images).
    sigmas : noise levels in pixel units.
    candidates : odd patch sides to try, in this order; ties go to the first listed.
    equivariant, padding : as for :class:`LocalScoreMachine`.
    pixels_per_image : pixels evaluated per image (at most H W).
    seed : seed of the noise and of the pixel subset.
    patience : stop trying candidates once this many in a row after the best so far fall
        short of it (None: try them all). The cost of ELS grows as P² and r² usually rises
        to one peak in P, so an increasing list can stop past the peak.

    Returns
    -------
    dict
        ``{sigma: {"patch": P, "r2": {P: r^2, ...}}}`` with float sigma and int P keys
        (``json.dump`` writes them as strings); ``{s: v["patch"] for s, v in out.items()}``
        is a ``patch`` argument for :class:`LocalScoreMachine`.
    """
    candidates = [int(p) for p in candidates]
    if not candidates:
        raise ValueError("no candidate patch sizes; pass e.g. candidates=(1, 3, 5, 7)")
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be >= 1 candidates or None (got {patience})")
    batch, _, height, width = clean.shape
    for p in candidates:
        check_patch(p, bounding_side(height, width, padding), padding)
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randperm(height * width, generator=g)[: max(1, pixels_per_image)]
    z = torch.randn(clean.shape, generator=g, dtype=clean.dtype).to(clean.device)
    pixels = pixels.to(clean.device)
    out: dict[float, dict] = {}
    for sigma in sigmas:
        sigma = float(sigma)
        noisy = clean + sigma * z
        with torch.no_grad():
            target = network(noisy, sigma).reshape(batch, -1)[:, pixels]
            r2: dict[int, float] = {}
            for tried, p in enumerate(candidates):
                machine = local_posterior_mean(noisy, train, sigma, p, equivariant, padding, pixels)
                r2[p] = r_squared(machine, target)
                best = max(r2, key=r2.get)
                if patience is not None and tried - list(r2).index(best) >= patience:
                    break
        out[sigma] = {"patch": max(r2, key=r2.get), "r2": r2}
    return out
