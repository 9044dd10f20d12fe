"""The occlusion explorer's pure functions, headless: window positions and forward-pass counts against
captum, the map against captum's Occlusion on the zoo model, bad input, the figure and the controls."""

from __future__ import annotations

import math

import ipywidgets as W
import pytest
import torch
from captum.attr import Occlusion
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.patches import Rectangle
from torch import nn

from course_utils import zoo
from course_utils.data import SHAPES, SceneClassification
from course_utils.widgets import forward_passes, occlusion_explorer, occlusion_figure, occlusion_map, window_starts
from course_utils.widgets import occlusion as occlusion_widget


class Counter(nn.Module):
    """Counts the calls and the images that go through ``model``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.calls, self.images = model, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.images += len(x)
        return self.model(x)


def captum_calls(size: int, window: int, stride: int) -> int:
    """Forward calls captum's Occlusion makes on a vector of ``size`` features, one perturbation per call."""
    model = Counter(nn.Linear(size, 2))
    Occlusion(model).attribute(torch.rand(1, size), sliding_window_shapes=(window,), strides=(stride,), target=0, perturbations_per_eval=1)
    return model.calls


@st.composite
def geometry(draw, max_size: int = 40):
    size = draw(st.integers(1, max_size))
    window = draw(st.integers(1, size))
    return size, window, draw(st.integers(1, window))


@settings(max_examples=50, deadline=None)
@given(geometry())
def test_window_starts_are_captums_positions(params):
    size, window, stride = params
    starts = window_starts(size, window, stride)
    assert len(starts) + 1 == captum_calls(size, window, stride)  # captum also runs the clean input once
    assert len(starts) == math.ceil((size - window) / stride) + 1


@settings(max_examples=100, deadline=None)
@given(geometry(max_size=200))
def test_window_starts_cover_every_pixel_with_as_few_windows_as_possible(params):
    size, window, stride = params
    starts = window_starts(size, window, stride)
    assert starts[0] == 0 and all(b - a == stride for a, b in zip(starts, starts[1:]))
    covered = torch.zeros(size, dtype=torch.bool)
    for start in starts:
        covered[start : start + window] = True
    assert bool(covered.all())
    assert starts[-1] < size and starts[-1] + window >= size  # the last window reaches the border, possibly cut
    if len(starts) > 1:
        assert starts[-2] + window < size  # one window fewer would leave the last pixels uncovered


@pytest.mark.parametrize("window, stride, expected", [(64, 1, 2), (8, 8, 65), (8, 4, 226), (16, 8, 50), (4, 2, 962), (6, 4, 257)])
def test_forward_passes_of_a_64_pixel_scene(window, stride, expected):
    # expected: (ceil((64 - window) / stride) + 1) ** 2 + 1, e.g. window 6, stride 4: ceil(58 / 4) + 1 = 16 positions per side
    assert forward_passes(64, window, stride) == expected


@pytest.mark.parametrize("size, window, stride", [(9, 3, 2), (10, 4, 4), (7, 7, 3), (8, 1, 1)])
def test_forward_passes_counts_the_images_the_model_sees(size, window, stride):
    for per_eval in (1, 5):
        model = Counter(nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * size * size, 4)))
        Occlusion(model).attribute(
            torch.rand(1, 3, size, size), sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
            target=1, perturbations_per_eval=per_eval,
        )
        assert model.images == forward_passes(size, window, stride)


@pytest.fixture(scope="module")
def shapes_model():
    return zoo.load("shapes_cnn")


@pytest.mark.parametrize("index, window, stride, baseline", [(0, 8, 8, 0.0), (5, 12, 6, 0.5), (11, 16, 16, 1.0)])
def test_occlusion_map_equals_captum_on_the_zoo_model(shapes_model, index, window, stride, baseline):
    image, label = SceneClassification(occlusion_widget.NUM_SCENES, seed=occlusion_widget.SCENE_SEED)[index]
    ours = occlusion_map(shapes_model, image, label, window, stride, baseline)
    theirs = Occlusion(shapes_model).attribute(
        image[None], sliding_window_shapes=(3, window, window), strides=(3, stride, stride), target=label, baselines=baseline,
        perturbations_per_eval=16,
    )
    assert ours.shape == (64, 64)
    assert torch.allclose(theirs[0], ours.expand(3, -1, -1), atol=1e-4, rtol=1e-4)  # the same map in every channel


def test_occlusion_map_of_a_linear_model_is_the_mean_hidden_contribution():
    """Derived by hand: for f(x) = w·x, hiding a window removes its share w·x; 2×2 windows, stride 2 tile a 4×4 image."""
    weight = torch.arange(16.0).reshape(1, 4, 4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(weight.reshape(1, 16))
    image = torch.ones(1, 4, 4)
    drop = occlusion_map(model, image, 0, window=2, stride=2)
    block_sums = weight[0].reshape(2, 2, 2, 2).sum(dim=(1, 3))  # the sum of w over each 2×2 block
    assert torch.equal(drop, block_sums.repeat_interleave(2, 0).repeat_interleave(2, 1))
    grey = occlusion_map(model, image, 0, window=2, stride=2, baseline=0.5)
    assert torch.allclose(grey, drop / 2)  # a grey patch removes half of each pixel's value


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: window_starts(10, 11, 1), ValueError, r"window \(11\) must not be larger than the image side \(10\)"),
        (lambda: window_starts(10, 3, 4), ValueError, r"stride \(4\) must not exceed window \(3\)"),
        (lambda: window_starts(10, 0, 1), ValueError, "window must be positive"),
        (lambda: window_starts(10, 3, 1.5), TypeError, "stride must be an int"),
        (lambda: forward_passes(0, 3, 1), ValueError, "size must be positive"),
        (lambda: occlusion_map(nn.Identity(), torch.rand(1, 4, 4), 0, 2, 2, baseline=2.0), ValueError, r"baseline must be in \[0, 1\]"),
        (lambda: occlusion_map(nn.Identity(), torch.rand(4, 4), 0, 2, 2), ValueError, "image must have 3 dimensions"),
        (lambda: occlusion_map(nn.Identity(), torch.rand(1, 4, 6), 0, 5, 1), ValueError, r"window \(5\) must not be larger"),
    ],
)
def test_bad_input_is_rejected_with_the_argument_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_figure_shows_the_scene_one_window_to_scale_the_map_and_the_count():
    fig = occlusion_figure(3, window=12, stride=6, baseline=0.5)
    scene_ax, map_ax, colorbar_ax = fig.axes
    label = SceneClassification(occlusion_widget.NUM_SCENES, seed=occlusion_widget.SCENE_SEED)[3][1]
    assert scene_ax.get_title().startswith(f"scene 3: {SHAPES[label]} (p = ")
    window = [p for p in scene_ax.patches if isinstance(p, Rectangle) and p.get_linestyle() == "--"]
    assert len(window) == 1 and (window[0].get_width(), window[0].get_height()) == (12, 12)
    assert tuple(window[0].get_facecolor()[:3]) == (0.5, 0.5, 0.5)
    assert "10 × 10 positions + 1 clean image = 101 forward passes" in map_ax.get_title()  # ceil(52 / 6) + 1 = 10
    heat = map_ax.get_images()[-1]
    low, high = heat.get_clim()
    assert high > 0 and low == -high  # a symmetric scale: white means "no change"
    assert colorbar_ax.get_ylabel() == f"drop of the {SHAPES[label]} logit"


def test_explorer_view_draws_valid_settings_and_explains_a_stride_larger_than_the_window():
    fig = occlusion_widget.explorer_view(1, window=16, stride=16, baseline=0.25)
    assert "4 × 4 positions + 1 clean image = 17 forward passes" in fig.axes[1].get_title()
    note = occlusion_widget.explorer_view(0, window=4, stride=8, baseline=0.0)
    assert isinstance(note, W.HTML) and "stride ≤ the window" in note.value


def test_the_explorer_has_its_four_controls_with_valid_defaults():
    box = occlusion_explorer()
    controls = {c.description: c for c in box.children[1].children}
    assert set(controls) == {"scene", "window", "stride", "patch value"}
    assert controls["scene"].max == occlusion_widget.NUM_SCENES - 1
    assert controls["stride"].value <= controls["window"].value
    for window in controls["window"].options:  # every window has a stride that works and fits a 64-pixel scene
        assert any(stride <= window for stride in controls["stride"].options) and window <= 64
