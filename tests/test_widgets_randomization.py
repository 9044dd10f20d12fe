"""The randomization explorer's pure functions, headless: maps against captum, agreement with the sanity check, figure, controls."""

from __future__ import annotations

import ipywidgets as W
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam, Saliency
from scipy.stats import spearmanr
from torch import nn

from course_utils import zoo
from course_utils.data import SceneClassification
from course_utils.widgets import explanation_maps, randomization_explorer, randomization_figure, randomized_explanations
from course_utils.widgets import randomization as randomization_widget
from course_utils.xai import randomization_layers, randomization_sanity_check

LAYERS = ["fc", "features.13", "features.12", "features.9", "features.8", "features.5", "features.4", "features.1", "features.0"]


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return zoo.load("shapes_cnn")


@pytest.fixture(scope="module")
def scenes() -> tuple[torch.Tensor, torch.Tensor]:
    dataset = randomization_widget.explorer_scenes()
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), torch.tensor(labels)


def hooks_left(model: nn.Module) -> int:
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(module, kind)) for module in model.modules() for kind in kinds)


def test_explorer_scenes_are_notebook_12s_first_shape_scenes(scenes):
    images, labels = scenes
    notebook = SceneClassification(200, seed=40)  # notebook 12's shape scenes; its sanity check uses the first 16
    assert len(images) == randomization_widget.NUM_SCENES == 16
    for i in (0, 7, 15):
        assert torch.equal(images[i], notebook[i][0]) and int(labels[i]) == notebook[i][1]


def test_the_layers_are_shapes_cnns_parameterised_layers_from_the_output_down(model):
    assert randomization_layers(model) == LAYERS


@pytest.mark.parametrize("index, target", [(0, None), (5, 2), (11, 4)])
def test_explanation_maps_equal_captum(model, scenes, index, target):
    images, labels = scenes
    image = images[index]
    target = int(labels[index]) if target is None else target
    maps = explanation_maps(model, image, target)
    assert set(maps) == set(randomization_widget.METHODS)
    expected_saliency = Saliency(model).attribute(image[None].clone().requires_grad_(), target=target).abs().sum(dim=1)[0]
    torch.testing.assert_close(maps["saliency"], expected_saliency, atol=1e-6, rtol=1e-5)
    layer_cam = LayerGradCam(model, model.features).attribute(image[None], target=target, relu_attributions=True)
    expected_cam = F.interpolate(layer_cam, size=(64, 64), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(maps["Grad-CAM"], expected_cam, atol=1e-6, rtol=1e-5)
    assert all(m.shape == (64, 64) and (m >= 0).all() and not m.requires_grad for m in maps.values())


def test_nothing_randomized_is_the_original(model, scenes):
    images, labels = scenes
    result = randomized_explanations(model, images[2], int(labels[2]), 0)
    assert result["layers"] == [] and result["correlation"] == {"saliency": pytest.approx(1.0), "Grad-CAM": pytest.approx(1.0)}
    for method in randomization_widget.METHODS:
        torch.testing.assert_close(result["randomized"][method], result["original"][method])


def test_correlations_are_scipys_spearman(model, scenes):
    images, labels = scenes
    for count in (1, 4, 9):
        result = randomized_explanations(model, images[3], int(labels[3]), count)
        assert result["layers"] == LAYERS[:count]
        for method in randomization_widget.METHODS:
            original, randomized = (result[key][method].flatten().numpy() for key in ("original", "randomized"))
            expected = 0.0 if randomized.std() == 0 else spearmanr(original, randomized).statistic
            assert result["correlation"][method] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("method", ["saliency", "Grad-CAM"])
def test_mean_over_the_scenes_is_the_sanity_check(model, scenes, method):
    """The widget, one scene at a time, gives the notebook's table: randomization_sanity_check on the 16 scenes."""
    images, labels = scenes

    def explain(m, x, t):
        return torch.stack([explanation_maps(m, image, int(target))[method] for image, target in zip(x, t)])

    table = randomization_sanity_check(model, images, labels, explain, seed=0)
    for count, (layer, score) in enumerate(table, 1):
        widget = [randomized_explanations(model, image, int(target), count)["correlation"][method] for image, target in zip(images, labels)]
        assert layer == LAYERS[count - 1] and sum(widget) / len(widget) == pytest.approx(score, abs=1e-9)


def test_randomized_explanations_leave_the_model_untouched(model, scenes):
    images, labels = scenes
    before = {name: p.clone() for name, p in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    first = randomized_explanations(model, images[1], int(labels[1]), 5)
    assert torch.equal(rng, torch.random.get_rng_state())
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())
    assert not model.training and hooks_left(model) == 0 and all(p.grad is None for p in model.parameters())
    again = randomized_explanations(model, images[1], int(labels[1]), 5)
    assert first["correlation"] == again["correlation"]  # seeded: the same random layers every time
    assert randomized_explanations(model, images[1], int(labels[1]), 5, seed=1)["correlation"] != first["correlation"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(count=10), ValueError, r"count must be at most the number of layers with parameters \(9\)"),
        (dict(count=-1), ValueError, "count must be non-negative"),
        (dict(count=True), TypeError, "count"),
        (dict(image=torch.rand(1, 3, 64, 64)), ValueError, "image must have 3 dimensions"),
        (dict(target=5), ValueError, r"target must be in \[0, 5\)"),
    ],
)
def test_randomized_explanations_name_the_bad_argument(model, scenes, kwargs, error, match):
    arguments = dict(image=scenes[0][0], target=0, count=1) | kwargs
    with pytest.raises(error, match=match):
        randomized_explanations(model, **arguments)


def test_randomization_figure_shows_the_scene_and_both_maps_twice(model, scenes):
    fig = randomization_figure(3, 2, model=model)
    titles = [ax.get_title() for ax in fig.axes]
    result = randomized_explanations(model, scenes[0][3], int(scenes[1][3]), 2)
    assert titles[0] == f"scene 3: a {randomization_widget.SHAPES[int(scenes[1][3])]}"
    assert titles[1] == "saliency, trained" and titles[3] == "Grad-CAM, trained"
    assert titles[2] == f"saliency, 2 layers random\nrank correlation {result['correlation']['saliency']:.2f}"
    assert titles[4].startswith("Grad-CAM, 2 layers random\nrank correlation")
    assert fig.get_suptitle() == "randomized from the output down to features.13 (2 of 9 layers)"
    assert randomization_figure(0, 0, model=model).get_suptitle() == "nothing randomized yet (0 of 9 layers)"
    assert randomization_figure(0, 1, model=model).axes[2].get_title().startswith("saliency, 1 layer random")


def test_randomization_figure_says_when_a_map_is_all_zero(model, scenes):
    images, labels = scenes
    zero = [i for i in range(len(images)) if randomized_explanations(model, images[i], int(labels[i]), 9)["randomized"]["Grad-CAM"].max() == 0]
    assert zero, "some scene's Grad-CAM of the fully random model has no positive evidence"
    ax = randomization_figure(zero[0], 9, model=model).axes[4]
    assert any("all zero" in text.get_text() for text in ax.texts)
    assert not any("all zero" in text.get_text() for text in randomization_figure(zero[0], 0, model=model).axes[4].texts)


@pytest.mark.parametrize("kwargs, error", [(dict(index=16), IndexError), (dict(index=-1), ValueError), (dict(count=12), ValueError)])
def test_randomization_figure_rejects_bad_controls(model, kwargs, error):
    with pytest.raises(error):
        randomization_figure(**(dict(index=0, count=1) | kwargs), model=model)


def test_randomization_explorer_controls(model):
    box = randomization_explorer(model)
    assert isinstance(box, W.VBox)
    controls = {c.description: c for c in box.children[1].children}
    assert (controls["scene"].min, controls["scene"].max) == (0, 15)
    assert (controls["random layers"].min, controls["random layers"].max, controls["random layers"].value) == (0, 9, 1)


def test_randomization_explorer_uses_the_zoo_model_by_default(model):
    randomization_widget.shapes_model.cache_clear()
    loaded = randomization_widget.shapes_model()
    assert loaded is randomization_widget.shapes_model()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert isinstance(randomization_explorer(), W.VBox)
