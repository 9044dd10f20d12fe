"""course_utils.widgets.one_stage: responsible cells, matched default boxes, detections above a threshold, the
figure and the explorer, headless, on a small YOLO and a small SSD (random weights: only the wiring is tested)."""

from __future__ import annotations

import functools

import pytest
import torch
from matplotlib.patches import Rectangle
from torchvision.models.detection._utils import Matcher

from course_utils import data
from course_utils.boxes import box_iou
from course_utils.detection import YOLO, FPNBackbone, RetinaNet, SmallBackbone, to_torchvision
from course_utils.detection.ssd import build_ssd, default_boxes, hard_negatives
from course_utils.detection.yolo import encode_targets
from course_utils.widgets import (
    anchor_matches,
    detections_above,
    model_anchors,
    one_stage_explorer,
    one_stage_figure,
    positive_anchors,
    responsible_cells,
    run_detector,
    shared_cells,
)
from course_utils.widgets import _base
from course_utils.widgets import one_stage as O

pytestmark = pytest.mark.usefixtures("one_thread")


@functools.lru_cache(maxsize=1)
def yolo() -> YOLO:
    torch.manual_seed(0)
    return YOLO(6, backbone=SmallBackbone(8, extra_blocks=1)).eval()


@functools.lru_cache(maxsize=1)
def ssd():
    torch.manual_seed(0)
    return build_ssd(6, width=8).eval()


@functools.lru_cache(maxsize=None)
def scene(seed: int):
    return data.make_scene(seed)


def random_boxes(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    corner = torch.rand(n, 2, generator=generator) * size * 0.9
    return torch.cat([corner, corner + 1 + torch.rand(n, 2, generator=generator) * (size - corner)], 1)


# ----------------------------------------------------------------------------------------------
# responsible_cells, shared_cells
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grid, size", [(4, 64), (7, 112), (8, 128), (8, 100)])
def test_responsible_cells_are_yolo_s_own_assignment_one_object_at_a_time(grid, size):
    boxes = random_boxes(40, size, torch.Generator().manual_seed(grid))
    cells = responsible_cells(boxes, size, grid)
    assert len(cells) == len(boxes) and all(isinstance(v, int) for cell in cells for v in cell)
    for box, cell in zip(boxes, cells):
        encoded = encode_targets([{"boxes": box[None], "labels": torch.ones(1, dtype=torch.int64)}], grid, size)
        assert cell == (int(encoded.row[0]), int(encoded.col[0]))
        centre = (box[:2] + box[2:]) / 2
        assert cell == tuple(min(int(v // (size / grid)), grid - 1) for v in centre.flip(0).tolist())  # (row from y, col from x)


def test_responsible_cells_on_edges_and_without_objects():
    boxes = torch.tensor([[40.0, 40, 56, 56], [104, 20, 120, 40], [0, 0, 128, 128], [120, 100, 136, 140]])
    assert responsible_cells(boxes, 128, 8) == [(3, 3), (1, 7), (4, 4), (7, 7)]  # on a cell edge: the next cell
    assert responsible_cells(torch.tensor([[104.0, 104, 120, 120]]), 112, 7) == [(6, 6)]  # on the last edge: clamped
    assert responsible_cells(torch.zeros(0, 4), 128, 8) == []
    assert shared_cells(torch.zeros(0, 4), 128, 8).shape == (0,)


def test_shared_cells_flags_the_smaller_object_of_a_cell_and_matches_encode_targets():
    boxes = torch.tensor([[2.0, 2, 30, 30], [18, 18, 28, 28], [60, 60, 80, 80], [18, 18, 28, 28], [100, 100, 110, 110]])
    # 0 and 1 share cell (1, 1) of 16 px: 1 is smaller; 3 is 1 again; 2 and 4 are alone
    assert shared_cells(boxes, 128, 8).tolist() == [False, True, False, True, False]
    identical = torch.tensor([[10.0, 10, 20, 20], [10, 10, 20, 20]])
    assert shared_cells(identical, 128, 8).tolist() == [False, True]  # ties: the first is kept
    generator = torch.Generator().manual_seed(3)
    for _ in range(20):
        boxes = random_boxes(12, 128, generator)
        lost = shared_cells(boxes, 128, 4)
        kept = encode_targets([{"boxes": boxes, "labels": torch.ones(12, dtype=torch.int64)}], 4, 128)
        assert torch.equal(boxes[~lost], kept.box)
        assert len(set(responsible_cells(boxes[~lost], 128, 4))) == int((~lost).sum())  # one kept object per cell


# ----------------------------------------------------------------------------------------------
# positive_anchors, anchor_matches, model_anchors
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("thresh", [0.3, 0.5, 0.7])
def test_positive_anchors_equal_torchvision_s_matcher_with_low_quality_matches(thresh):
    anchors, _ = default_boxes(ssd())
    matcher = Matcher(thresh, thresh, allow_low_quality_matches=True)
    for seed in range(6):
        boxes = scene(seed)[1]["boxes"]
        theirs = matcher(box_iou(boxes, anchors))
        assert torch.equal(positive_anchors(anchors, boxes, thresh), theirs >= 0)
        assert torch.equal(anchor_matches(anchors, boxes, thresh), theirs.clamp(min=-1))
        best = box_iou(boxes, anchors).argmax(1)
        assert positive_anchors(anchors, boxes, thresh)[best].all()  # every object has its best anchor
    generator = torch.Generator().manual_seed(1)
    for _ in range(10):
        anchors, boxes = random_boxes(60, 64, generator), random_boxes(5, 64, generator)
        assert torch.equal(positive_anchors(anchors, boxes, thresh), matcher(box_iou(boxes, anchors)) >= 0)


def test_positive_anchors_are_ssd_s_own_positives_on_scenes():
    """SSD's matcher takes one best default box per object (argmax), the Matcher all tied ones: equal on these scenes."""
    model = ssd()
    anchors, _ = default_boxes(model)
    scenes = [scene(seed) for seed in range(4)]
    mined = hard_negatives(model, [image for image, _ in scenes], [target for _, target in scenes])
    for (_, target), ours in zip(scenes, mined):
        assert torch.equal(positive_anchors(anchors, target["boxes"], model.proposal_matcher.high_threshold), ours.positive)


def test_positive_anchors_without_objects_or_anchors():
    anchors = torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]])
    assert positive_anchors(anchors, torch.zeros(0, 4)).tolist() == [False, False]
    assert positive_anchors(torch.zeros(0, 4), anchors).shape == (0,)
    assert anchor_matches(anchors, torch.tensor([[0.0, 0, 10, 10]]), 0.9).tolist() == [0, -1]
    # the low-quality match: IoU 0.31 < 0.5, but the object's best anchor
    assert positive_anchors(anchors, torch.tensor([[4.0, 4, 14, 14]])).tolist() == [False, True]


def test_model_anchors_of_ssd_are_its_default_boxes_in_the_image_s_pixels():
    model = ssd()
    boxes, counts = default_boxes(model)
    torch.testing.assert_close(model_anchors(model, scene(0)[0]), boxes)
    wide = model_anchors(model, torch.rand(3, 64, 256))  # resized to 128 × 128 by the model: x × 2, y × 0.5
    torch.testing.assert_close(wide, boxes * torch.tensor([2.0, 0.5, 2.0, 0.5]))
    assert len(boxes) == sum(counts)
    with pytest.raises(TypeError, match="grid of cells"):
        model_anchors(yolo(), scene(0)[0])


def small_retinanet():
    """A torchvision RetinaNet on a tiny backbone: the generic anchor path (anchor_generator, transform, backbone)."""
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    backbone = SmallBackbone(8)
    generator = AnchorGenerator(sizes=((16, 32),), aspect_ratios=((0.5, 1.0, 2.0),))
    torch.manual_seed(0)
    return RetinaNet(backbone, 6, anchor_generator=generator, min_size=128, max_size=128).eval()


def test_model_anchors_of_an_anchor_detector_and_its_figure():
    model = small_retinanet()
    image, target = scene(1)
    anchors = model_anchors(model, image)
    assert anchors.shape == (16 * 16 * 6, 4)  # stride 8 on 128 px, 2 sizes × 3 ratios
    centres = ((anchors[:, :2] + anchors[:, 2:]) / 2).unique(dim=0)
    assert len(centres) == 256 and centres.min() == 0 and centres.max() == 120  # torchvision's anchors sit on multiples of the stride
    fig = one_stage_figure(model, image, target, overlay="targets")
    title = fig.axes[0].get_title()
    assert title.startswith("1536 anchors:") and f"{int(positive_anchors(anchors, target['boxes']).sum())} matched" in title


def test_course_retinanet_anchors_are_its_torchvision_twins():
    model = RetinaNet(6, FPNBackbone(8), norm_groups=4).eval()
    image, target = scene(2)
    anchors = model_anchors(model, image)
    assert anchors.shape == (16 * 16 * 9 + 8 * 8 * 9, 4)
    assert torch.equal(anchors, model_anchors(to_torchvision(model), image))
    title = one_stage_figure(model, image, target, overlay="targets").axes[0].get_title()
    assert title.startswith(f"{len(anchors)} anchors:") and "IoU ≥ 0.50" in title


# ----------------------------------------------------------------------------------------------
# detections_above, run_detector
# ----------------------------------------------------------------------------------------------
def test_detections_above_keeps_the_detections_over_the_threshold_in_order():
    output = {"boxes": torch.arange(20.0).reshape(5, 4), "labels": torch.tensor([1, 2, 3, 4, 5]),
              "scores": torch.tensor([0.9, 0.7, 0.5, 0.3, 0.1]), "masks": torch.rand(5, 1, 4, 4), "image_id": 7}  # fmt: skip
    kept = detections_above(output, 0.5)
    assert kept["scores"].tolist() == pytest.approx([0.9, 0.7]) and kept["labels"].tolist() == [1, 2]  # strictly above
    assert torch.equal(kept["boxes"], output["boxes"][:2]) and torch.equal(kept["masks"], output["masks"][:2])
    assert kept["image_id"] == 7 and len(output["scores"]) == 5  # passed on; the input is unchanged
    assert len(detections_above(output, 0.0)["scores"]) == 5 and len(detections_above(output, 1.0)["boxes"]) == 0
    assert len(detections_above({"scores": torch.zeros(0), "boxes": torch.zeros(0, 4)}, 0.2)["boxes"]) == 0


@pytest.mark.parametrize(
    "args, error, message",
    [
        (([1, 2], 0.5), TypeError, "output_dict must be a dict"),
        (({"boxes": torch.zeros(2, 4)}, 0.5), ValueError, "no 'scores'"),
        (({"scores": [0.5]}, 0.5), TypeError, r"output_dict\['scores'\] must be a torch.Tensor"),
        (({"scores": torch.zeros(2), "boxes": torch.zeros(3, 4)}, 0.5), ValueError, r"output_dict\['boxes'\] must have one entry"),
        (({"scores": torch.zeros(2)}, 1.5), ValueError, "score_thresh must be in"),
        (({"scores": torch.zeros(2)}, "high"), TypeError, "score_thresh must be a number"),
    ],
)
def test_detections_above_rejects_bad_arguments(args, error, message):
    with pytest.raises(error, match=message):
        detections_above(*args)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: responsible_cells(torch.zeros(3), 128, 8), ValueError, "boxes must have 2 dimensions"),
        (lambda: responsible_cells(torch.tensor([[5.0, 5, 1, 1]]), 128, 8), ValueError, r"boxes\[0\].*degenerate"),
        (lambda: responsible_cells(torch.zeros(1, 4), 128, 0), ValueError, "grid_size must be positive"),
        (lambda: responsible_cells(torch.zeros(1, 4), 128.0, 8), TypeError, "image_size must be an int"),
        (lambda: shared_cells([[0, 0, 1, 1]], 128, 8), TypeError, "boxes must be a torch.Tensor"),
        (lambda: positive_anchors("anchors", torch.zeros(1, 4)), TypeError, "anchors must be a torch.Tensor"),
        (lambda: positive_anchors(torch.zeros(1, 4), torch.zeros(1, 5)), ValueError, r"boxes must have shape \[N, 4\]"),
        (lambda: positive_anchors(torch.zeros(1, 4), torch.zeros(1, 4), 1.5), ValueError, "iou_thresh must be in"),
        (lambda: model_anchors(torch.nn.Linear(2, 2), torch.rand(3, 8, 8)), TypeError, "model must be a one-stage detector"),
        (lambda: model_anchors(ssd(), torch.rand(8, 8)), ValueError, "image must have 3 dimensions"),
        (lambda: run_detector(yolo(), torch.rand(1, 8, 8)), ValueError, r"image must have shape \[3, H, W\]"),
    ],
)
def test_the_pure_functions_reject_bad_arguments_by_name(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_run_detector_restores_the_modes_and_returns_cpu_tensors():
    model = yolo()
    model.train()
    try:
        output = run_detector(model, scene(0)[0])
        assert model.training and all(m.training for m in model.modules())
    finally:
        model.eval()
    assert set(output) == {"boxes", "labels", "scores"} and output["boxes"].device.type == "cpu"
    with torch.no_grad():
        (theirs,) = model([scene(0)[0]])
    assert all(torch.equal(output[k], theirs[k]) for k in output)


# ----------------------------------------------------------------------------------------------
# the figure
# ----------------------------------------------------------------------------------------------
def filled(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_fill()]


def dashed(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill() and p.get_linestyle() == "--"]


def test_yolo_figure_fills_each_object_s_cell_and_marks_the_objects_that_lose_it():
    image, target = scene(2)
    fig = one_stage_figure(yolo(), image, target, overlay="targets")
    ax = fig.axes[0]
    cells = responsible_cells(target["boxes"], 128, 8)
    assert len(filled(ax)) == len(set(cells)) == len(cells)
    (row, col), first = cells[0], filled(ax)[0]
    assert first.get_xy() == (col * 16 - 0.5, row * 16 - 0.5) and first.get_width() == 16
    assert len(ax.lines) == 2 * 9 + len(cells)  # the grid's lines, one centre marker per object
    assert "8×8 grid" in ax.get_title() and "detection" not in ax.get_title()
    # two objects in one cell: the smaller is not learned (×), its cell filled once
    two = {"boxes": torch.tensor([[2.0, 2, 30, 30], [18, 18, 28, 28]]), "labels": torch.tensor([1, 2])}
    ax = one_stage_figure(yolo(), image, two, overlay="targets").axes[0]
    assert len(filled(ax)) == 1 and "1 object(s) (×) share a cell" in ax.get_title()
    assert [line.get_marker() for line in ax.lines[-2:]] == ["o", "x"]


def test_yolo_figure_in_the_image_s_own_pixels():
    """A 64 × 256 image: the model sees it as 128 × 128, the grid is drawn in the image's cells (32 × 8 px)."""
    image = torch.rand(3, 64, 256)
    target = {"boxes": torch.tensor([[40.0, 10, 60, 20]]), "labels": torch.tensor([1])}  # centre (50, 15): col 1, row 1
    ax = one_stage_figure(yolo(), image, target, overlay="targets").axes[0]
    (cell,) = filled(ax)
    assert cell.get_xy() == (32 - 0.5, 8 - 0.5) and (cell.get_width(), cell.get_height()) == (32, 8)
    assert ax.get_xlim() == (-0.5, 255.5)


def test_ssd_figure_outlines_the_matched_default_boxes():
    model = ssd()
    image, target = scene(0)
    ax = one_stage_figure(model, image, target, overlay="targets").axes[0]
    positives = positive_anchors(default_boxes(model)[0], target["boxes"])
    assert len(dashed(ax)) == int(positives.sum()) > 0
    assert ax.get_title().startswith(f"1280 default boxes: {int(positives.sum())} matched (IoU ≥ 0.50")
    stricter = one_stage_figure(model, image, target, overlay="targets", iou_thresh=0.7).axes[0]
    assert len(dashed(stricter)) == int(positive_anchors(default_boxes(model)[0], target["boxes"], 0.7).sum()) <= len(dashed(ax))


@pytest.mark.parametrize("which", ["yolo", "ssd"])
def test_the_detections_drawn_are_those_above_the_threshold(which):
    model = {"yolo": yolo, "ssd": ssd}[which]()
    image, target = scene(1)
    output = run_detector(model, image)
    for threshold in (0.0, 0.2, 0.6):
        ax = one_stage_figure(model, image, target, threshold, overlay="detections", detections=output).axes[0]
        kept = detections_above(output, threshold)
        solid = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_linestyle() == "-"]
        assert len(solid) == len(kept["boxes"]) and f"{len(kept['boxes'])} detection(s) scoring > {threshold:.2f}" in ax.get_title()
        assert len(dashed(ax)) == len(filled(ax)) == 0  # no targets drawn
    both = one_stage_figure(model, image, target, 0.2, overlay="both", detections=output).axes[0].get_title()
    assert len(both.splitlines()) >= 2 and "detection(s)" in both


def test_a_figure_without_ground_truth_shows_the_grid_or_the_default_boxes_only():
    image = scene(0)[0]
    assert one_stage_figure(yolo(), image, overlay="targets").axes[0].get_title().startswith("8×8 grid (16 × 16 px cells)")
    ax = one_stage_figure(ssd(), image, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}, overlay="targets").axes[0]
    assert ax.get_title() == "1280 default boxes: no object, none matched" and not dashed(ax)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(model="yolo"), TypeError, "model must be a one-stage detector"),
        (dict(image=torch.rand(1, 3, 8, 8)), ValueError, "image must have 3 dimensions"),
        (dict(overlay="grid"), ValueError, "overlay must be one of 'targets', 'detections', 'both'"),
        (dict(score_threshold=-0.1), ValueError, "score_threshold must be in"),
        (dict(target=[1, 2]), TypeError, "target must be a dict"),
        (dict(anchors=torch.zeros(3)), ValueError, "anchors must have 2 dimensions"),
    ],
)
def test_the_figure_rejects_bad_arguments(kwargs, error, message):
    image, target = scene(0)
    args = dict(model=ssd(), image=image, target=target, overlay="targets") | kwargs
    with pytest.raises(error, match=message):
        one_stage_figure(**args)


# ----------------------------------------------------------------------------------------------
# the explorer
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def shown(monkeypatch):
    """No frontend: what the live output would show is collected, not printed."""
    figures = []
    monkeypatch.setattr(_base, "display", figures.append)
    return figures


@pytest.mark.parametrize("which, assigned", [("yolo", "responsible cells"), ("ssd", "matched default boxes")])
def test_the_explorer_builds_and_redraws_headless(which, assigned, shown, monkeypatch):
    model = {"yolo": yolo, "ssd": ssd}[which]()
    calls = []
    monkeypatch.setattr(O, "run_detector", lambda m, image: calls.append(image) or run_detector(m, image))
    box = one_stage_explorer(model, [scene(0)[0], scene(1)[0]], [scene(0)[1], scene(1)[1]])
    assert isinstance(box, _base.Dashboard) and box.first_view.startswith(b"\x89PNG")
    assert assigned in box.children[0].value
    controls = box.children[1].children
    assert [c.description for c in controls] == ["image", "min score", "show"]
    assert controls[0].max == 1 and controls[1].value == 0.3 and controls[2].value == "both"
    assert [label for label, _ in controls[2].options] == [assigned, "detections", "both"]
    controls[0].value = 1
    controls[1].value = 0.6
    controls[2].value = "targets"
    controls[0].value = 0  # back to the first image: its detections are cached
    assert len(shown) == 5 and len(calls) == 2
    titles = [figure.axes[0].get_title() for figure in shown]
    assert "scoring > 0.60" in titles[2] and "detection" not in titles[3]


def test_the_explorer_takes_scenes_as_pairs_and_images_without_targets(shown):
    scenes = [scene(0), scene(3)]
    box = one_stage_explorer(ssd(), scenes, score_threshold=0.5, overlay="detections")
    assert box.children[1].children[1].value == 0.5 and "scoring > 0.50" in shown[0].axes[0].get_title()
    one_stage_explorer(yolo(), [image for image, _ in scenes], overlay="targets")
    assert shown[-1].axes[0].get_title() == "8×8 grid (16 × 16 px cells)"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(model=torch.nn.Conv2d(3, 3, 1)), TypeError, "model must be a one-stage detector"),
        (dict(images=[]), ValueError, "images is empty"),
        (dict(images=[torch.rand(3, 8, 8), torch.rand(8, 8)]), ValueError, r"images\[1\] must have shape"),
        (dict(targets=[{"boxes": torch.zeros(0, 4)}]), ValueError, r"targets must have one dict per image \(2\), got 1"),
        (dict(targets=[{"labels": torch.zeros(0)}] * 2), TypeError, r"targets\[0\] must be a dict with 'boxes'"),
        (dict(targets="boxes"), TypeError, "targets must be a list of dicts"),
        (dict(overlay="cells"), ValueError, "overlay must be one of"),
        (dict(score_threshold=2), ValueError, "score_threshold must be in"),
        (dict(iou_thresh=-1.0), ValueError, "iou_thresh must be in"),
        (dict(images=None, targets=[{"boxes": torch.zeros(0, 4)}]), ValueError, "targets without images"),
    ],
)
def test_the_explorer_rejects_bad_arguments_by_name(kwargs, error, message, shown):
    args = dict(model=yolo(), images=[scene(0)[0], scene(1)[0]]) | kwargs
    with pytest.raises(error, match=message):
        one_stage_explorer(**args)


def test_pairs_and_targets_together_are_refused(shown):
    with pytest.raises(ValueError, match="do not give targets as well"):
        one_stage_explorer(yolo(), [scene(0)], [scene(0)[1]])
