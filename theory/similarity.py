"""Similarity between images: cosine and Pearson correlation, as matrices, pairs and neighbours.

Used to tell memorization from generalization (docs/design.md §12): a sample's similarity to its
nearest training image, and between samples of two networks drawn from the same noise.
The raw cosine of [0, 1] images is inflated by their mean intensity (two unrelated images
of mean 0.5 have cosine near 0.75); the correlation removes each image's mean first.

Conventions: inputs are batches ``(m, ...)`` compared over all trailing axes (flattened);
an image with zero norm (a constant image, for the correlation) has similarity 0 with
everything, as in ``torch.nn.functional.cosine_similarity``.
"""

from __future__ import annotations

import torch

MEASURES = ("cosine", "correlation")


def _check(a: torch.Tensor, b: torch.Tensor, measure: str) -> None:
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    if a.ndim < 2 or b.ndim < 2 or a.shape[1:] != b.shape[1:] or a[0:1].numel() == 0:
        raise ValueError(
            f"need two batches (m, ...) and (n, ...) with equal non-empty image shapes, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}; add a batch axis with x.unsqueeze(0)"
        )


def _unit_rows(x: torch.Tensor, measure: str) -> torch.Tensor:
    """Flatten to (m, d), remove each row's mean for the correlation, scale rows to norm 1."""
    rows = x.reshape(x.shape[0], -1)
    if not rows.is_floating_point():
        rows = rows.to(torch.get_default_dtype())
    if measure == "correlation":
        rows = rows - rows.mean(1, keepdim=True)
    norms = rows.norm(dim=1, keepdim=True)
    # A zero row stays zero (similarity 0) instead of 0/0.
    return rows / torch.where(norms > 0, norms, torch.ones_like(norms))


def _unit_pair(a: torch.Tensor, b: torch.Tensor, measure: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit rows of a and b in their common dtype, on a's device."""
    _check(a, b, measure)
    ua, ub = _unit_rows(a, measure), _unit_rows(b, measure)
    dtype = torch.promote_types(ua.dtype, ub.dtype)
    return ua.to(dtype), ub.to(a.device, dtype)


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``S_ij = <a_i, b_j> / (||a_i|| ||b_j||)`` for batches a (m, ...) and b (n, ...) -> (m, n)."""
    ua, ub = _unit_pair(a, b, "cosine")
    return ua @ ub.T


def correlation_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation ``S_ij`` of images a_i and b_j -> (m, n).

    The cosine of the mean-removed images ``a_i - mean(a_i)`` and ``b_j - mean(b_j)``
    (means over pixels); invariant to adding a constant to, or scaling by c > 0, any image.
    """
    ua, ub = _unit_pair(a, b, "correlation")
    return ua @ ub.T


def paired_similarity(a: torch.Tensor, b: torch.Tensor, measure: str = "cosine") -> torch.Tensor:
    """Similarity of row i of a with row i of b (e.g. A and B samples from one noise) -> (m,).

    Parameters
    ----------
    a, b : tensors of the same shape (m, ...)
    measure : {"cosine", "correlation"}
        Cosine, or Pearson correlation (cosine after removing each image's mean).
    """
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape (pairs row by row), got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    ua, ub = _unit_pair(a, b, measure)
    return (ua * ub).sum(1)


def nearest_neighbours(
    queries: torch.Tensor,
    references: torch.Tensor,
    measure: str = "cosine",
    block: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query, the reference of largest similarity (cosine or correlation).

    The references are visited in blocks of ``block`` rows, moved to the queries' device
    one block at a time, so the memory is O(m * block + block * d) beyond the inputs: a
    training set on the CPU can be searched by samples on a GPU. Ties go to the lowest
    index, as with ``argmax`` over the full (m, n) matrix.

    Parameters
    ----------
    queries : tensor of shape (m, ...)
        E.g. samples.
    references : tensor of shape (n, ...), n >= 1
        E.g. the training set; same image shape as ``queries``.
    measure : {"cosine", "correlation"}
        The similarity maximised (nearest neighbours differ between the two).
    block : int >= 1
        References per block.

    Returns
    -------
    index : int64 tensor of shape (m,)
        Row of the nearest reference.
    similarity : tensor of shape (m,)
        Its similarity to the query.
    """
    _check(queries, references, measure)
    if references.shape[0] == 0 or block < 1:
        raise ValueError(
            f"need at least one reference and block >= 1 (got {references.shape[0]} "
            f"references, block={block})"
        )
    q = _unit_rows(queries, measure)
    if references.is_floating_point():
        q = q.to(torch.promote_types(q.dtype, references.dtype))
    best = torch.full((q.shape[0],), -torch.inf, dtype=q.dtype, device=q.device)
    index = torch.zeros(q.shape[0], dtype=torch.int64, device=q.device)
    for start in range(0, references.shape[0], block):
        refs = _unit_rows(references[start : start + block].to(q.device), measure).to(q.dtype)
        value, arg = (q @ refs.T).max(1)
        better = value > best
        best = torch.where(better, value, best)
        index = torch.where(better, arg + start, index)
    return index, best
