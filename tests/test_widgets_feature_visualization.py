"""The activation-maximization explorer's pure functions, headless: unit counts from the model, the
picture equal to xai.activation_maximization's, bad input, the figure and the controls."""

from __future__ import annotations

import ipywidgets as W
import pytest
import torch
from matplotlib.figure import Figure

from course_utils import zoo
from course_utils.data import SHAPES
from course_utils.widgets import unit_count, unit_explorer, unit_figure, unit_picture
from course_utils.widgets import feature_visualization as fv_widget
from course_utils.xai import activation_maximization


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return zoo.load("shapes_cnn")


def test_unit_counts_are_the_classes_and_each_blocks_channels(model):
    x = torch.zeros(1, 3, 64, 64)
    assert unit_count(model, "class logit") == len(SHAPES) == model(x).shape[1]
    for target, layer in fv_widget.TARGETS.items():
        if layer is not None:
            assert unit_count(model, target) == model.features[: int(layer.split(".")[1]) + 1](x).shape[1]
    with pytest.raises(ValueError, match="target"):
        unit_count(model, "block 9")


def test_unit_picture_is_activation_maximization_of_that_unit(model):
    picture, history = unit_picture("block 2", 3, steps=12, jitter=2, blur_every=3, decay=1e-3, model=model)
    expected, expected_history = activation_maximization(model, "features.6", 3, steps=12, jitter=2, blur_every=3, decay=1e-3)
    torch.testing.assert_close(picture, expected[0])
    torch.testing.assert_close(history, expected_history)
    assert picture.shape == (3, 64, 64) and len(history) == 12
    with pytest.raises(ValueError, match="unit"):
        unit_picture("class logit", len(SHAPES), steps=2, model=model)
    with pytest.raises(ValueError, match="steps"):
        unit_picture("class logit", 0, steps=0, model=model)


def test_the_view_draws_a_figure_or_explains_a_missing_unit():
    fig = unit_figure("class logit", 1, steps=20)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert len(fig.axes[1].lines[0].get_xdata()) == 20 and "square" in fig.axes[0].get_title()
    note = fv_widget.explorer_view("class logit", 7, steps=25, jitter=4, blur_every=4, decay=1e-4)
    assert isinstance(note, W.HTML) and "5 units" in note.value


def test_the_explorer_has_its_controls_with_valid_defaults():
    box = unit_explorer()
    controls = {c.description: c for c in box.children[1].children}
    assert set(controls) == {"climb", "class/channel", "steps", "jitter", "blur every", "decay"}
    assert controls["climb"].value == "class logit" and controls["class/channel"].value < len(SHAPES)
    assert controls["class/channel"].max + 1 == max(unit_count(zoo.load("shapes_cnn"), t) for t in fv_widget.TARGETS)
