"""The CAM explorer's pure functions, headless: maps against pytorch-grad-cam, the CAM = Grad-CAM identity, figures, controls."""

from __future__ import annotations

import copy

import ipywidgets as W
import matplotlib.pyplot as plt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.image import AxesImage
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from course_utils import zoo
from course_utils.data import SHAPES, make_scene
from course_utils.xai import grad_cam
from course_utils.widgets import (
    cam_explorer,
    cam_figure,
    class_heatmap,
    class_probabilities,
    conv_blocks,
    explorer_scene,
    layer_map,
)
from course_utils.widgets import cam as cam_widget

BLOCKS = ["features.2", "features.6", "features.10", "features.14"]


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return zoo.load("shapes_cnn")


def hooks_left(model: nn.Module) -> int:
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(module, kind)) for module in model.modules() for kind in kinds)


def library_map(model: nn.Module, method: str, layer: str, image: torch.Tensor, target: int) -> torch.Tensor:
    """pytorch-grad-cam's map, on a copy (it calls backward(), which fills the parameters' .grad)."""
    model = copy.deepcopy(model)
    library = {"Grad-CAM": GradCAM, "Grad-CAM++": GradCAMPlusPlus}[method]
    with library(model, [model.get_submodule(layer)]) as explainer:
        return torch.from_numpy(explainer(image[None], [ClassifierOutputTarget(target)]))[0]


# --------------------------------------------------------------------------- scenes, blocks, probabilities


@pytest.mark.parametrize("index", [0, 5, 117])
def test_explorer_scene_is_the_seeded_scene(index):
    image, target = explorer_scene(index)
    expected_image, expected_target = make_scene(index, image_size=64, classes=SHAPES, num_objects=(1, 3), object_size=(20, 30))
    assert torch.equal(image, expected_image) and torch.equal(target["boxes"], expected_target["boxes"])
    assert image.shape == (3, 64, 64) and 1 <= len(target["labels"]) <= 3


@pytest.mark.parametrize("index, error", [(-1, ValueError), (True, TypeError), (2.0, TypeError)])
def test_explorer_scene_rejects_bad_indices(index, error):
    with pytest.raises(error, match="index"):
        explorer_scene(index)


def test_conv_blocks_are_the_relus_with_resolution_halving_from_64_to_8(model):
    blocks = conv_blocks(model)
    assert list(blocks) == ["block 1", "block 2", "block 3", "block 4"] and list(blocks.values()) == BLOCKS
    sizes = {}

    def record_size(name):
        def hook(module, inputs, output):
            sizes[name] = tuple(output.shape[2:])
        return hook

    handles = [model.get_submodule(name).register_forward_hook(record_size(name)) for name in BLOCKS]
    with torch.no_grad():
        pooled = model.pool(model.features(torch.rand(1, 3, 64, 64)))
    for handle in handles:
        handle.remove()
    assert [sizes[name] for name in BLOCKS] == [(64, 64), (32, 32), (16, 16), (8, 8)]
    assert all(isinstance(model.get_submodule(name), nn.ReLU) for name in BLOCKS)
    assert pooled.shape == (1, 64, 1, 1)  # the last block is the one that is globally pooled


def test_conv_blocks_rejects_models_without_blocks():
    with pytest.raises(TypeError, match="features"):
        conv_blocks(nn.Linear(3, 2))
    no_relu = nn.Module()
    no_relu.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh())
    with pytest.raises(ValueError, match="no ReLU"):
        conv_blocks(no_relu)


@pytest.mark.parametrize("index", [0, 3, 42])
def test_class_probabilities_are_the_softmax_of_the_logits(model, index):
    image, _ = explorer_scene(index)
    probabilities = class_probabilities(model, image)
    with torch.no_grad():
        logits = model(image[None])[0]
    assert probabilities.shape == (len(SHAPES),)
    torch.testing.assert_close(probabilities, torch.exp(logits - torch.logsumexp(logits, 0)))
    assert probabilities.sum().item() == pytest.approx(1.0, abs=1e-6) and not probabilities.requires_grad


def test_class_probabilities_rejects_a_batch(model):
    with pytest.raises(ValueError, match="image must have 3 dimensions"):
        class_probabilities(model, torch.rand(1, 3, 64, 64))


# --------------------------------------------------------------------------- maps


@pytest.mark.parametrize("method", ["Grad-CAM", "Grad-CAM++"])
@pytest.mark.parametrize("layer", BLOCKS)
def test_class_heatmap_equals_pytorch_grad_cam(model, method, layer):
    for index, target in [(1, 0), (7, 2), (12, 4)]:
        image, _ = explorer_scene(index)
        heatmap = class_heatmap(model, image, target, layer, method)
        assert heatmap.shape == (64, 64) and heatmap.min() >= 0 and heatmap.max() <= 1
        torch.testing.assert_close(heatmap, library_map(model, method, layer, image, target), atol=2e-5, rtol=0)


@pytest.mark.parametrize("index", [0, 30])
def test_cam_is_grad_cam_times_h_w_at_the_pooled_layer(model, index):
    image, _ = explorer_scene(index)
    for target in range(len(SHAPES)):
        cam_map = layer_map(model, image, target, "features.14", "CAM")
        grad_cam_map = layer_map(model, image, target, "features.14", "Grad-CAM")
        assert cam_map.shape == grad_cam_map.shape == (1, 1, 8, 8)
        torch.testing.assert_close(cam_map, grad_cam_map * 64, atol=1e-4, rtol=1e-4)
        # the raw CAM: the fc row applied at every position of the pooled features
        with torch.no_grad():
            features = model.features(image[None])[0]
        raw = torch.einsum("c,chw->hw", model.fc.weight[target], features)
        torch.testing.assert_close(cam_map[0, 0], raw.clamp(min=0), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", BLOCKS[:3])
def test_cam_exists_only_at_the_pooled_layer(model, layer):
    image, _ = explorer_scene(0)
    with pytest.raises(ValueError, match="layer: CAM exists only at the globally pooled layer 'features.14'"):
        layer_map(model, image, 0, layer, "CAM")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(method="Score-CAM"), ValueError, "method must be one of"),
        (dict(layer="features.3"), ValueError, "layer must be one of"),
        (dict(layer="fc"), ValueError, "layer must be one of"),
        (dict(target=5), ValueError, r"target must be in \[0, 5\)"),
        (dict(target=1.0), TypeError, "target must be an int"),
        (dict(image=torch.rand(3, 64)), ValueError, "image must have 3 dimensions"),
        (dict(image=torch.zeros(3, 64, 64, dtype=torch.uint8)), TypeError, "image must have a floating-point dtype"),
    ],
)
def test_layer_map_names_the_bad_argument(model, kwargs, error, match):
    arguments = dict(image=explorer_scene(0)[0], target=0, layer="features.14", method="Grad-CAM") | kwargs
    with pytest.raises(error, match=match):
        layer_map(model, **arguments)


@settings(max_examples=25, deadline=None)
@given(
    index=st.integers(0, 200),
    target=st.integers(0, len(SHAPES) - 1),
    layer=st.sampled_from(BLOCKS),
    method=st.sampled_from(cam_widget.METHODS),
)
def test_heatmaps_are_scaled_maps_and_leave_the_model_untouched(model, index, target, layer, method):
    if method == "CAM":
        layer = BLOCKS[-1]
    image, _ = explorer_scene(index)
    before = {name: p.clone() for name, p in model.state_dict().items()}
    raw = layer_map(model, image, target, layer, method)
    heatmap = class_heatmap(model, image, target, layer, method)
    size = 64 // 2 ** BLOCKS.index(layer)
    assert raw.shape == (1, 1, size, size) and (raw >= 0).all()
    assert heatmap.shape == (64, 64) and heatmap.min() >= 0 and heatmap.max() < 1
    if raw.max() > 0:  # min-max scaled: the strongest pixel is (almost) 1
        assert heatmap.max() > 0.99
    assert not model.training and hooks_left(model) == 0
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())


# --------------------------------------------------------------------------- figure and widget


def test_cam_figure_shows_scene_map_and_probabilities(model):
    fig = cam_figure(3, "square", "features.6", "Grad-CAM", model=model)
    ax_scene, ax_map, ax_probs = fig.axes
    assert ax_scene.get_title() == "scene 3"
    assert ax_map.get_title() == "Grad-CAM of 'square' at features.6 (32×32)"
    assert len([im for im in ax_map.get_images() if isinstance(im, AxesImage)]) == 2  # image + heatmap
    bars = ax_probs.patches
    probabilities = class_probabilities(model, explorer_scene(3)[0])
    assert [bar.get_width() for bar in bars] == pytest.approx(probabilities.tolist())
    orange = [k for k, bar in enumerate(bars) if bar.get_facecolor() == plt.matplotlib.colors.to_rgba("tab:orange")]
    assert orange == [SHAPES.index("square")]


def test_cam_figure_explains_why_cam_is_missing_at_an_early_layer(model):
    fig = cam_figure(0, "circle", "features.2", "CAM", model=model)
    ax_map = fig.axes[1]
    assert ax_map.get_title() == "CAM: not defined at features.2"
    assert len(ax_map.get_images()) == 1  # the scene only, no heatmap
    assert any("globally pooled (features.14)" in text.get_text().replace("\n", " ") for text in ax_map.texts)


def test_cam_figure_says_when_a_map_is_all_zero(model):
    # the first (scene, class) whose block-4 Grad-CAM is all zero: no positive evidence anywhere
    images = torch.stack([explorer_scene(index)[0] for index in range(40)])
    maxima = torch.stack([grad_cam(model, "features.14", images, target).amax(dim=(1, 2, 3)) for target in range(len(SHAPES))], 1)
    zeros = (maxima == 0).nonzero()
    assert len(zeros) > 0, "some class has no evidence in some scene"
    index, target = zeros[0].tolist()
    title = cam_figure(index, SHAPES[target], "features.14", "Grad-CAM", model=model).axes[1].get_title()
    assert title.endswith("— all zero: no evidence for it")
    index, target = (maxima > 0).nonzero()[0].tolist()
    assert "all zero" not in cam_figure(index, SHAPES[target], "features.14", "Grad-CAM", model=model).axes[1].get_title()


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(class_name="hexagon"), "class_name must be one of"), (dict(method="cam"), "method must be one of"),
     (dict(layer="block 1"), "layer must be one of"), (dict(index=-3), "index must be non-negative")],
)
def test_cam_figure_names_the_bad_argument(model, kwargs, match):
    arguments = dict(index=0, class_name="circle", layer="features.14", method="Grad-CAM") | kwargs
    with pytest.raises(ValueError, match=match):
        cam_figure(model=model, **arguments)


def test_cam_explorer_controls(model):
    box = cam_explorer(model)
    assert isinstance(box, W.VBox)
    controls = {getattr(c, "description", ""): c for c in box.children[1].children}
    assert isinstance(controls["scene"], W.IntSlider) and (controls["scene"].min, controls["scene"].max) == (0, cam_widget.SCENE_COUNT)
    assert tuple(controls["class"].options) == SHAPES
    layer = controls["layer"]
    assert [value for _, value in layer.options] == BLOCKS and layer.value == "features.14"
    assert [label for label, _ in layer.options][0] == "block 1 (features.2)"
    methods = [c for c in box.children[1].children if isinstance(c, W.ToggleButtons)][0]
    assert tuple(methods.options) == cam_widget.METHODS and methods.value == "Grad-CAM"


def test_cam_explorer_uses_the_zoo_model_by_default(model):
    cam_widget.shapes_model.cache_clear()
    loaded = cam_widget.shapes_model()
    assert loaded is cam_widget.shapes_model()  # loaded once
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert isinstance(cam_explorer(), W.VBox)
