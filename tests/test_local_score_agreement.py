"""The optimality benchmark's comparison of a network with the local score machines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.local_score import PATIENCE, local_score_agreement
from models.local_score import LocalScoreMachine
from synthetic import get_family


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    family = get_family("gaussian", size=8)
    return family.images("A", 6).double(), family.images("test", 5).double()


def test_an_els_network_is_recovered_with_r2_one_and_the_search_stops_early(images):
    train, test = images
    network = LocalScoreMachine(train, patch=3)
    out = local_score_agreement(
        network, train, train, test[:3], test[3:], [0.1, 0.3], seed=0, progress=False
    )
    assert out["patch"]["els"] == [3, 3]
    np.testing.assert_allclose(out["r2"]["els"], 1, atol=1e-9)
    np.testing.assert_allclose(out["r2_median"]["els"], 1, atol=1e-9)
    np.testing.assert_allclose(out["residual_r2_median"]["els"], 1, atol=1e-9)
    assert all(r < 1 - 1e-3 for r in out["residual_r2_median"]["memorizer"])
    # Candidates after the best are tried only until PATIENCE in a row fall short.
    for tried in out["calibration"]["els"]:
        assert list(tried) == [str(p) for p in out["candidates"][: 2 + PATIENCE]]
    assert all(r < 1 - 1e-3 for r in out["r2"]["memorizer"] + out["r2"]["ls"])
    assert out["n_images"] == 3 and out["n_calibration_images"] == 2


def test_the_candidates_respect_the_image_size(images):
    train, test = images
    out = local_score_agreement(
        LocalScoreMachine(train, patch=1),
        train,
        train,
        test[:2],
        test[2:4],
        [0.1],
        seed=0,
        progress=False,
    )
    assert max(out["candidates"]) <= 2 * 8 - 1


def test_an_identity_network_leaves_the_correction_r2_undefined_not_failed(images):
    """A network whose correction f(y) - y is exactly 0 has no correction r² (NaN)."""
    train, test = images
    out = local_score_agreement(
        lambda y, sigma: y.clone(),
        train,
        train,
        test[:2],
        test[2:4],
        [0.01],
        seed=0,
        progress=False,
    )
    assert np.isnan(out["residual_r2_median"]["els"][0])
    assert np.isfinite(out["r2_median"]["els"][0])
