"""Similarity measures against independent computations: numpy Pearson, brute-force argmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from theory.similarity import (
    correlation_matrix,
    cosine_similarity_matrix,
    nearest_neighbours,
    paired_similarity,
)


def _images(n: int, seed: int, size: int = 6) -> torch.Tensor:
    """[0, 1]-like images with per-image offsets, so cosine and correlation rank differently."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g, dtype=torch.float64)
    return x + 2.0 * torch.rand(n, 1, 1, 1, generator=g, dtype=torch.float64)


def test_matrices_match_direct_formulas():
    a, b = _images(7, 0), _images(11, 1)
    af, bf = a.flatten(1).numpy(), b.flatten(1).numpy()
    cos = np.array([[x @ y / np.linalg.norm(x) / np.linalg.norm(y) for y in bf] for x in af])
    corr = np.corrcoef(af, bf)[:7, 7:]
    np.testing.assert_allclose(cosine_similarity_matrix(a, b).numpy(), cos, rtol=0, atol=1e-12)
    np.testing.assert_allclose(correlation_matrix(a, b).numpy(), corr, rtol=0, atol=1e-12)


@pytest.mark.parametrize("measure", ["cosine", "correlation"])
def test_paired_similarity_is_the_diagonal_and_self_similarity_is_one(measure):
    a, b = _images(9, 2), _images(9, 3)
    full = cosine_similarity_matrix if measure == "cosine" else correlation_matrix
    torch.testing.assert_close(paired_similarity(a, b, measure), full(a, b).diagonal())
    torch.testing.assert_close(paired_similarity(a, a, measure), torch.ones(9, dtype=a.dtype))
    torch.testing.assert_close(full(a, a).diagonal(), torch.ones(9, dtype=a.dtype))
    a32 = a.float()
    ones = torch.ones(9)
    torch.testing.assert_close(paired_similarity(a32, a32, measure), ones, rtol=0, atol=1e-6)


def test_correlation_ignores_offset_and_scale_cosine_does_not():
    a, b = _images(5, 4), _images(6, 5)
    moved = 3.0 * a + 0.7
    torch.testing.assert_close(correlation_matrix(moved, b), correlation_matrix(a, b))
    torch.testing.assert_close(correlation_matrix(b, moved), correlation_matrix(b, a))
    torch.testing.assert_close(cosine_similarity_matrix(3.0 * a, b), cosine_similarity_matrix(a, b))
    assert (cosine_similarity_matrix(moved, b) - cosine_similarity_matrix(a, b)).abs().max() > 1e-3


def test_zero_and_constant_images_have_similarity_zero():
    a = torch.stack([torch.zeros(1, 4, 4), torch.full((1, 4, 4), 0.5)])
    b = _images(3, 6, size=4)
    assert torch.equal(cosine_similarity_matrix(a[:1], b), torch.zeros(1, 3, dtype=b.dtype))
    assert torch.equal(correlation_matrix(a, b), torch.zeros(2, 3, dtype=b.dtype))


@pytest.mark.parametrize("measure", ["cosine", "correlation"])
@pytest.mark.parametrize("block", [1, 10, 103, 500])
def test_nearest_neighbours_match_brute_force(measure, block):
    queries, refs = _images(40, 7), _images(103, 8)
    full = (cosine_similarity_matrix if measure == "cosine" else correlation_matrix)(queries, refs)
    index, sim = nearest_neighbours(queries, refs, measure=measure, block=block)
    assert index.dtype == torch.int64 and index.shape == sim.shape == (40,)
    assert torch.equal(index, full.argmax(1))
    torch.testing.assert_close(sim, full.max(1).values, rtol=0, atol=1e-12)


def test_nearest_depends_on_measure_and_ties_go_to_lowest_index():
    queries, refs = _images(40, 7), _images(103, 8)
    cos_index = nearest_neighbours(queries, refs, "cosine")[0]
    corr_index = nearest_neighbours(queries, refs, "correlation")[0]
    # The fixture is only informative if the two measures pick different neighbours.
    assert (cos_index != corr_index).any()
    # A copy of the references as a second block: every maximum is tied exactly (the two
    # blocks are the same matrix product), and the first copy wins.
    doubled = torch.cat([refs, refs])
    index, _ = nearest_neighbours(queries, doubled, "correlation", block=103)
    assert torch.equal(index, corr_index)


def test_float32_queries_against_float64_references_use_float64():
    queries, refs = _images(8, 9).float(), _images(20, 10)
    index, sim = nearest_neighbours(queries, refs, block=7)
    assert sim.dtype == torch.float64
    full = cosine_similarity_matrix(queries.double(), refs)
    assert torch.equal(index, full.argmax(1))


def test_bad_input_raises():
    a, b = _images(3, 11), _images(4, 12)
    with pytest.raises(ValueError, match="measure must be one of"):
        nearest_neighbours(a, b, measure="euclidean")
    with pytest.raises(ValueError, match="equal non-empty image shapes"):
        cosine_similarity_matrix(a, _images(4, 12, size=5))
    with pytest.raises(ValueError, match="equal non-empty image shapes"):
        correlation_matrix(a.flatten(), b.flatten())
    with pytest.raises(ValueError, match="same shape"):
        paired_similarity(a, b)
    with pytest.raises(ValueError, match="at least one reference"):
        nearest_neighbours(a, b[:0])
    with pytest.raises(ValueError, match="block >= 1"):
        nearest_neighbours(a, b, block=0)
