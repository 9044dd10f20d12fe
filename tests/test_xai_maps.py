"""attribution_map and mass_fraction: the one channel convention and the one mass-share score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils.xai import attribution_map, mass_fraction


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_attribution_map_sums_absolute_values_over_channels(n, c, h, w, seed):
    attribution = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    expected = np.abs(attribution.numpy()).sum(axis=1)
    result = attribution_map(attribution)
    assert result.shape == (n, h, w)
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-12)


def test_attribution_map_opposite_signs_do_not_cancel():
    attribution = torch.tensor([[[[1.0]], [[-1.0]]]])
    assert attribution_map(attribution).item() == 2.0


def test_attribution_map_bad_input():
    with pytest.raises(ValueError, match="attribution"):
        attribution_map(torch.zeros(3, 4, 4))
    with pytest.raises(TypeError, match="attribution"):
        attribution_map(torch.zeros(1, 3, 4, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="attribution"):
        attribution_map([[1.0]])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 8), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_mass_fraction_equals_a_numpy_reference(n, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    heatmaps = torch.rand(n, h, w, generator=g, dtype=torch.float64)
    own = torch.rand(n, h, w, generator=g) < 0.3
    other = ~own & (torch.rand(n, h, w, generator=g) < 0.5)
    hm, o, ot = heatmaps.numpy(), own.numpy(), other.numpy()
    expected = (hm * o).sum((1, 2)) / hm.sum((1, 2))
    np.testing.assert_allclose(mass_fraction(heatmaps, own).numpy(), expected, rtol=1e-12)
    on_own, on_other = (hm * o).sum((1, 2)), (hm * ot).sum((1, 2))
    both = on_own + on_other
    expected = np.divide(on_own, both, out=np.zeros_like(both), where=both > 0)
    np.testing.assert_allclose(mass_fraction(heatmaps, own, within=own | other).numpy(), expected, rtol=1e-12)


def test_mass_fraction_cases():
    heatmaps = torch.tensor([[[1.0, 3.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    region = torch.tensor([[[True, False], [False, False]]] * 2)
    assert mass_fraction(heatmaps, region).tolist() == [0.25, 0.0]  # a map without mass scores 0
    assert mass_fraction(heatmaps[:, None], region).tolist() == [0.25, 0.0]  # [N, 1, H, W] accepted
    assert mass_fraction(heatmaps, torch.ones_like(region)).tolist() == [1.0, 0.0]


def test_mass_fraction_bad_input():
    heatmaps, region = torch.rand(2, 4, 4), torch.ones(2, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="non-negative"):
        mass_fraction(-heatmaps, region)
    with pytest.raises(TypeError, match="regions"):
        mass_fraction(heatmaps, region.float())
    with pytest.raises(ValueError, match="regions"):
        mass_fraction(heatmaps, region[:1])
    with pytest.raises(ValueError, match="inside within"):
        mass_fraction(heatmaps, region, within=torch.zeros_like(region))
    with pytest.raises(ValueError, match="heatmaps"):
        mass_fraction(torch.rand(4, 4), region)
