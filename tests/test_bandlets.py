"""Orthogonal bandlets: orthonormality, the geometry search, approximation and denoising."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import pywt
import torch

from models.bandlet_transform import (
    adapted_geometry,
    bandlet_forward,
    bandlet_inverse,
    bandletize,
    best_geometry,
    direction_order,
    geometry_parameters,
    haar_1d,
    inverse_haar_1d,
    uniform_directions,
)
from models.bandlets import BandletThreshold
from models.references import cycle_spun
from models.wavelets import WaveletThreshold
from synthetic.cartoons import cartoon_images

LENGTHS = [1, 2, 3, 5, 6, 7, 12, 16, 25, 63, 64]


@pytest.mark.parametrize("n", LENGTHS)
def test_haar_1d_is_orthonormal_for_any_length(n):
    matrix = haar_1d(np.eye(n))  # row i: transform of e_i, so matrix = H^T
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(n), atol=1e-12)
    np.testing.assert_allclose(inverse_haar_1d(matrix), np.eye(n), atol=1e-12)
    # One vanishing moment at every length: a constant has only its coarse coefficient.
    constant = haar_1d(np.full(n, 2.0))
    np.testing.assert_allclose(constant, np.r_[2.0 * math.sqrt(n), np.zeros(n - 1)], atol=1e-12)


def test_haar_1d_is_the_usual_haar_transform_on_powers_of_two():
    x = np.random.default_rng(0).normal(size=(3, 32))
    expected = np.concatenate(pywt.wavedec(x, "haar", mode="periodization", axis=-1), axis=-1)
    np.testing.assert_allclose(haar_1d(x), expected, atol=1e-12)


def test_haar_1d_on_an_odd_length_by_hand():
    # n = 3: (x0, x1) -> ((x0 + x1) / sqrt 2, (x0 - x1) / sqrt 2), x2 carried; then the pair
    # of weights (2, 1) -> coarse (sqrt 2 s + x2) / sqrt 3, detail (s - sqrt 2 x2) / sqrt 3.
    x0, x1, x2 = 1.0, 4.0, -2.0
    s, d = (x0 + x1) / math.sqrt(2), (x0 - x1) / math.sqrt(2)
    expected = [(math.sqrt(2) * s + x2) / math.sqrt(3), (s - math.sqrt(2) * x2) / math.sqrt(3), d]
    np.testing.assert_allclose(haar_1d(np.array([x0, x1, x2])), expected, atol=1e-12)


@pytest.mark.parametrize(("height", "width"), [(4, 4), (5, 3), (16, 16)])
def test_direction_order_sorts_by_projection_across_the_flow(height, width):
    y, x = np.divmod(np.arange(height * width), width)
    for theta in uniform_directions(12):
        order = direction_order(height, width, theta)
        assert sorted(order) == list(range(height * width))
        across = -np.sin(theta) * x[order] + np.cos(theta) * y[order]
        assert np.all(np.diff(across) >= -1e-9)
    # A nearly horizontal flow visits the grid row by row.
    rows = y[direction_order(height, width, 0.1 / width)]
    np.testing.assert_array_equal(rows, np.sort(rows))


def _random_leaves(shape: tuple[int, int], n_directions: int, rng: np.random.Generator):
    """A random partition of the subband by mid-point bisection, random direction or none."""
    leaves = []

    def visit(r, c, h, w):
        if min(h, w) >= 2 and rng.random() < 0.6:
            for dr, hh in [(0, h // 2), (h // 2, h - h // 2)]:
                for dc, ww in [(0, w // 2), (w // 2, w - w // 2)]:
                    visit(r + dr, c + dc, hh, ww)
        else:
            leaves.append([r, c, h, w, rng.integers(-1, n_directions)])

    visit(0, 0, *shape)
    return np.array(leaves)


@pytest.mark.parametrize(
    ("wavelet", "shape", "levels"), [("db4", (80, 48), 4), ("sym8", (64, 64), 6)]
)
def test_bandlet_transform_is_orthonormal_for_a_fixed_random_geometry(wavelet, shape, levels):
    rng = np.random.default_rng(1)
    directions = uniform_directions(9)
    image = rng.normal(size=shape)
    shapes = [d[0].shape for d in pywt.wavedec2(image, wavelet, "periodization", levels)[1:]]
    geometry = [tuple(_random_leaves(s, len(directions), rng) for _ in range(3)) for s in shapes]
    assert sum(int((leaves[:, 4] >= 0).sum()) for level in geometry for leaves in level) > 20

    coeffs = bandlet_forward(image, geometry, directions, wavelet)
    energy = (coeffs[0] ** 2).sum() + sum((band**2).sum() for d in coeffs[1:] for band in d)
    assert abs(energy - (image**2).sum()) < 1e-10 * (image**2).sum()
    inverse = bandlet_inverse(coeffs, geometry, directions, wavelet)
    assert np.abs(inverse - image).max() < 1e-10
    wavelet_coeffs = pywt.wavedec2(image, wavelet, "periodization", levels)
    assert np.abs(coeffs[-1][0] - wavelet_coeffs[-1][0]).max() > 0.1  # it did change them


def test_bandlet_transform_matrix_is_orthogonal():
    # The full 256 x 256 matrix of the transform of 16 x 16 images for a geometry chosen
    # on a random image: B B^T = I.
    rng = np.random.default_rng(2)
    directions = uniform_directions(8)
    image = rng.normal(size=(16, 16))
    geometry = adapted_geometry(image, 1.0, directions, 3, "db2", 2, 8, 1.0)
    assert geometry_parameters(geometry) > 0

    def flatten(coeffs):
        return np.concatenate([coeffs[0].ravel()] + [b.ravel() for d in coeffs[1:] for b in d])

    basis = np.stack(
        [
            flatten(bandlet_forward(e.reshape(16, 16), geometry, directions, "db2"))
            for e in np.eye(256)
        ]
    )
    np.testing.assert_allclose(basis @ basis.T, np.eye(256), atol=1e-12)


def _brute_force_lagrangian(subband, threshold, directions, gamma):
    """min L over every geometry of an 8 x 8 subband with 4 x 4 to 8 x 8 leaves."""
    penalty = gamma**2 * threshold**2

    def leaf(cell):
        h, w = cell.shape
        y, x = np.divmod(np.arange(h * w), w)
        costs = [np.minimum(cell**2, threshold**2).sum()]
        for theta in directions:
            order = np.argsort(-np.sin(theta) * x + np.cos(theta) * y, kind="stable")
            haar = np.concatenate(pywt.wavedec(cell.ravel()[order], "haar", "periodization"))
            costs.append(np.minimum(haar**2, threshold**2).sum() + penalty)
        return min(costs)

    quarters = [subband[r : r + 4, c : c + 4] for r, c in itertools.product([0, 4], [0, 4])]
    return min(leaf(subband), sum(leaf(q) for q in quarters) + penalty)


@pytest.mark.parametrize("seed", range(4))
def test_best_geometry_minimises_the_lagrangian(seed):
    rng = np.random.default_rng(seed)
    directions = uniform_directions(8)
    # An oriented pattern plus noise, so that directions and splits both get chosen.
    y, x = np.mgrid[0:8, 0:8]
    subband = 3 * np.sin(0.9 * (x - 2.0 * y) + seed) * (x < 4 + seed % 2 * 4) + rng.normal(
        size=(8, 8)
    )
    threshold, gamma = 1.5, 1.0
    leaves, lagrangian = best_geometry(subband, threshold, directions, 4, 8, gamma)
    assert lagrangian == pytest.approx(
        _brute_force_lagrangian(subband, threshold, directions, gamma), rel=1e-12
    )
    # The returned value is L of the returned geometry.
    coeffs = bandletize(subband, leaves, directions)
    n_params = int((leaves[:, 4] >= 0).sum()) + (len(leaves) - 1) // 3
    recomputed = np.minimum(coeffs**2, threshold**2).sum() + gamma**2 * threshold**2 * n_params
    assert lagrangian == pytest.approx(recomputed, rel=1e-12)
    assert lagrangian <= np.minimum(subband**2, threshold**2).sum()  # never worse than wavelets


@pytest.mark.parametrize(
    ("shape", "min_square", "max_square"), [((32, 32), 4, 8), ((20, 12), 2, 6)]
)
def test_best_geometry_tiles_the_subband_within_the_square_sizes(shape, min_square, max_square):
    subband = np.random.default_rng(3).normal(size=shape) * 2
    leaves, _ = best_geometry(subband, 1.0, uniform_directions(16), min_square, max_square)
    covered = np.zeros(shape, dtype=int)
    for r, c, h, w, _ in leaves:
        covered[r : r + h, c : c + w] += 1
    np.testing.assert_array_equal(covered, 1)
    assert leaves[:, 2:4].min() >= min_square and leaves[:, 2:4].max() <= max_square


def _straight_edge(size: int = 64, supersample: int = 8) -> np.ndarray:
    """A half-plane at 30 degrees through the centre on a horizontal ramp, anti-aliased."""
    u = (np.arange(size * supersample) + 0.5) / supersample
    y, x = np.meshgrid(u, u, indexing="ij")
    theta = np.deg2rad(30)
    inside = -np.sin(theta) * (x - size / 2) + np.cos(theta) * (y - size / 2) > 0
    image = 0.2 + 0.3 * x / size + 0.4 * inside
    return image.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def _straight_stripes(size: int = 64, supersample: int = 8) -> np.ndarray:
    """Periodic stripes of slope 1/2 (every edge straight, none from the periodic wrap)."""
    u = (np.arange(size * supersample) + 0.5) / supersample
    y, x = np.meshgrid(u, u, indexing="ij")
    image = 0.3 + 0.4 * (np.mod(y - 0.5 * x, size / 2) < size / 4)
    return image.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


@pytest.mark.parametrize(
    ("make_image", "max_ratio"), [(_straight_edge, 0.85), (_straight_stripes, 0.5)]
)
def test_bandlets_need_fewer_coefficients_than_wavelets_on_straight_edges(make_image, max_ratio):
    # Bandlet approximation at threshold T: the M_B coefficients |b| >= T plus the P geometry
    # parameters, error E = sum of the rest squared. Wavelets: the fewest coefficients (best
    # M-term approximation) whose error is <= E. Both count the detail subbands only (the
    # single approximation coefficient is shared).
    image, levels, directions = make_image(), 6, uniform_directions(32)
    wavelet = np.concatenate(
        [b.ravel() for d in pywt.wavedec2(image, "db4", "periodization", levels)[1:] for b in d]
    )
    smallest_first = np.cumsum(np.sort(wavelet**2))
    for threshold in [0.05, 0.02, 0.01]:
        geometry = adapted_geometry(image, threshold, directions, levels)
        coeffs = bandlet_forward(image, geometry, directions)
        bandlet = np.concatenate([b.ravel() for d in coeffs[1:] for b in d])
        error = (bandlet[np.abs(bandlet) < threshold] ** 2).sum()
        n_bandlet = int((np.abs(bandlet) >= threshold).sum()) + geometry_parameters(geometry)
        n_wavelet = wavelet.size - np.searchsorted(smallest_first, error, side="right")
        assert n_bandlet <= max_ratio * n_wavelet, (threshold, n_bandlet, n_wavelet)


@pytest.mark.parametrize("sigma", [0.05, 0.1])
def test_bandlets_denoise_cartoons_better_than_orthogonal_wavelets(sigma):
    n = 16
    x = torch.from_numpy(cartoon_images(n, 64, 2.0, 2.0, np.random.default_rng(0))[0])[:, None]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    y = x + sigma * noise
    bandlet = (BandletThreshold()(y, sigma) - x).square().mean((1, 2, 3))
    wavelet = (WaveletThreshold("db4", "hard", 3.0)(y, sigma) - x).square().mean((1, 2, 3))
    diff = bandlet - wavelet
    assert diff.mean() + 3 * diff.std() / math.sqrt(n) < 0, (bandlet.mean(), wavelet.mean())


def _noisy_cartoons(n: int, size: int, sigma, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(cartoon_images(n, size, 2.0, 2.0, np.random.default_rng(seed))[0])[:, None]
    s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
    return x, x + s * torch.randn(
        x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype
    )


def test_per_image_sigma_equals_one_call_per_image():
    sigma = torch.tensor([0.02, 0.1, 0.3], dtype=torch.float64)
    _, y = _noisy_cartoons(3, 32, sigma, seed=4)
    denoiser = BandletThreshold(max_square=8, n_directions=16)
    out = denoiser(y, sigma)
    for b in range(3):
        torch.testing.assert_close(out[b : b + 1], denoiser(y[b : b + 1], sigma[b].item()))
    assert (out - y).abs().max() > 0.01


def test_zero_threshold_is_the_identity_and_dtype_device_are_kept():
    _, y = _noisy_cartoons(2, 40, 0.1, seed=5)  # 40 = 5 * 8: 5 x 5 coarsest subbands
    y = y.float()
    out = BandletThreshold(factor=0.0)(y, 0.1)
    assert out.dtype == torch.float32 and out.device == y.device and out.shape == y.shape
    torch.testing.assert_close(out, y, rtol=0, atol=1e-6)


def test_threshold_is_scale_equivariant():
    # Hard thresholding at a multiple of sigma with a geometry chosen at that threshold:
    # f(a y, a sigma) = a f(y, sigma).
    _, y = _noisy_cartoons(2, 32, 0.1, seed=6)
    denoiser = BandletThreshold(max_square=8)
    torch.testing.assert_close(denoiser(4 * y, 0.4), 4 * denoiser(y, 0.1), rtol=0, atol=1e-10)


def test_cycle_spinning_averages_circular_shifts():
    _, y = _noisy_cartoons(2, 32, 0.1, seed=7)
    plain = BandletThreshold(max_square=8)
    expected = sum(
        torch.roll(plain(torch.roll(y, (i, j), dims=(-2, -1)), 0.1), (-i, -j), dims=(-2, -1))
        for i in range(2)
        for j in range(2)
    )
    spun = cycle_spun(plain, 2)(y, 0.1)
    torch.testing.assert_close(spun, expected / 4, rtol=0, atol=1e-12)
    assert (spun - plain(y, 0.1)).abs().max() > 1e-3  # the shifts change the result


def test_default_names():
    assert BandletThreshold().name == "bandlet_db4"
    assert BandletThreshold("sym8").name == "bandlet_sym8"
    assert BandletThreshold(name="b").name == "b"


@pytest.mark.parametrize("sigma", [0.0, -0.1, torch.tensor([0.1, 0.0])])
def test_bad_sigma_raises(sigma):
    with pytest.raises(ValueError, match="sigma"):
        BandletThreshold()(torch.zeros(2, 1, 32, 32), sigma)


@pytest.mark.parametrize(("kwargs", "size"), [({}, 25), ({"levels": 3}, 36), ({"levels": 6}, 32)])
def test_size_not_fitting_the_levels_raises(kwargs, size):
    with pytest.raises(ValueError, match="cannot take"):
        BandletThreshold(**kwargs)(torch.zeros(1, 1, size, size), 0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"wavelet": "bior2.2"}, "non-orthogonal"),
        ({"factor": -1.0}, "factor"),
        ({"n_directions": 0}, "directions"),
        ({"min_square": 0}, "min_square"),
        ({"min_square": 8, "max_square": 4}, "max_square"),
        ({"gamma": -1.0}, "gamma"),
        ({"levels": 0}, "levels"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BandletThreshold(**kwargs)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="B, 1, H, W"):
        BandletThreshold()(torch.zeros(2, 32, 32), 0.1)
    overlapping = np.array([[0, 0, 4, 4, 0], [2, 2, 4, 4, -1]])
    with pytest.raises(ValueError, match="overlap"):
        bandletize(np.zeros((8, 8)), overlapping, uniform_directions(4))
    with pytest.raises(ValueError, match="inside"):
        bandletize(np.zeros((8, 8)), np.array([[6, 0, 4, 4, 0]]), uniform_directions(4))
