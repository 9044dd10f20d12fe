"""metrics.match_detections, pr_curve and precision_envelope: one class's PR curve, equal to pycocotools'."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course_utils import data, metrics
from course_utils.widgets import nms_map as M


def scene_targets(n: int = 16) -> list[dict[str, torch.Tensor]]:
    return [target for _, target in data.SyntheticScenes(n, seed=5, **M.SCENE_OPTIONS)]


def pycocotools_eval(preds, targets) -> COCOeval:
    samples = [(torch.zeros(3, 128, 128), {**t, "image_id": torch.tensor(i)}) for i, t in enumerate(targets)]
    gt = data.to_coco(samples, ("background", *data.SHAPES))
    results = [
        {"image_id": i, "category_id": int(label), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)}
        for i, pred in enumerate(preds)
        for (x1, y1, x2, y2), score, label in zip(pred["boxes"].tolist(), pred["scores"].tolist(), pred["labels"].tolist())
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


@pytest.mark.parametrize("nms_threshold", [0.5, 1.0])
def test_pr_curve_ap_and_recall_equal_pycocotools_per_class(nms_threshold):
    targets = scene_targets()
    preds = [M.filter_detections(M.simulate_detections(t, seed), 0.05, nms_threshold) for seed, t in enumerate(targets)]
    evaluator = pycocotools_eval(preds, targets)
    all_area, max_100 = 0, 2
    for t_index in (0, 5, 9):  # IoU 0.5, 0.75, 0.95
        iou = float(evaluator.params.iouThrs[t_index])
        for k, label in enumerate(evaluator.params.catIds):
            scores, hits, num_gt = metrics.match_detections(preds, targets, label, iou)
            recall, precision = metrics.pr_curve(hits, num_gt)
            coco_precision = evaluator.eval["precision"][t_index, :, k, all_area, max_100]
            assert metrics.average_precision(recall, precision, "coco101") == pytest.approx(coco_precision.mean(), abs=1e-12)
            assert float(recall[-1]) == pytest.approx(evaluator.eval["recall"][t_index, k, all_area, max_100], abs=1e-12)
            assert bool((scores[:-1] >= scores[1:]).all())


def test_match_detections_worked_example():
    gt = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10]]), "labels": torch.tensor([1, 1])}
    pred = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 5], [20, 0, 30, 5], [20, 0, 30, 10]]),
        "scores": torch.tensor([0.9, 0.8, 0.95, 0.7, 0.6]),
        "labels": torch.tensor([1, 1, 1, 1, 2]),
    }
    other = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
    empty = {"boxes": torch.zeros((0, 4)), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    scores, hits, num_gt = metrics.match_detections([pred, empty], [gt, other], label=1, iou_threshold=0.5)
    # by score: 0.95 (IoU exactly 0.5: a hit), 0.9 (the first GT is taken: a duplicate), 0.8 (duplicate),
    # 0.7 (IoU 0.5 with the second GT: a hit); the 0.6 box has another label
    assert scores.tolist() == pytest.approx([0.95, 0.9, 0.8, 0.7])
    assert hits.tolist() == [True, False, False, True] and num_gt == 2
    _, hits, _ = metrics.match_detections([pred], [gt], label=1, iou_threshold=0.51)
    assert hits.tolist() == [False, True, False, False]


def test_match_detections_takes_the_free_ground_truth_with_the_highest_iou():
    gt = {"boxes": torch.tensor([[0.0, 0, 10, 10], [4, 0, 14, 10]]), "labels": torch.tensor([1, 1])}
    pred = {"boxes": torch.tensor([[3.0, 0, 13, 10], [0, 0, 10, 10]]), "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 1])}
    # the first detection overlaps GT 1 more (IoU 9/11 vs 7/13), so GT 0 is still free for the second
    _, hits, _ = metrics.match_detections([pred], [gt], label=1, iou_threshold=0.5)
    assert hits.tolist() == [True, True]


def test_pr_curve_worked_example():
    recall, precision = metrics.pr_curve(torch.tensor([True, False, True]), 4)
    # TP after each rank: 1, 1, 2 -> recall TP / 4, precision TP / rank
    assert recall.tolist() == [0.25, 0.25, 0.5]
    assert precision.tolist() == pytest.approx([1.0, 0.5, 2 / 3])
    assert recall.dtype == precision.dtype == torch.float64
    assert metrics.pr_curve(torch.zeros(0, dtype=torch.bool), 3)[0].shape == (0,)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: metrics.pr_curve(torch.tensor([True]), 0), ValueError, "num_gt"),
        (lambda: metrics.pr_curve(torch.tensor([True, True]), 1), ValueError, "num_gt=1"),
        (lambda: metrics.pr_curve([True], 1), TypeError, "is_tp"),
        (lambda: metrics.match_detections([{}], [], 1), ValueError, "one dict per image"),
        (lambda: metrics.match_detections({}, [], 1), TypeError, "preds must be a list"),
        (lambda: metrics.match_detections([{}], [{}], 1), TypeError, r"preds\[0\] must be a dict"),
        (lambda: metrics.match_detections([], [], 1.0), TypeError, "label"),
        (lambda: metrics.match_detections([], [], -1), ValueError, "label"),
        (lambda: metrics.match_detections([], [], 1, 2.0), ValueError, "iou_threshold"),
    ],
)
def test_pr_functions_reject_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), max_size=30))
def test_precision_envelope_properties(values):
    precision = torch.tensor(values, dtype=torch.float64)
    envelope = metrics.precision_envelope(precision)
    assert bool((envelope >= precision).all()) and bool((envelope[:-1] >= envelope[1:]).all())
    if len(values):
        assert envelope[-1] == precision[-1]
        assert envelope.tolist() == [max(values[i:]) for i in range(len(values))]
    assert torch.equal(metrics.precision_envelope(envelope), envelope)
