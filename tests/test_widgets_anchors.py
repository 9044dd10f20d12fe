"""course_utils.widgets.anchors: the explorer's pure functions, cross-checked with torchvision, and its thin widget layer."""

from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.patches import Rectangle
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from course_utils.data import ALL_CLASSES, make_scene
from course_utils.widgets import anchor_explorer, anchor_figure, assign_anchors, match_counts
from course_utils.widgets.anchors import explorer_view


def torchvision_assignment(boxes, image_size, stride, sizes, ratios, high, low, allow_low_quality):
    """The same pipeline with torchvision's AnchorGenerator, box_iou and Matcher."""
    generator = AnchorGenerator(sizes=(tuple(sizes),), aspect_ratios=(tuple(ratios),))
    images = ImageList(torch.zeros(1, 3, image_size, image_size), [(image_size, image_size)])
    feature = torch.zeros(1, 1, image_size // stride, image_size // stride)
    anchors = generator(images, [feature])[0]
    iou = torchvision.ops.box_iou(boxes, anchors)
    return anchors, Matcher(high, low, allow_low_quality)(iou), iou.max(dim=1).values


@pytest.mark.parametrize("seed", [0, 3, 7])
@pytest.mark.parametrize(
    "stride, sizes, ratios, high, low, allow_low_quality",
    [
        (16, (16, 32, 64), (0.5, 1.0, 2.0), 0.7, 0.3, True),
        (8, (16, 32, 64), (0.5, 1.0, 2.0), 0.5, 0.4, False),
        (4, (24,), (1.0,), 0.5, 0.5, True),
        (32, (8, 96), (0.25, 4.0), 0.6, 0.1, False),
    ],
)
def test_assign_anchors_equals_torchvision(seed, stride, sizes, ratios, high, low, allow_low_quality):
    _, target = make_scene(seed, classes=ALL_CLASSES)
    boxes = target["boxes"]
    result = assign_anchors(boxes, 128, stride, sizes, ratios, high, low, allow_low_quality)
    anchors, matches, best_iou = torchvision_assignment(boxes, 128, stride, sizes, ratios, high, low, allow_low_quality)
    assert torch.equal(result["anchors"], anchors)
    assert torch.equal(result["matches"], matches)
    torch.testing.assert_close(result["best_iou"], best_iou)


def test_an_image_without_objects_makes_every_anchor_background():
    result = assign_anchors(torch.zeros(0, 4), 64, 16, (16, 32), (1.0,), 0.7, 0.3)
    assert result["anchors"].shape == (4 * 4 * 2, 4)
    assert result["matches"].dtype == torch.int64 and bool((result["matches"] == -1).all())
    assert result["best_iou"].shape == (0,)
    assert match_counts(result["matches"]) == {"positive": 0, "ignored": 0, "negative": 32}


def test_match_counts_on_a_hand_made_example():
    matches = torch.tensor([0, 1, -1, -2, -1, 2, -1, 0])  # GT indices 0, 1, 2, 0 → 4 positive
    assert match_counts(matches) == {"positive": 4, "ignored": 1, "negative": 3}
    assert match_counts(torch.zeros(0, dtype=torch.int64)) == {"positive": 0, "ignored": 0, "negative": 0}


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 500),
    stride=st.sampled_from([4, 8, 16, 32]),
    sizes=st.lists(st.sampled_from([8, 16, 24, 32, 48, 64, 96]), min_size=1, max_size=4, unique=True),
    ratios=st.lists(st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]), min_size=1, max_size=3, unique=True),
    t1=st.floats(0, 1),
    t2=st.floats(0, 1),
    allow_low_quality=st.booleans(),
)
def test_assign_anchors_properties(seed, stride, sizes, ratios, t1, t2, allow_low_quality):
    low, high = sorted((t1, t2))
    _, target = make_scene(seed, image_size=64, object_size=(8, 32), classes=ALL_CLASSES)
    boxes = target["boxes"]
    result = assign_anchors(boxes, 64, stride, sizes, ratios, high, low, allow_low_quality)
    anchors, matches = result["anchors"], result["matches"]
    assert anchors.shape == ((64 // stride) ** 2 * len(sizes) * len(ratios), 4)
    assert sum(match_counts(matches).values()) == len(anchors)
    assert bool(((matches >= -2) & (matches < len(boxes))).all())
    iou = torchvision.ops.box_iou(boxes, anchors)
    positive = matches >= 0
    iou_with_match = iou[matches[positive], positive.nonzero()[:, 0]]
    if allow_low_quality:
        # a positive clears the high threshold or is the best anchor of some GT (then matched to its own best GT)
        is_best_of_a_gt = (iou == result["best_iou"][:, None]).any(dim=0)
        assert bool(((iou_with_match >= high) | is_best_of_a_gt[positive]).all())
        # the best anchors of every GT that overlaps some anchor are positive
        overlapping = result["best_iou"] > 0
        assert bool((matches[(iou == result["best_iou"][:, None])[overlapping].any(dim=0)] >= 0).all())
    else:
        assert bool((iou_with_match >= high).all())
    best = iou.max(dim=0).values
    assert bool((best[matches == -1] < low).all())
    assert bool(((best[matches == -2] >= low) & (best[matches == -2] < high)).all())


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(stride=12), ValueError, "stride"),
        (dict(stride=0), ValueError, "stride"),
        (dict(stride=8.0), TypeError, "stride"),
        (dict(sizes=()), ValueError, "sizes"),
        (dict(aspect_ratios=[1.0, -2.0]), ValueError, "aspect_ratios"),
        (dict(high_threshold=0.3, low_threshold=0.7), ValueError, "low_threshold"),
        (dict(boxes=torch.tensor([[10.0, 10.0, 5.0, 20.0]])), ValueError, "boxes"),
        (dict(boxes=torch.zeros(3)), ValueError, "boxes"),
        (dict(image_size=0), ValueError, "image_size"),
    ],
)
def test_assign_anchors_rejects_bad_input(kwargs, error, message):
    args = dict(boxes=torch.tensor([[10.0, 10.0, 40.0, 30.0]]), image_size=64, stride=16, sizes=(16,), aspect_ratios=(1.0,))
    args.update(high_threshold=0.7, low_threshold=0.3)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        assign_anchors(**args)


def unique_centres(boxes: torch.Tensor) -> int:
    return len(((boxes[:, :2] + boxes[:, 2:]) / 2).unique(dim=0))


@pytest.mark.parametrize("stride", [16, 8])
def test_anchor_figure_draws_each_kind_of_anchor_and_states_the_counts(stride):
    seed = 3
    fig = anchor_figure(seed, stride=stride)
    _, target = make_scene(seed, classes=ALL_CLASSES)
    result = assign_anchors(target["boxes"], 128, stride, (16, 32, 64), (0.5, 1.0, 2.0), 0.7, 0.3)
    anchors, matches = result["anchors"], result["matches"]
    counts = match_counts(matches)
    cells = 128 // stride
    ax = fig.axes[0]
    rectangles = [p for p in ax.patches if isinstance(p, Rectangle)]
    by_style = {style: sum(r.get_linestyle() == style for r in rectangles) for style in ("-", "--", ":")}
    rings = [line for line in ax.lines if line.get_marker() == "o" and line.get_markerfacecolor() == "none"]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend[0] == f"cell centre ({cells}×{cells}, stride {stride})" and legend[1] == "object"
    if counts["ignored"] <= 40:  # stride 16: 31 ignored anchors, outlined
        assert by_style == {"-": len(target["boxes"]), "--": counts["positive"], ":": counts["ignored"]}
        assert rings == [] and legend[3] == "ignored anchor"
    else:  # stride 8: 111 ignored anchors, too many to outline: one ring per cell that holds one
        assert counts["ignored"] == 111
        assert by_style == {"-": len(target["boxes"]), "--": counts["positive"], ":": 0}
        assert len(rings) == 1 and len(rings[0].get_xdata()) == unique_centres(anchors[matches == -2])
        assert legend[3] == "ignored anchors' centres (> 40)"
    assert legend[2] == "positive anchor"
    title = ax.get_title()
    assert f"{len(anchors)} anchors: {counts['positive']} positive · {counts['ignored']} ignored · {counts['negative']} negative" in title
    assert ", ".join(f"{v:.2f}" for v in result["best_iou"].tolist()) in title
    assert len(ax.lines[0].get_xdata()) == cells * cells  # one dot per cell (its anchors share the centre)
    plt.close(fig)


def test_a_dense_anchor_design_is_drawn_by_centres():
    """Stride 4 with loose thresholds: hundreds of positive and ignored anchors, none outlined."""
    fig = anchor_figure(3, stride=4, high_threshold=0.4, low_threshold=0.2)
    ax = fig.axes[0]
    title = ax.get_title()
    positives, ignored = (int(title.split(f" {kind}")[0].split()[-1]) for kind in ("positive", "ignored"))
    assert positives > 40 and ignored > 40
    assert [p.get_linestyle() for p in ax.patches if isinstance(p, Rectangle)] == ["-"] * 4  # only the 4 objects
    filled = [line for line in ax.lines if line.get_marker() == "o" and line.get_markerfacecolor() != "none"]
    assert len(filled) == 4  # one set of dots per object, in its colour
    dots = ax.lines[0]
    assert len(dots.get_xdata()) == 32 * 32 and dots.get_alpha() < 0.5 and dots.get_markersize() < 2  # faint on a dense grid
    assert [t.get_text() for t in ax.get_legend().get_texts()][2:] == ["positive anchors' centres (> 40)", "ignored anchors' centres (> 40)"]
    plt.close(fig)


def test_labels_near_the_top_edge_stay_inside_the_image():
    """An object touching the top of the image gets its label inside its box, not over the title."""
    for seed in range(60):
        _, target = make_scene(seed, classes=ALL_CLASSES)
        if float(target["boxes"][:, 1].min()) < 4:
            break
    else:
        pytest.skip("no scene with an object at the top edge among the first 60")
    fig = anchor_figure(seed)
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text()]
    # a label above its box (va bottom) has room below the image's top edge (-0.5): none covers the title
    assert labels and all(t.get_va() == "top" or t.get_position()[1] >= 5.5 for t in labels)
    top = min(labels, key=lambda t: t.get_position()[1])
    assert top.get_va() == "top" and top.get_position()[1] >= -0.5  # moved inside its box
    plt.close(fig)


def test_fewer_positives_without_low_quality_matches_and_with_a_stricter_threshold():
    def positives(**kwargs):
        fig = anchor_figure(3, **kwargs)
        text = fig.axes[0].get_title()
        plt.close(fig)
        return int(text.split(" positive")[0].split()[-1])

    loose, strict = positives(high_threshold=0.5, low_threshold=0.3), positives(high_threshold=0.7, low_threshold=0.3)
    assert loose >= strict
    assert positives(allow_low_quality_matches=False, stride=32) <= positives(allow_low_quality_matches=True, stride=32)


def test_explorer_view_shows_a_figure_or_a_note_for_an_empty_selection():
    view = explorer_view(3, (16, 32), (1.0,), 16, (0.3, 0.7), True)
    assert isinstance(view, plt.Figure) and view.axes[0].get_title().startswith("128 anchors:")  # 8×8 cells × 2 sizes × 1 ratio
    for sizes, ratios in [((), (1.0,)), ((16,), ())]:
        note = explorer_view(3, sizes, ratios, 16, (0.3, 0.7), True)
        assert isinstance(note, W.HTML) and "at least one size and one aspect ratio" in note.value


def test_anchor_explorer_has_its_controls_and_rerenders_headless(capsys):
    box = anchor_explorer()
    controls = {c.description: c for c in box.children[1].children}
    assert set(controls) == {"scene", "sizes", "ratios h/w", "stride", "low, high", "low-quality matches"}
    assert controls["sizes"].value == (16, 32, 64) and controls["low, high"].value == (0.3, 0.7)
    assert "Figure" in capsys.readouterr().out  # rendered once at creation (no frontend: printed)
    controls["sizes"].value = ()
    assert "at least one size" in capsys.readouterr().out
    controls["sizes"].value = (32,)
    controls["stride"].value = 32
    assert "Figure" in capsys.readouterr().out
