"""The IoU explorer's pure functions, headless: numbers against torchvision and a pixel count, figures, controls."""

from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt
import pytest
import torch
import torchvision.ops as tv
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.patches import Rectangle

from course_utils.widgets import iou_explorer_figure, iou_explorer, iou_figure, iou_parts
from course_utils.widgets import iou as iou_widget

EDGE_PAIRS = {
    "worked example": ((0, 0, 10, 10), (1, 1, 11, 11)),
    "identical": ((2, 3, 12, 9), (2, 3, 12, 9)),
    "touching edge": ((0, 0, 5, 5), (5, 0, 10, 5)),
    "touching corner": ((0, 0, 5, 5), (5, 5, 9, 9)),
    "disjoint": ((0, 0, 2, 2), (5, 5, 8, 8)),
    "nested": ((0, 0, 10, 10), (2, 2, 6, 6)),
    "points": ((3, 3, 3, 3), (3, 3, 3, 3)),
    "line in box": ((4, 0, 4, 8), (0, 0, 10, 10)),
    "floats": ((0.5, 0.5, 2.5, 3.0), (1.0, 1.5, 3.5, 2.5)),
}


def torchvision_parts(a, b) -> tuple[float, float]:
    """(IoU, GIoU) from torchvision, with its 0/0 = NaN for zero unions / enclosing boxes replaced by 0."""
    a, b = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
    return float(torch.nan_to_num(tv.box_iou(a, b))), float(torch.nan_to_num(tv.generalized_box_iou(a, b)))


def raster_parts(a, b, size: int = 40) -> dict[str, int]:
    """Areas by counting pixels: an independent derivation for integer boxes inside [0, size]."""
    def mask(box):
        m = torch.zeros(size, size, dtype=torch.bool)
        x1, y1, x2, y2 = box
        m[y1:y2, x1:x2] = True
        return m

    ma, mb = mask(a), mask(b)
    enclosing = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
    return {"area_a": int(ma.sum()), "area_b": int(mb.sum()), "intersection": int((ma & mb).sum()),
            "union": int((ma | mb).sum()), "enclosing": int(mask(enclosing).sum())}


@pytest.mark.parametrize("name", EDGE_PAIRS)
def test_iou_parts_equals_torchvision_on_edge_cases(name):
    a, b = EDGE_PAIRS[name]
    parts = iou_parts(a, b)
    iou, giou = torchvision_parts(a, b)
    assert parts["iou"] == pytest.approx(iou, abs=1e-12)
    assert parts["giou"] == pytest.approx(giou, abs=1e-12)
    swapped = iou_parts(b, a)  # symmetric, except that A and B trade places
    assert (swapped.pop("area_a"), swapped.pop("area_b")) == (parts.pop("area_b"), parts.pop("area_a"))
    assert swapped == parts


def test_iou_parts_of_the_worked_example():
    parts = iou_parts((0, 0, 10, 10), (1, 1, 11, 11))
    # derived by hand: overlap 9 × 9, union 100 + 100 - 81, enclosing box 11 × 11
    assert parts["intersection"] == 81 and parts["union"] == 119 and parts["enclosing"] == 121
    assert parts["iou"] == pytest.approx(81 / 119, abs=1e-12)
    assert parts["giou"] == pytest.approx(81 / 119 - 2 / 121, abs=1e-12)


def test_zero_area_boxes_give_zero_not_nan():
    for a, b in (EDGE_PAIRS["points"], EDGE_PAIRS["line in box"]):
        parts = iou_parts(a, b)
        assert parts["iou"] == 0.0 and parts["giou"] == pytest.approx(torchvision_parts(a, b)[1])
        assert all(v == v for v in parts.values())  # no NaN anywhere


def test_iou_parts_on_random_float_boxes_against_torchvision():
    g = torch.Generator().manual_seed(0)
    corners = torch.rand(200, 2, 2, generator=g, dtype=torch.float64) * 50
    boxes = torch.cat([corners.min(1).values, corners.max(1).values], dim=1)
    expected_iou = torch.diagonal(tv.box_iou(boxes[:100], boxes[100:]))
    expected_giou = torch.diagonal(tv.generalized_box_iou(boxes[:100], boxes[100:]))
    n_disjoint = 0
    for a, b, iou, giou in zip(boxes[:100], boxes[100:], expected_iou, expected_giou):
        parts = iou_parts(a, b)
        assert parts["iou"] == pytest.approx(float(iou), abs=1e-12)
        assert parts["giou"] == pytest.approx(float(giou), abs=1e-12)
        assert parts["intersection"] == pytest.approx(parts["iou"] * parts["union"], abs=1e-9)
        n_disjoint += parts["iou"] == 0
    assert 0 < n_disjoint < 100  # the sample holds both overlapping and disjoint pairs


integer_boxes = st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 10), st.integers(0, 10)).map(
    lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3])
)


@settings(max_examples=100, deadline=None)
@given(integer_boxes, integer_boxes)
def test_areas_equal_a_pixel_count(a, b):
    parts = iou_parts(a, b)
    counted = raster_parts(a, b)
    for key, value in counted.items():
        assert parts[key] == value, key
    assert parts["iou"] == pytest.approx(counted["intersection"] / counted["union"] if counted["union"] else 0.0, abs=1e-12)
    if counted["enclosing"]:
        giou = parts["iou"] - (counted["enclosing"] - counted["union"]) / counted["enclosing"]
        assert parts["giou"] == pytest.approx(giou, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(integer_boxes, integer_boxes)
def test_giou_is_at_most_iou_and_in_range(a, b):
    parts = iou_parts(a, b)
    assert -1.0 <= parts["giou"] <= parts["iou"] + 1e-12 <= 1.0 + 1e-12
    assert parts["intersection"] <= min(parts["area_a"], parts["area_b"])
    assert max(parts["area_a"], parts["area_b"]) <= parts["union"] <= parts["enclosing"]


@pytest.mark.parametrize("box", [(0, 0, 10, 10), [0.0, 0.0, 10.0, 10.0], torch.tensor([0, 0, 10, 10]), torch.tensor([0.0, 0, 10, 10], requires_grad=True)])
def test_iou_parts_accepts_sequences_and_tensors(box):
    assert iou_parts(box, (1, 1, 11, 11))["iou"] == pytest.approx(81 / 119)


@pytest.mark.parametrize(
    "box_a, box_b, error, match",
    [
        ((0, 0, 10), (0, 0, 1, 1), ValueError, r"box_a must be 4 numbers .* got shape \(3,\)"),
        ((0, 0, 1, 1), [[0, 0, 1, 1]], ValueError, r"box_b must be 4 numbers"),
        ((0, 0, 1, 1), (5, 0, 1, 1), ValueError, r"box_b.*degenerate"),
        ((0, 0, float("nan"), 1), (0, 0, 1, 1), ValueError, r"box_a contains NaN"),
        ("a box", (0, 0, 1, 1), TypeError, r"box_a must be 4 numbers"),
        ((0, 0, 1, 1), None, TypeError, r"box_b must be 4 numbers"),
    ],
)
def test_bad_boxes_are_rejected_with_the_argument_named(box_a, box_b, error, match):
    with pytest.raises(error, match=match):
        iou_parts(box_a, box_b)
    with pytest.raises(error, match=match):
        iou_figure(box_a, box_b)


def _rectangles(ax) -> dict[str, Rectangle]:
    return {patch.get_label(): patch for patch in ax.patches if isinstance(patch, Rectangle)}


def test_iou_figure_draws_the_boxes_the_intersection_and_the_enclosing_box():
    fig = iou_figure((0, 0, 10, 10), (1, 1, 11, 11))
    ax = fig.axes[0]
    patches = _rectangles(ax)
    assert set(patches) == {"A", "B", "A ∩ B", "C (encloses both)"}
    assert (patches["A ∩ B"].get_xy(), patches["A ∩ B"].get_width(), patches["A ∩ B"].get_height()) == ((1, 1), 9, 9)
    assert (patches["C (encloses both)"].get_xy(), patches["C (encloses both)"].get_width()) == ((0, 0), 11)
    assert (patches["B"].get_xy(), patches["B"].get_width(), patches["B"].get_height()) == ((1, 1), 10, 10)
    assert "intersection 81 · union 119" in ax.get_title() and "IoU 0.681" in ax.get_title()
    assert f"GIoU {81 / 119 - 2 / 121:.3f}" in ax.get_title()
    bottom, top = ax.get_ylim()
    assert bottom > top  # y points down, as in an image
    x_low, x_high = ax.get_xlim()
    assert x_low < 0 and x_high > 11  # the default view fits the enclosing box with a margin


def test_iou_figure_without_overlap_has_no_intersection_patch_and_reports_zero():
    fig = iou_figure((0, 0, 10, 10), (30, 0, 40, 10), limits=(0, 50))
    ax = fig.axes[0]
    assert "A ∩ B" not in _rectangles(ax)
    assert "intersection 0 · union 200" in ax.get_title() and "IoU 0.000" in ax.get_title()
    assert f"GIoU {-(400 - 200) / 400:.3f}" in ax.get_title()
    assert ax.get_xlim() == (0, 50) and ax.get_ylim() == (50, 0)


def test_iou_figure_draws_on_a_given_axes():
    fig, axes = plt.subplots(1, 2)
    assert iou_figure((0, 0, 4, 4), (2, 2, 6, 6), ax=axes[1]) is fig
    assert not axes[0].patches and len(axes[1].patches) == 4


def test_explorer_figure_reads_xywh():
    fig = iou_explorer_figure(20, 20, 40, 40, 24, 24, 40, 40)  # the worked example, scaled by 4
    ax = fig.axes[0]
    assert "intersection 1296 · union 1904" in ax.get_title() and "IoU 0.681" in ax.get_title()
    assert _rectangles(ax)["B"].get_xy() == (24, 24) and _rectangles(ax)["B"].get_width() == 40
    assert ax.get_xlim() == (0, iou_widget.CANVAS)


def test_iou_explorer_controls_start_on_the_worked_example_and_stay_on_the_canvas():
    box = iou_explorer()
    assert isinstance(box, W.VBox)
    sliders = [child for child in box.children[1].children if isinstance(child, W.IntSlider)]
    assert [s.description for s in sliders] == ["A x", "A y", "A w", "A h", "B x", "B y", "B w", "B h"]
    a = [s.value for s in sliders[:4]]
    b = [s.value for s in sliders[4:]]
    a_xyxy = (a[0], a[1], a[0] + a[2], a[1] + a[3])
    b_xyxy = (b[0], b[1], b[0] + b[2], b[1] + b[3])
    assert iou_parts(a_xyxy, b_xyxy)["iou"] == pytest.approx(81 / 119)
    for position, size in ((sliders[0], sliders[2]), (sliders[1], sliders[3]), (sliders[4], sliders[6]), (sliders[5], sliders[7])):
        assert position.min == size.min == 0  # a zero width is allowed: IoU 0, not NaN
        assert position.max + size.max <= iou_widget.CANVAS


def test_explorer_figure_with_every_slider_at_zero_shows_zeros_not_nan():
    ax = iou_explorer_figure(0, 0, 0, 0, 0, 0, 0, 0).axes[0]
    assert "intersection 0 · union 0" in ax.get_title() and "IoU 0.000 · GIoU 0.000" in ax.get_title()
    assert "nan" not in ax.get_title().lower()
