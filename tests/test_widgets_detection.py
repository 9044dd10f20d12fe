"""course_utils.widgets.detection: detect / proposals / map50 / summary / figure / explorer on the zoo's Faster R-CNN (headless)."""

from __future__ import annotations

import functools

import ipywidgets as W
import pytest
import torch
from torch import nn

from course_utils import metrics, zoo
from course_utils.detection import FasterRCNN
from course_utils.widgets import detect, detection_explorer, detection_figure, detection_summary, map50, proposals
from course_utils.widgets import detection as D

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> FasterRCNN:
    return zoo.load("faster_rcnn")


@functools.lru_cache(maxsize=1)
def scenes() -> list:
    return D._zoo_scenes()[:8]


def settings_of(model: FasterRCNN) -> tuple:
    """Everything ``detect`` may touch: the three settings and every module's training flag."""
    return (dict(model.rpn._post_nms_top_n), model.roi_heads.score_thresh, model.roi_heads.nms_thresh,
            [m.training for m in model.modules()])  # fmt: skip


def built_with(model: FasterRCNN, score: float, nms: float, rpn: int) -> FasterRCNN:
    """A FasterRCNN constructed with these test-time settings, holding ``model``'s weights."""
    twin = FasterRCNN(num_classes=model.num_classes, box_score_thresh=score, box_nms_thresh=nms, rpn_post_nms_top_n_test=rpn)
    twin.load_state_dict(model.state_dict())
    return twin.eval()


# ----------------------------------------------------------------------------------------------
# detect and proposals
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("score, nms, rpn", [(0.05, 0.5, 100), (0.0, 1.0, 300), (0.6, 0.2, 5), (0.3, 0.7, 1)])
def test_detect_equals_the_model_built_with_those_settings(model, score, nms, rpn):
    twin = built_with(model, score, nms, rpn)
    for image, _ in scenes()[:4]:
        ours = detect(model, image, score, nms, rpn)
        with torch.no_grad():
            (theirs,) = twin([image])
        assert all(torch.equal(ours[k], theirs[k]) for k in ("boxes", "labels", "scores"))


def test_fewer_proposals_give_fewer_or_equal_detections(model):
    """At most one detection per class and proposal; on these scenes the count never drops as proposals grow
    (not a theorem: a proposal more can, in principle, let per-class NMS suppress a box it kept)."""
    for image, _ in scenes():
        counts = [len(detect(model, image, 0.05, 0.5, k)["boxes"]) for k in D.PROPOSAL_CHOICES]
        assert counts == sorted(counts)
        assert all(n <= k * (model.num_classes - 1) for n, k in zip(counts, D.PROPOSAL_CHOICES))
    assert counts[0] < counts[-1]


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.9])
def test_a_higher_score_threshold_keeps_exactly_the_detections_above_it(model, threshold):
    """A box under the threshold never suppresses a better one, so thresholding first changes nothing else."""
    for image, _ in scenes():
        low, high = detect(model, image, 0.01), detect(model, image, threshold)
        kept = low["scores"] > threshold
        assert all(torch.equal(high[k], low[k][kept]) for k in high)


def test_nms_at_iou_1_keeps_at_least_as_many_as_at_0_5(model):
    for image, _ in scenes():
        assert len(detect(model, image, nms_threshold=1.0)["boxes"]) >= len(detect(model, image, nms_threshold=0.5)["boxes"])


def test_settings_and_modes_come_back_after_a_call_and_after_an_error(model):
    model.train()
    model.backbone.eval()  # a mixed state: each module's own flag must come back
    before = settings_of(model)
    try:
        detect(model, scenes()[0][0], 0.7, 0.3, 5)
        proposals(model, scenes()[0][0], 7)
        assert settings_of(model) == before
        with pytest.raises(ValueError, match="NaN"):  # raised by the model, inside the changed settings
            detect(model, torch.full((3, 64, 64), float("nan")), 0.7, 0.3, 5)
        assert settings_of(model) == before
    finally:
        model.eval()
    assert settings_of(model)[:3] == (dict(training=200, testing=100), 0.01, 0.5)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(score_threshold=1.5), ValueError, "score_threshold"),
        (dict(score_threshold="high"), TypeError, "score_threshold"),
        (dict(nms_threshold=-0.1), ValueError, "nms_threshold"),
        (dict(nms_threshold=float("nan")), ValueError, "nms_threshold"),
        (dict(rpn_proposals=0), ValueError, "rpn_proposals"),
        (dict(rpn_proposals=2.5), TypeError, "rpn_proposals"),
        (dict(model=nn.Conv2d(3, 3, 1)), TypeError, "model must be a course_utils.detection.FasterRCNN"),
        (dict(image=torch.rand(1, 64, 64)), ValueError, r"image must have shape \[3, H, W\]"),
        (dict(image=torch.rand(64, 64)), ValueError, "image must have 3 dimensions"),
        (dict(image=torch.zeros(3, 64, 64, dtype=torch.uint8)), TypeError, "image must have a floating-point dtype"),
        (dict(image=[[0.0]]), TypeError, "image must be a torch.Tensor"),
    ],
)
def test_bad_arguments_name_the_argument(model, kwargs, error, match):
    before = settings_of(model)
    arguments = {"model": model, "image": scenes()[0][0], **kwargs}
    with pytest.raises(error, match=match):
        detect(**arguments)
    if "score_threshold" not in kwargs and "nms_threshold" not in kwargs:
        with pytest.raises(error, match=match):
            proposals(**arguments)
    assert settings_of(model) == before


def test_proposals_are_the_rpn_s_boxes_in_the_original_image(model):
    image = scenes()[0][0]
    boxes = proposals(model, image, 50)
    assert boxes.shape == (50, 4)
    with torch.no_grad():  # the same model, but told to upscale the image ×2: the boxes come back at the image's scale
        twice = FasterRCNN(num_classes=6, min_size=256, max_size=256, rpn_post_nms_top_n_test=50)
        twice.load_state_dict(model.state_dict())
        batch, _ = twice.eval().transform([image])
        raw, _ = twice.rpn(batch, twice.backbone(batch.tensors))
    assert batch.image_sizes == [(256, 256)] and float(raw[0].max()) > 128
    torch.testing.assert_close(proposals(twice, image, 50), raw[0] / 2)
    assert len(proposals(model, image, 1)) == 1 and torch.equal(proposals(model, image, 1)[0], boxes[0])


def test_map50_equals_coco_evaluate_of_detect_on_each_scene(model):
    for score, nms, rpn in [(0.05, 0.5, 100), (0.5, 0.3, 10)]:
        preds = [detect(model, image, score, nms, rpn) for image, _ in scenes()]
        expected = metrics.coco_evaluate(preds, [target for _, target in scenes()])["map_50"]
        assert map50(model, scenes(), score, nms, rpn) == pytest.approx(expected, abs=1e-6)
    assert map50(model, scenes(), rpn_proposals=1) < map50(model, scenes(), rpn_proposals=100)


# ----------------------------------------------------------------------------------------------
# Summary, figure, explorer
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("score, rpn", [(0.05, 100), (0.9, 100), (0.05, 1)])
def test_summary_counts_add_up(model, score, rpn):
    for image, target in scenes():
        detections = detect(model, image, score, 0.5, rpn)
        s = detection_summary(detections, target)
        assert s["detections"] == len(detections["boxes"])
        assert s["found"] + s["missed"] == len(target["boxes"]) and s["found"] + s["extra"] == s["detections"]
        assert s["ap"] == metrics.coco_evaluate([detections], [target])["map_50"]


def test_summary_of_a_perfect_and_of_an_empty_detector():
    target = {"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0], [50.0, 50.0, 90.0, 80.0]]), "labels": torch.tensor([1, 3])}
    perfect = {**target, "scores": torch.tensor([0.9, 0.8])}
    summary = detection_summary(perfect, target)
    assert summary.pop("ap") == pytest.approx(1.0, abs=1e-12)  # pycocotools' precision tp / (tp + fp + eps): 1 - 1e-16
    assert summary == {"detections": 2, "found": 2, "missed": 0, "extra": 0}
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
    assert detection_summary(empty, target) == {"detections": 0, "found": 0, "missed": 2, "extra": 0, "ap": 0.0}
    wrong_class = {**perfect, "labels": torch.tensor([2, 3])}
    assert detection_summary(wrong_class, target, iou_threshold=0.5)["found"] == 1


def test_figure_has_two_panels_whose_titles_report_the_counts(model):
    image, target = scenes()[1]
    fig = detection_figure(model, image, target, 0.3, 0.5, 25)
    left, right = fig.axes
    detections, boxes = detect(model, image, 0.3, 0.5, 25), proposals(model, image, 25)
    s = detection_summary(detections, target)
    assert left.get_title().startswith(f"RPN: {len(boxes)} proposals (at most 25)")
    assert f"found {s['found']}/{len(target['boxes'])}, extra {s['extra']}, AP@0.5 {s['ap']:.2f}" in right.get_title()
    assert right.get_title().startswith(f"{s['detections']} detections (score > 0.30")
    assert len(left.patches) == len(boxes) + len(target["boxes"]) and len(right.patches) == len(target["boxes"]) + s["detections"]
    assert all(p.get_alpha() == 0.45 and p.get_linewidth() == 0.8 for p in left.patches[: len(boxes)])  # thin, translucent


def test_explorer_builds_caches_the_overall_map_and_has_a_first_view(model, monkeypatch):
    calls = []
    monkeypatch.setattr(D, "map50", lambda *args: calls.append(args[2:]) or 0.5)
    box = detection_explorer(model, scenes()[:3])
    assert isinstance(box, W.VBox) and box.first_view.startswith(b"\x89PNG")
    controls = box.children[1].children
    assert [c.description for c in controls] == ["scene", "min score", "NMS IoU", "proposals"]
    assert all(c.continuous_update is False for c in controls) and controls[0].max == 2
    assert list(controls[3].options) == list(D.PROPOSAL_CHOICES) and controls[3].value == 100
    controls[0].value = 1  # another scene, the same settings: no new pass over the scenes
    controls[0].value = 2
    controls[1].value = 0.5
    assert calls == [(0.05, 0.5, 100), (0.5, 0.5, 100)]


def test_explorer_defaults_and_rejects_bad_arguments():
    box = detection_explorer()
    assert box.children[1].children[0].max == D.EXPLORER_SCENES - 1 and box.first_view.startswith(b"\x89PNG")
    with pytest.raises(TypeError, match="model"):
        detection_explorer(nn.Linear(2, 2), scenes())
    with pytest.raises(ValueError, match="scenes is empty"):
        detection_explorer(None, [])
