"""course_utils.metrics.coco_evaluate and average_precision against pycocotools, plus properties."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course_utils.metrics import COCO_KEYS, average_precision, coco_evaluate

# ----------------------------------------------------------------------------------------------
# The reference: pycocotools on the same inputs, converted to COCO json dicts
# ----------------------------------------------------------------------------------------------


def _rle(mask: torch.Tensor) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))


def to_coco(preds: list[dict], targets: list[dict], iou_type: str) -> tuple[dict, list[dict]]:
    """The COCO ground-truth dataset and result list of torchmetrics-style inputs (boxes -> xywh)."""
    images, annotations, results, classes = [], [], [], set()
    for i, (pred, target) in enumerate(zip(preds, targets)):
        height, width = target["masks"].shape[1:] if iou_type == "segm" else (1000, 1000)
        images.append({"id": i, "height": height, "width": width})
        n = len(target["labels"])
        crowd = target.get("iscrowd", torch.zeros(n)).tolist()
        for j, label in enumerate(target["labels"].tolist()):
            ann = {"id": len(annotations) + 1, "image_id": i, "category_id": label, "iscrowd": int(crowd[j])}
            if iou_type == "bbox":
                x1, y1, x2, y2 = target["boxes"][j].tolist()
                ann["bbox"], ann["area"] = [x1, y1, x2 - x1, y2 - y1], (x2 - x1) * (y2 - y1)
            else:
                ann["segmentation"] = _rle(target["masks"][j])
                ann["bbox"] = mask_utils.toBbox(ann["segmentation"]).tolist()
                ann["area"] = float(target["masks"][j].sum())
            if "area" in target:
                ann["area"] = target["area"][j].item()
            annotations.append(ann)
            classes.add(label)
        for j, label in enumerate(pred["labels"].tolist()):
            result = {"image_id": i, "category_id": label, "score": pred["scores"][j].item()}
            if iou_type == "bbox":
                x1, y1, x2, y2 = pred["boxes"][j].tolist()
                result["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            else:  # no "bbox": loadRes then takes the area from the mask
                result["segmentation"] = _rle(pred["masks"][j])
            results.append(result)
            classes.add(label)
    dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in sorted(classes)]}
    return dataset, results


def run_cocoeval(preds: list[dict], targets: list[dict], iou_type: str = "bbox") -> COCOeval:
    dataset, results = to_coco(preds, targets, iou_type)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def pycocotools_stats(preds: list[dict], targets: list[dict], iou_type: str = "bbox") -> dict[str, float]:
    return dict(zip(COCO_KEYS, run_cocoeval(preds, targets, iou_type).stats.tolist()))


def assert_same_stats(ours: dict[str, float], reference: dict[str, float]) -> None:
    assert list(ours) == list(COCO_KEYS)
    assert all(isinstance(v, float) for v in ours.values())
    for key in COCO_KEYS:
        assert ours[key] == pytest.approx(reference[key], abs=1e-6), key


def check_against_pycocotools(preds: list[dict], targets: list[dict], iou_type: str = "bbox") -> dict[str, float]:
    ours = coco_evaluate(preds, targets, iou_type=iou_type)
    assert_same_stats(ours, pycocotools_stats(preds, targets, iou_type))
    return ours


# ----------------------------------------------------------------------------------------------
# Random scenes
# ----------------------------------------------------------------------------------------------


def image(boxes, labels, scores=None, **extra) -> dict:
    """One image's dict from plain lists (a prediction when ``scores`` is given)."""
    out = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)}
    out["labels"] = torch.tensor(labels, dtype=torch.int64)
    if scores is not None:
        out["scores"] = torch.tensor(scores, dtype=torch.float32)
    out.update({key: torch.tensor(value) for key, value in extra.items()})
    return out


def random_box(rng: np.random.Generator, canvas: int = 300, max_side: int = 150, degenerate: float = 0.03) -> list[float]:
    """An integer-coordinate xyxy box (integers make IoU ties and exact area edges common).

    With probability ``degenerate`` the width or height may be 0.
    """
    w, h = rng.integers(0 if rng.random() < degenerate else 2, max_side, size=2)
    x, y = rng.integers(0, canvas, size=2)
    return [float(x), float(y), float(x + w), float(y + h)]


def random_scenes(
    seed: int,
    n_images: int = 8,
    n_classes: int = 3,
    *,
    crowd: float = 0.0,
    tied_scores: bool = False,
    explicit_area: bool = False,
    max_gt: int = 7,
    max_false: int = 8,
    degenerate: float = 0.03,
) -> tuple[list[dict], list[dict]]:
    """Boxes: each GT gets 0-2 jittered detections (sometimes of the wrong class), plus false positives."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(n_images):
        gt = [random_box(rng, degenerate=degenerate) for _ in range(rng.integers(0, max_gt + 1))]
        labels = rng.integers(0, n_classes, len(gt)).tolist()
        det, det_labels = [], []
        for box, label in zip(gt, labels):
            for _ in range(rng.choice(3, p=[0.3, 0.5, 0.2])):
                jitter = rng.integers(-4, 5, size=4)
                x1, y1 = box[0] + jitter[0], box[1] + jitter[1]
                det.append([x1, y1, max(x1, box[2] + jitter[2]), max(y1, box[3] + jitter[3])])
                det_labels.append(label if rng.random() < 0.85 else int(rng.integers(0, n_classes)))
        for _ in range(rng.integers(0, max_false + 1)):
            det.append(random_box(rng))
            det_labels.append(int(rng.integers(0, n_classes)))
        scores = rng.integers(1, 6, len(det)) / 5 if tied_scores else rng.random(len(det))
        target = image(gt, labels)
        if crowd:
            target["iscrowd"] = torch.tensor(rng.random(len(gt)) < crowd, dtype=torch.int64)
        if explicit_area:
            edges = np.array([0, 32.0**2, 96.0**2, 5000.0, 20000.0])
            target["area"] = torch.tensor(rng.choice(edges, len(gt)), dtype=torch.float32)
        targets.append(target)
        preds.append(image(det, det_labels, scores.tolist()))
    return preds, targets


def random_mask_scenes(seed: int, n_images: int = 5, n_classes: int = 2, *, crowd: float = 0.0, size: int = 40):
    """Masks: random rectangles with holes; detections are the GT mask shifted and eroded, or blobs."""
    rng = np.random.default_rng(seed)

    def blob() -> torch.Tensor:
        mask = torch.zeros(size, size, dtype=torch.bool)
        x, y = rng.integers(0, size - 2, size=2)
        w, h = rng.integers(1, size, size=2)
        mask[y : y + h, x : x + w] = True
        return mask & torch.from_numpy(rng.random((size, size)) < 0.9)

    preds, targets = [], []
    for _ in range(n_images):
        gt = [blob() for _ in range(rng.integers(0, 5))]
        labels = rng.integers(0, n_classes, len(gt)).tolist()
        det, det_labels = [], []
        for mask, label in zip(gt, labels):
            if rng.random() < 0.75:
                shifted = torch.roll(mask, shifts=tuple(rng.integers(-2, 3, size=2).tolist()), dims=(0, 1))
                det.append(shifted & torch.from_numpy(rng.random((size, size)) < 0.85))
                det_labels.append(label)
        for _ in range(rng.integers(0, 4)):
            det.append(blob() if rng.random() < 0.9 else torch.zeros(size, size, dtype=torch.bool))
            det_labels.append(int(rng.integers(0, n_classes)))
        target = {
            "masks": torch.stack(gt) if gt else torch.zeros(0, size, size, dtype=torch.bool),
            "labels": torch.tensor(labels, dtype=torch.int64),
        }
        if crowd:
            target["iscrowd"] = torch.tensor(rng.random(len(gt)) < crowd, dtype=torch.int64)
        targets.append(target)
        preds.append(
            {
                "masks": (torch.stack(det) if det else torch.zeros(0, size, size, dtype=torch.bool)).to(torch.uint8),
                "scores": torch.tensor(rng.random(len(det)), dtype=torch.float32),
                "labels": torch.tensor(det_labels, dtype=torch.int64),
            }
        )
    return preds, targets


# ----------------------------------------------------------------------------------------------
# coco_evaluate == pycocotools
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_random_scenes_match_pycocotools(seed):
    check_against_pycocotools(*random_scenes(seed, n_images=10))


@pytest.mark.parametrize("seed", range(4))
def test_crowd_boxes_match_pycocotools(seed):
    check_against_pycocotools(*random_scenes(100 + seed, crowd=0.3))


@pytest.mark.parametrize("seed", range(4))
def test_explicit_area_matches_pycocotools(seed):
    """Areas given by the user, many of them exactly on the small/medium/large edges."""
    preds, targets = random_scenes(200 + seed, explicit_area=True, crowd=0.1)
    ours = check_against_pycocotools(preds, targets)
    assert ours != coco_evaluate(preds, [{k: v for k, v in t.items() if k != "area"} for t in targets])


@pytest.mark.parametrize("seed", range(4))
def test_tied_scores_match_pycocotools(seed):
    """Scores from 5 levels only: ties within an image and across images (stable sorts)."""
    preds, targets = random_scenes(300 + seed, tied_scores=True, n_images=12)
    check_against_pycocotools(preds, targets)


def test_ties_are_broken_by_image_order_then_input_order():
    """Same score everywhere: the order of images and of detections decides, as in pycocotools."""
    gt = [[0, 0, 10, 10], [20, 20, 30, 30]]
    preds = [
        image([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [1, 1, 1], [0.5, 0.5, 0.5]),
        image([[50, 50, 60, 60], [0, 0, 10, 10]], [1, 1], [0.5, 0.5]),
    ]
    targets = [image(gt, [1, 1]), image(gt[:1], [1])]
    ours = check_against_pycocotools(preds, targets)
    swapped = check_against_pycocotools(preds[::-1], targets[::-1])
    assert ours["map"] != swapped["map"]  # the order matters, and both agree with pycocotools


def test_images_without_predictions_or_without_ground_truth():
    preds, targets = random_scenes(400, n_images=10)
    for i in (1, 4):
        preds[i] = image([], [], [])
    for i in (2, 4, 7):
        targets[i] = image([], [])
    check_against_pycocotools(preds, targets)


def test_class_predicted_but_never_annotated_is_left_out():
    preds, targets = random_scenes(500, n_classes=3)
    preds[0] = image(preds[0]["boxes"].tolist() + [[0, 0, 50, 50]], preds[0]["labels"].tolist() + [7],
                     preds[0]["scores"].tolist() + [0.99])  # fmt: skip
    ours = check_against_pycocotools(preds, targets)
    preds[0] = {key: value[:-1] for key, value in preds[0].items()}
    assert ours == coco_evaluate(preds, targets)


def test_only_unannotated_classes_give_minus_one():
    preds = [image([[0, 0, 10, 10]], [3], [0.9])]
    targets = [image([], [])]
    ours = check_against_pycocotools(preds, targets)
    assert set(ours.values()) == {-1.0}


def test_more_than_100_detections_per_image():
    rng = np.random.default_rng(600)
    preds, targets = random_scenes(600, n_images=4, n_classes=2)
    for i in range(2):
        boxes = [random_box(rng) for _ in range(140)]
        extra = image(boxes, rng.integers(0, 2, 140).tolist(), rng.random(140).tolist())
        preds[i] = {key: torch.cat([preds[i][key], extra[key]]) for key in extra}
        targets[i] = {key: torch.cat([targets[i][key]] * 6) for key in targets[i]}  # many (duplicate) GTs
    check_against_pycocotools(preds, targets)


@pytest.mark.parametrize("side", [31.5, 32, 33, 95, 96, 97])
def test_areas_exactly_on_the_size_edges(side):
    """Boxes of area 32² and 96² are in both neighbouring ranges (both ends inclusive)."""
    gt = [[0, 0, side, side], [200, 200, 200 + side, 200 + 1024 / side], [400, 0, 400 + 96, 96]]
    det = [[1, 0, side + 1, side], [200, 200, 200 + side, 200 + 1024 / side], [400, 0, 400 + side, side], [0, 300, 32, 332]]
    preds = [image(det, [0, 0, 0, 0], [0.9, 0.8, 0.7, 0.6])]
    check_against_pycocotools(preds, [image(gt, [0, 0, 0])])


@pytest.mark.parametrize("height", [5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0, 9.5, 7.4999, 7.5001])
def test_iou_exactly_on_a_threshold(height):
    """IoU = height / 10 hits each threshold 0.50 ... 0.95 exactly (as far as floats go)."""
    preds = [image([[0, 0, 10, height], [20, 0, 30, 10]], [0, 0], [0.9, 0.8])]
    targets = [image([[0, 0, 10, 10], [20, 0, 30, height]], [0, 0])]
    check_against_pycocotools(preds, targets)


def test_iou_ties_between_ground_truths():
    """A detection with IoU 0.5 to two GTs takes the later one (as pycocotools), which leaves the
    earlier GT for the next detection: 2 true positives at IoU 0.5 instead of 1."""
    preds = [image([[0, 0, 20, 10], [0, 0, 10, 10]], [0, 0], [0.9, 0.8])]
    targets = [image([[0, 0, 10, 10], [10, 0, 20, 10]], [0, 0])]
    assert check_against_pycocotools(preds, targets)["map_50"] == 1.0
    crowd = [image([[0, 0, 10, 10], [10, 0, 20, 10]], [0, 0], iscrowd=[1, 0])]
    check_against_pycocotools(preds, crowd)


@pytest.mark.parametrize("seed", range(4))
def test_random_masks_match_pycocotools(seed):
    check_against_pycocotools(*random_mask_scenes(700 + seed), iou_type="segm")


@pytest.mark.parametrize("seed", range(3))
def test_crowd_masks_and_explicit_area_match_pycocotools(seed):
    preds, targets = random_mask_scenes(800 + seed, crowd=0.4)
    targets[0]["area"] = torch.full((len(targets[0]["labels"]),), 1024.0)
    empty = torch.zeros(0, *targets[1]["masks"].shape[1:], dtype=torch.bool)
    targets[1] = {"masks": empty, "labels": torch.zeros(0, dtype=torch.int64)}  # an image without GT
    preds[2] = {"masks": empty, "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}  # nor detections
    check_against_pycocotools(preds, targets, iou_type="segm")


def test_masks_too_large_for_float32_counts_use_float64(monkeypatch):
    """Above 2**24 pixels float32 sums would round: float64 takes over (forced here on small masks)."""
    import course_utils.metrics

    preds, targets = random_mask_scenes(860, crowd=0.3)
    expected = coco_evaluate(preds, targets, iou_type="segm")
    monkeypatch.setattr(course_utils.metrics, "_FLOAT32_EXACT_COUNTS", 0)
    assert coco_evaluate(preds, targets, iou_type="segm") == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_cuda_inputs_give_the_same_numbers(iou_type):
    preds, targets = random_scenes(850) if iou_type == "bbox" else random_mask_scenes(850)
    on_gpu = lambda images: [{key: value.cuda() for key, value in i.items()} for i in images]  # noqa: E731
    assert coco_evaluate(on_gpu(preds), on_gpu(targets), iou_type) == coco_evaluate(preds, targets, iou_type)


def test_segm_ignores_boxes_and_bbox_ignores_masks():
    preds, targets = random_mask_scenes(900)
    with_boxes = [dict(p, boxes=torch.zeros(len(p["labels"]), 4)) for p in preds]
    assert coco_evaluate(with_boxes, targets, iou_type="segm") == coco_evaluate(preds, targets, iou_type="segm")
    preds, targets = random_scenes(901)
    with_masks = [dict(p, masks=torch.zeros(len(p["labels"]), 3, 3)) for p in preds]
    assert coco_evaluate(with_masks, targets) == coco_evaluate(preds, targets)


def test_no_detections_at_all():
    """pycocotools crashes; we answer what it answers with one detection of an unannotated class."""
    _, targets = random_scenes(1000, crowd=0.2)
    empty = [image([], [], []) for _ in targets]
    decoy = [image([[0, 0, 1, 1]], [99], [0.5])] + empty[1:]  # class 99 has no GT: it is left out
    ours = coco_evaluate(empty, targets)
    assert_same_stats(ours, pycocotools_stats(decoy, targets))
    assert set(ours.values()) <= {0.0, -1.0}


def test_no_images_and_no_objects():
    assert set(coco_evaluate([], []).values()) == {-1.0}
    assert set(coco_evaluate([image([], [], [])], [image([], [])]).values()) == {-1.0}


def test_accepts_other_dtypes_of_the_same_values():
    preds, targets = random_scenes(1100, crowd=0.3)
    expected = coco_evaluate(preds, targets)
    preds = [dict(p, boxes=p["boxes"].double(), labels=p["labels"].int()) for p in preds]
    targets = [dict(t, iscrowd=t["iscrowd"].bool(), boxes=t["boxes"].double()) for t in targets]
    assert coco_evaluate(tuple(preds), tuple(targets)) == expected
    assert coco_evaluate(preds, targets, iou_type="bbox") == expected


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), crowd=st.sampled_from([0.0, 0.3]), tied=st.booleans(), n_images=st.integers(1, 6))
def test_property_any_scene_matches_pycocotools(seed, crowd, tied, n_images):
    preds, targets = random_scenes(seed, n_images=n_images, crowd=crowd, tied_scores=tied, max_gt=5, max_false=5)
    if sum(len(p["labels"]) for p in preds) == 0:  # pycocotools cannot load an empty result list
        return
    check_against_pycocotools(preds, targets)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_property_perfect_detections_score_one(seed):
    _, targets = random_scenes(seed, n_images=4, degenerate=0.0)  # a box of area 0 has IoU 0 with itself
    preds = [dict(t, scores=torch.rand(len(t["labels"]))) for t in targets]
    scores = coco_evaluate(preds, targets)
    has_gt = sum(len(t["labels"]) for t in targets) > 0
    # float rounding (the same in pycocotools) can leave the last bit: 0.9999999999999998
    assert scores["map"] == pytest.approx(1.0 if has_gt else -1.0, abs=1e-12)
    assert scores["mar_100"] == pytest.approx(1.0 if has_gt else -1.0, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_property_invariances(seed):
    """Results lie in [0, 1] (or are -1); shuffling detections with distinct scores changes nothing."""
    preds, targets = random_scenes(seed, n_images=4, crowd=0.2)
    scores = coco_evaluate(preds, targets)
    assert all(v == -1.0 or 0.0 <= v <= 1.0 for v in scores.values())
    rng = np.random.default_rng(seed)
    shuffled = []
    for p in preds:
        order = torch.from_numpy(rng.permutation(len(p["labels"])))
        shuffled.append({key: value[order] for key, value in p.items()})
    assert coco_evaluate(shuffled, targets) == pytest.approx(scores, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Malformed input
# ----------------------------------------------------------------------------------------------


def _valid() -> tuple[list[dict], list[dict]]:
    preds = [image([[0, 0, 10, 10]], [0], [0.9]), image([[0, 0, 5, 5], [1, 1, 4, 4]], [1, 1], [0.3, 0.2])]
    targets = [image([[0, 0, 10, 10]], [0]), image([[0, 0, 5, 5]], [1])]
    return preds, targets


def _set(which: str, index: int, key: str, value):
    def mutate(preds, targets):
        entry = (preds if which == "preds" else targets)[index]
        if value is None:
            del entry[key]
        else:
            entry[key] = value
        return preds, targets

    return mutate


BAD_INPUTS = [
    (lambda p, t: (tuple(p)[0], t), TypeError, r"preds must be a list"),
    (lambda p, t: (p, {"boxes": 1}), TypeError, r"targets must be a list"),
    (lambda p, t: (p[:1], t), ValueError, r"preds and targets .* 1 and 2"),
    (lambda p, t: ([p[0], "x"], t), TypeError, r"preds\[1\] must be a dict"),
    (_set("preds", 1, "scores", None), ValueError, r"preds\[1\] has no 'scores'"),
    (_set("targets", 1, "labels", None), ValueError, r"targets\[1\] has no 'labels'"),
    (_set("preds", 0, "boxes", None), ValueError, r"preds\[0\] has no 'boxes'"),
    (_set("preds", 1, "boxes", [[0, 0, 5, 5]]), TypeError, r"preds\[1\]\['boxes'\] must be a torch.Tensor"),
    (_set("preds", 1, "boxes", torch.zeros(2, 5)), ValueError, r"preds\[1\]\['boxes'\] must have shape \[N, 4\]"),
    (_set("preds", 1, "boxes", torch.zeros(8)), ValueError, r"preds\[1\]\['boxes'\] must have 2 dimensions"),
    (_set("preds", 1, "boxes", torch.zeros(3, 4)), ValueError, r"preds\[1\]\['boxes'\] has 3 entries but there are 2"),
    (_set("preds", 1, "scores", torch.tensor([0.3])), ValueError, r"preds\[1\]\['scores'\] has 1 entries but there are 2"),
    (_set("preds", 1, "scores", torch.tensor([1, 2])), TypeError, r"preds\[1\]\['scores'\] must have a floating"),
    (_set("preds", 1, "scores", torch.tensor([0.3, math.nan])), ValueError, r"preds\[1\]\['scores'\] contains NaN"),
    (_set("preds", 1, "labels", torch.tensor([1.0, 1.0])), TypeError, r"preds\[1\]\['labels'\] must have an integer"),
    (_set("preds", 1, "labels", torch.tensor([True, True])), TypeError, r"preds\[1\]\['labels'\] must have an integer"),
    (_set("targets", 1, "labels", torch.tensor([[1]])), ValueError, r"targets\[1\]\['labels'\] must have 1 dim"),
    (_set("targets", 1, "boxes", torch.tensor([[5.0, 0, 0, 5]])), ValueError, r"targets\[1\]\['boxes'\]\[0\] .* degenerate"),
    (_set("preds", 1, "boxes", torch.tensor([[0, 0, 5, 5], [0, 0, math.inf, 1]])), ValueError,
     r"preds\[1\]\['boxes'\] contains NaN"),
    (_set("targets", 0, "iscrowd", torch.tensor([2])), ValueError, r"targets\[0\]\['iscrowd'\] must contain only 0 and 1"),
    (_set("targets", 0, "iscrowd", torch.tensor([0.0])), TypeError, r"targets\[0\]\['iscrowd'\] must have an integer"),
    (_set("targets", 1, "iscrowd", torch.tensor([0, 0])), ValueError, r"targets\[1\]\['iscrowd'\] has 2 entries"),
    (_set("targets", 1, "area", torch.tensor([-1.0])), ValueError, r"targets\[1\]\['area'\] must be >= 0"),
    (_set("targets", 1, "area", torch.tensor([math.nan])), ValueError, r"targets\[1\]\['area'\] contains NaN"),
    (_set("targets", 1, "area", [3.0]), TypeError, r"targets\[1\]\['area'\] must be a torch.Tensor"),
]


@pytest.mark.parametrize(("mutate", "error", "message"), BAD_INPUTS)
def test_malformed_input_names_the_argument_and_the_image(mutate, error, message):
    with pytest.raises(error, match=message):
        coco_evaluate(*mutate(*_valid()))


def test_unknown_iou_type():
    with pytest.raises(ValueError, match="iou_type must be one of 'bbox', 'segm'"):
        coco_evaluate(*_valid(), iou_type="keypoints")


def test_segm_needs_masks_of_matching_sizes():
    preds, targets = random_mask_scenes(1200, n_images=2)
    with pytest.raises(ValueError, match=r"preds\[0\] has no 'masks'"):
        coco_evaluate(*_valid(), iou_type="segm")
    bad = [dict(p) for p in preds]
    bad[1]["masks"] = bad[1]["masks"][:, :-1]
    with pytest.raises(ValueError, match=r"preds\[1\]\['masks'\] and targets\[1\]\['masks'\] must have the same height"):
        coco_evaluate(bad, targets, iou_type="segm")
    bad[1]["masks"] = preds[1]["masks"].float()
    with pytest.raises(TypeError, match=r"preds\[1\]\['masks'\] must be bool or uint8"):
        coco_evaluate(bad, targets, iou_type="segm")


# ----------------------------------------------------------------------------------------------
# average_precision
# ----------------------------------------------------------------------------------------------


def random_curve(rng: np.random.Generator, n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision of n ranked detections (true positive with probability 0.5)."""
    tp = rng.random(n) < 0.5
    n_positive = max(int(tp.sum()) + int(rng.integers(0, 5)), 1)
    cum_tp = np.cumsum(tp)
    return cum_tp / n_positive, cum_tp / np.arange(1, n + 1)


def voc11_devkit(recall: np.ndarray, precision: np.ndarray) -> float:
    """The VOC devkit's 11-point AP (voc_eval.py, use_07_metric=True)."""
    ap = 0.0
    for t in np.arange(0.0, 1.1, 0.1):
        ap += (np.max(precision[recall >= t]) if np.sum(recall >= t) else 0.0) / 11.0
    return ap


def all_points_devkit(recall: np.ndarray, precision: np.ndarray) -> float:
    """The VOC devkit's area under the curve (voc_eval.py, use_07_metric=False)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def coco101_loop(recall: np.ndarray, precision: np.ndarray) -> float:
    """101-point AP written plainly: for each point, the best precision at a recall >= it."""
    values = []
    for point in np.linspace(0.0, 1.0, 101):
        reached = recall >= point
        values.append(precision[reached].max() if reached.any() else 0.0)
    return float(np.mean(values))


REFERENCES = {"voc11": voc11_devkit, "all_points": all_points_devkit, "coco101": coco101_loop}


@pytest.mark.parametrize("method", list(REFERENCES))
@pytest.mark.parametrize("seed", range(10))
def test_average_precision_equals_straightforward_computations(method, seed):
    recall, precision = random_curve(np.random.default_rng(seed), n=int(5 + 10 * seed))
    expected = REFERENCES[method](recall, precision)
    ap = average_precision(torch.from_numpy(recall), torch.from_numpy(precision), method)
    assert ap == pytest.approx(expected, abs=1e-12)
    assert average_precision(recall.tolist(), precision.tolist(), method=method) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("method", list(REFERENCES))
def test_average_precision_at_recalls_exactly_on_the_points(method):
    """Recall k/10 exactly: the devkit's arange points decide (0.3 < 0.30000000000000004)."""
    recall = np.arange(1, 11) / 10
    precision = np.linspace(1.0, 0.5, 10)
    assert average_precision(recall, precision, method) == pytest.approx(REFERENCES[method](recall, precision), abs=1e-12)


def test_average_precision_equals_pycocotools_interpolation_on_a_real_curve():
    """The curve of one class at IoU 0.5 from COCOeval's per-image matches, ranked as it ranks them."""
    preds, targets = random_scenes(1300, n_images=30, n_classes=1, tied_scores=True)
    evaluation = run_cocoeval(preds, targets)
    per_image = [e for e in evaluation.evalImgs if e is not None and e["aRng"] == [0, 1e10]]
    scores = np.concatenate([e["dtScores"] for e in per_image])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([e["dtMatches"][0] for e in per_image])[order] > 0
    ignored = np.concatenate([e["dtIgnore"][0] for e in per_image])[order].astype(bool)
    n_positive = sum(int((e["gtIgnore"] == 0).sum()) for e in per_image)
    tp, fp = np.cumsum(matched & ~ignored), np.cumsum(~matched & ~ignored)
    recall, precision = tp / n_positive, tp / np.maximum(tp + fp, 1)
    expected = evaluation.eval["precision"][0, :, 0, 0, 2].mean()
    assert average_precision(recall, precision, "coco101") == pytest.approx(expected, abs=1e-12)


def test_average_precision_edge_cases():
    assert average_precision([], []) == 0.0
    for method in REFERENCES:
        assert average_precision([0.5, 1.0], [1.0, 1.0], method) == 1.0  # perfect detector
        assert average_precision([0.0, 0.0], [0.0, 0.0], method) == 0.0  # only false positives


@pytest.mark.parametrize(
    ("recall", "precision", "method", "error", "message"),
    [
        ([0.1], [1.0], "coco", ValueError, "method must be one of"),
        ([0.1, 0.2], [1.0], "coco101", ValueError, "same length"),
        ([0.5, 0.2], [1.0, 1.0], "coco101", ValueError, "recall must be non-decreasing"),
        ([0.1, 1.5], [1.0, 1.0], "coco101", ValueError, r"recall must lie in \[0, 1\]"),
        ([0.1, 0.2], [1.0, -0.1], "voc11", ValueError, r"precision must lie in \[0, 1\]"),
        ([0.1, math.nan], [1.0, 1.0], "voc11", ValueError, "recall contains NaN"),
        ([[0.1]], [[1.0]], "voc11", ValueError, "recall must have 1 dimensions"),
        ("0.1", [1.0], "voc11", TypeError, "recall must be a 1-D tensor or a sequence"),
        ([0.1, "a"], [1.0, 1.0], "voc11", TypeError, "recall must contain numbers"),
        (0.5, [1.0], "voc11", TypeError, "recall must be a 1-D tensor or a sequence"),
    ],
)
def test_average_precision_bad_input(recall, precision, method, error, message):
    with pytest.raises(error, match=message):
        average_precision(recall, precision, method)


curves = st.lists(st.tuples(st.booleans(), st.floats(0, 1)), min_size=1, max_size=40)


def _curve_of(flags: list[bool], extra_positives: int) -> tuple[np.ndarray, np.ndarray]:
    tp = np.cumsum(flags)
    return tp / max(int(tp[-1]) + extra_positives, 1), tp / np.arange(1, len(flags) + 1)


@settings(max_examples=60, deadline=None)
@given(curve=curves, method=st.sampled_from(list(REFERENCES)), extra=st.integers(0, 5))
def test_property_ap_in_unit_interval_and_raising_precision_never_lowers_it(curve, method, extra):
    recall, precision = _curve_of([flag for flag, _ in curve], extra)
    ap = average_precision(recall, precision, method)
    assert 0.0 <= ap <= 1.0
    raised = np.maximum(precision, [p for _, p in curve])  # raise some precisions
    assert average_precision(recall, raised, method) >= ap - 1e-12


@settings(max_examples=60, deadline=None)
@given(flags=st.lists(st.booleans(), min_size=2, max_size=40), method=st.sampled_from(list(REFERENCES)),
       extra=st.integers(0, 5), data=st.data())  # fmt: skip
def test_property_ranking_a_true_positive_higher_never_lowers_ap(flags, method, extra, data):
    swaps = [i for i in range(len(flags) - 1) if not flags[i] and flags[i + 1]]
    if not swaps:
        return
    i = data.draw(st.sampled_from(swaps))
    better = flags.copy()
    better[i], better[i + 1] = True, False
    before = average_precision(*_curve_of(flags, extra), method)
    after = average_precision(*_curve_of(better, extra), method)
    assert after >= before - 1e-12
