"""Evaluation metrics for detection and segmentation.

* ``coco_evaluate``: the 12 COCO numbers (mAP@[.5:.95], mAP@.5, ..., mAR per object size) of a
  detector or an instance segmenter, equal to pycocotools' ``COCOeval.stats``.
* ``average_precision``: the area under one precision-recall curve, the COCO way (101 points),
  the PASCAL VOC 2007 way (11 points) or the VOC 2010+ way (all points).
* ``proposal_recall``: the fraction of ground-truth boxes that some region proposal covers,
  the number by which region-proposal methods (sliding windows, selective search, an RPN) compare.
* ``confusion_matrix`` and ``segmentation_scores``: pixel accuracy, IoU and Dice of a semantic
  segmentation, as in torchvision's reference scripts.

The COCO bookkeeping runs in numpy, in float64 like pycocotools: it is many small array
operations, for which single-threaded numpy is faster than torch on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from .boxes import box_iou
from .segmentation import boundary_iou
from .validation import (
    check_boxes,
    check_choice,
    check_detections,
    check_finite,
    check_labelled_boxes,
    check_per_image_pairs,
    check_positive_int,
    check_probability,
    check_same_length,
    check_tensor,
)

__all__ = [
    "coco_evaluate", "average_precision", "match_detections", "pr_curve", "precision_envelope", "proposal_recall",
    "confusion_matrix", "segmentation_scores", "segmentation_evaluate",
]

# The COCO protocol's parameters, those of pycocotools' ``Params`` (numpy's linspace values bit for
# bit: the recall point "0.70" is 0.7000000000000001, which a recall of exactly 0.7 does not reach).
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # T = 10
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # R = 101
MAX_DETECTIONS = np.array([1, 10, 100])  # M = 3, per image and class
AREA_RANGES = np.array([[0, 1e10], [0, 32**2], [32**2, 96**2], [96**2, 1e10]])  # A = 4: all, small, medium, large
VOC_POINTS = np.arange(0.0, 1.1, 0.1)  # the VOC devkit's 11 recall points ("0.3" is 0.30000000000000004)

COCO_KEYS = (
    "map", "map_50", "map_75", "map_small", "map_medium", "map_large",
    "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
)  # fmt: skip
IOU_TYPES = ("bbox", "segm")
AP_METHODS = ("coco101", "voc11", "all_points")
_FLOAT32_EXACT_COUNTS = 2**24  # float32 holds every integer up to 2**24: pixel counts stay exact


# ---------------------------------------------------------------------------------------------
# Precision-recall curves
# ---------------------------------------------------------------------------------------------
def _envelope(precision: np.ndarray) -> np.ndarray:
    """Monotone precision: at each point, the best precision from that point to the end (``[N]``)."""
    return np.maximum.accumulate(precision[::-1])[::-1]


def _precision_at(recall: np.ndarray, precision: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Interpolated precision of a curve at given recall points.

    The interpolated precision at recall ``r`` is the best precision reached at a recall ``>= r``,
    0 if the curve never reaches ``r``.

    Args:
        recall (array[N]): non-decreasing recall.
        precision (array[N]): precision at the same points.
        points (array[P]): recall points, ascending.

    Returns:
        array[P]: interpolated precision at each point.
    """
    envelope = np.append(_envelope(precision), 0.0)  # 0 for the points that the curve never reaches
    return envelope[np.searchsorted(recall, points, side="left")]


def _check_curve(values: object, name: str) -> np.ndarray:
    """Require a 1-D tensor, array or sequence of finite numbers in [0, 1]; return float64 numpy."""
    if isinstance(values, Tensor):
        values = values.detach().cpu()
    elif not isinstance(values, (Sequence, np.ndarray)) or isinstance(values, str):
        raise TypeError(f"{name} must be a 1-D tensor or a sequence of numbers, got {type(values).__name__}")
    try:
        curve = torch.as_tensor(values, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{name} must contain numbers only ({error})") from None
    check_tensor(curve, name, ndim=1)
    check_finite(curve, name)
    if not bool(((curve >= 0) & (curve <= 1)).all()):
        raise ValueError(f"{name} must lie in [0, 1], got values from {curve.min().item()} to {curve.max().item()}")
    return curve.numpy()


def average_precision(
    recall: Tensor | Sequence[float], precision: Tensor | Sequence[float], method: str = "coco101"
) -> float:
    """Average precision (AP): the area under a precision-recall curve.

    The curve is made monotone first: the precision at recall ``r`` becomes the best precision
    reached at any recall ``>= r``. Then

    * ``"coco101"``: mean of that precision at the 101 recall points 0, 0.01, ..., 1, a point the
      curve never reaches counting 0 (pycocotools),
    * ``"voc11"``: the same at the 11 points 0, 0.1, ..., 1 (PASCAL VOC 2007),
    * ``"all_points"``: the exact area under the monotone curve, one rectangle per increase of
      recall (PASCAL VOC 2010 and later).

    The points are numpy's ``linspace(0, 1, 101)`` and ``arange(0, 1.1, 0.1)``, as in
    pycocotools and the VOC devkit: their "0.3" is 0.30000000000000004, which a recall of
    exactly 0.3 does not reach.

    Args:
        recall (Tensor[N] or sequence): recall after each ranked detection, non-decreasing, in [0, 1].
        precision (Tensor[N] or sequence): precision at the same points, in [0, 1].
        method (str): ``"coco101"``, ``"voc11"`` or ``"all_points"``.

    Returns:
        float: AP in [0, 1]; 0 for an empty curve.
    """
    check_choice(method, "method", AP_METHODS)
    recall, precision = _check_curve(recall, "recall"), _check_curve(precision, "precision")
    check_same_length(recall, precision, "recall", "precision")
    if np.any(np.diff(recall) < 0):
        raise ValueError("recall must be non-decreasing (rank the detections by decreasing score first)")
    if method == "all_points":
        widths = np.diff(recall, prepend=0.0)  # recall gained at each point
        return float(np.sum(widths * _envelope(precision)))
    points = RECALL_POINTS if method == "coco101" else VOC_POINTS
    return float(np.mean(_precision_at(recall, precision, points)))


# ---------------------------------------------------------------------------------------------
# One class's precision-recall curve, step by step (what notebook 03 and its explorer draw)
# ---------------------------------------------------------------------------------------------
def _match_image(boxes: Tensor, gt: Tensor, iou_threshold: float) -> Tensor:
    """Greedy matching in one image: each detection (by decreasing score) takes the free GT with
    the highest IoU, if that IoU is ``>= iou_threshold``. Returns the true-positive flags ``[D]``."""
    ious = box_iou(boxes.double(), gt.double())  # [D, G]; float64 like pycocotools
    free = torch.ones(len(gt), dtype=torch.bool)
    hit = torch.zeros(len(boxes), dtype=torch.bool)
    for d in range(len(boxes)):
        candidates = torch.where(free, ious[d], -1.0)
        if len(gt) and candidates.max() >= iou_threshold:
            free[candidates.argmax()] = False
            hit[d] = True
    return hit


def match_detections(
    preds: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]], label: int, iou_threshold: float = 0.5
) -> tuple[Tensor, Tensor, int]:
    """Rank the detections of class ``label`` over all images and mark each true or false positive.

    In each image, detections of that class (by decreasing score) greedily take the
    unmatched ground-truth box of that class with the highest IoU, if it is ``>= iou_threshold``;
    a detection that finds none (a duplicate, a bad box, a false alarm) is a false positive.

    Args:
        preds (list[dict]): per image, ``boxes`` (Tensor[D, 4]), ``scores`` and ``labels``.
        targets (list[dict]): per image, ``boxes`` (Tensor[G, 4]) and ``labels``.
        label (int): the class.
        iou_threshold (float): in [0, 1].

    Returns:
        (Tensor[D] float, Tensor[D] bool, int): the scores of all images' detections of the class
        by decreasing score (ties keep image order), their true-positive flags, and the number of
        ground-truth objects of the class.
    """
    check_per_image_pairs(preds, targets)
    label = check_positive_int(label, "label", allow_zero=True)
    iou_threshold = check_probability(iou_threshold, "iou_threshold")
    all_scores, all_hits, num_gt = [], [], 0
    for i, (pred, target) in enumerate(zip(preds, targets)):
        boxes, scores, labels = check_detections(pred, f"preds[{i}]")
        gt_boxes, gt_labels = check_labelled_boxes(target, f"targets[{i}]")
        mine = torch.nonzero(labels == label).flatten()
        order = mine[torch.sort(scores[mine], descending=True, stable=True).indices]
        gt = gt_boxes[gt_labels == label]
        all_scores.append(scores[order])
        all_hits.append(_match_image(boxes[order], gt, iou_threshold))
        num_gt += len(gt)
    scores, hits = torch.cat(all_scores), torch.cat(all_hits)
    ranking = torch.sort(scores, descending=True, stable=True).indices
    return scores[ranking], hits[ranking], num_gt


def pr_curve(is_tp: Tensor, num_gt: int) -> tuple[Tensor, Tensor]:
    """Recall and precision after each ranked detection.

    Args:
        is_tp (Tensor[D] bool): true-positive flags by decreasing score.
        num_gt (int): number of ground-truth objects (> 0).

    Returns:
        (Tensor[D], Tensor[D]) float64: recall = TP / num_gt and precision = TP / (TP + FP).
    """
    is_tp = check_tensor(is_tp, "is_tp", ndim=1)
    num_gt = check_positive_int(num_gt, "num_gt")
    if int(is_tp.sum()) > num_gt:
        raise ValueError(f"is_tp has {int(is_tp.sum())} true positives but there are only num_gt={num_gt} objects")
    tp = torch.cumsum(is_tp.double(), 0)
    ranks = torch.arange(1, len(is_tp) + 1, dtype=torch.float64)
    return tp / num_gt, tp / ranks


def precision_envelope(precision: Tensor) -> Tensor:
    """The monotone version of a precision curve: at each point, the best precision at that
    point or any later one (higher recall). ``[D] -> [D]``."""
    precision = check_finite(check_tensor(precision, "precision", ndim=1), "precision")
    return precision.flip(0).cummax(0).values.flip(0)


# ---------------------------------------------------------------------------------------------
# COCO evaluation: reading and checking the inputs
# ---------------------------------------------------------------------------------------------
@dataclass
class _Objects:
    """The detections (or the ground truths) of a data set: one row per object, image after image."""

    image: np.ndarray  # int64 [N]: index of the image
    position: np.ndarray  # int64 [N]: row of the object in its image's input tensors
    label: np.ndarray  # int64 [N]
    score: np.ndarray  # float64 [N] (ground truths: 0)
    area: np.ndarray  # float64 [N]: decides small / medium / large
    crowd: np.ndarray  # bool [N] (detections: False)
    boxes: np.ndarray  # float64 [N, 4] xyxy (segm: zeros)
    masks: list[np.ndarray]  # per image, bool [n_i, H * W], rows in input order (bbox: empty)

    def take(self, index: np.ndarray) -> _Objects:
        """The rows ``index`` (the masks stay per image: ``position`` points into them)."""
        return replace(self, **{f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "masks"})


def _require_integers(value: Tensor, name: str, *, allow_bool: bool = False) -> None:
    if value.is_floating_point() or value.is_complex() or (value.dtype == torch.bool and not allow_bool):
        raise TypeError(f"{name} must have an integer dtype (torch.int64), got {value.dtype}")


def _check_length(value: Tensor, name: str, n: int) -> None:
    if value.shape[0] != n:
        raise ValueError(f"{name} has {value.shape[0]} entries but there are {n} labels")


def _read_image(entry: object, where: str, iou_type: str, is_target: bool) -> dict[str, np.ndarray]:
    """Check the keys, types, shapes and dtypes of one image's dict; return its tensors as numpy arrays.

    ``where`` names the entry in messages (``"preds[3]"``). Values (finite, x2 >= x1, ...) are
    checked by ``_to_table``, for all images at once.
    """
    if not isinstance(entry, Mapping):
        raise TypeError(f"{where} must be a dict, got {type(entry).__name__}")
    region = "boxes" if iou_type == "bbox" else "masks"
    for key in ("labels", region) + (() if is_target else ("scores",)):
        if key not in entry:
            raise ValueError(f"{where} has no {key!r} entry (needed for iou_type={iou_type!r})")
    labels = check_tensor(entry["labels"], f"{where}['labels']", ndim=1)
    _require_integers(labels, f"{where}['labels']")
    n = labels.shape[0]
    out = {"labels": labels}
    if iou_type == "bbox":
        out["boxes"] = check_tensor(entry["boxes"], f"{where}['boxes']", ndim=2)
        if out["boxes"].shape[1] != 4:
            raise ValueError(f"{where}['boxes'] must have shape [N, 4], got {tuple(out['boxes'].shape)}")
    else:
        out["masks"] = check_tensor(entry["masks"], f"{where}['masks']", ndim=3)
        if out["masks"].dtype not in (torch.bool, torch.uint8):
            raise TypeError(f"{where}['masks'] must be bool or uint8, got {out['masks'].dtype}")
    optional = ("iscrowd", "area") if is_target else ("scores",)
    out.update({key: check_tensor(entry[key], f"{where}[{key!r}]", ndim=1) for key in optional if key in entry})
    if "scores" in out:
        check_tensor(out["scores"], f"{where}['scores']", floating=True)
    if "iscrowd" in out:
        _require_integers(out["iscrowd"], f"{where}['iscrowd']", allow_bool=True)
    if "area" in out and (out["area"].is_complex() or out["area"].dtype == torch.bool):
        raise TypeError(f"{where}['area'] must hold real numbers, got {out['area'].dtype}")
    for key, value in out.items():
        _check_length(value, f"{where}[{key!r}]", n)
    # numpy has no bfloat16; numpy(force=True) also detaches and copies from the GPU
    return {key: (v.float() if v.dtype == torch.bfloat16 else v).numpy(force=True) for key, v in out.items()}


def _check_binary(value: Tensor, name: str) -> Tensor:
    if bool(((value != 0) & (value != 1)).any()):
        raise ValueError(f"{name} must contain only 0 and 1, got {value.unique().tolist()}")
    return value


def _check_area(value: Tensor, name: str) -> Tensor:
    check_finite(value, name)
    if bool((value < 0).any()):
        raise ValueError(f"{name} must be >= 0, got {value.min().item()}")
    return value


# key: (a numpy test of the values of all images at once, the check that explains a failure)
_VALUE_CHECKS: dict[str, tuple[Callable[[np.ndarray], bool], Callable[[Tensor, str], Tensor]]] = {
    "boxes": (lambda b: bool(np.isfinite(b).all() and (b[:, 2:] >= b[:, :2]).all()), check_boxes),
    "scores": (lambda s: bool(np.isfinite(s).all()), check_finite),
    "iscrowd": (lambda c: bool(np.isin(c, (0, 1)).all()), _check_binary),
    "area": (lambda a: bool(np.isfinite(a).all() and (a >= 0).all()), _check_area),
}


def _column(images: list[dict[str, np.ndarray]], key: str, default: Callable[[int], np.ndarray]) -> np.ndarray:
    """One field of every image, concatenated (``default(n)`` for images without it)."""
    parts = [image[key] if key in image else default(len(image["labels"])) for image in images]
    return np.concatenate(parts) if parts else default(0)


def _flatten_masks(masks: np.ndarray) -> np.ndarray:
    """``[n, H, W]`` masks as bool ``[n, H * W]`` (nonzero = object)."""
    n, height, width = masks.shape
    return masks.reshape(n, height * width).astype(bool)


def _to_table(images: list[dict[str, np.ndarray]], name: str, iou_type: str) -> _Objects:
    """Check the values of every image and stack them into one table (``name``: "preds" or "targets").

    The values are tested all at once; on a failure the check runs image by image, so that
    its message names the image.
    """
    for key, (valid, check) in _VALUE_CHECKS.items():
        present = [(i, image[key]) for i, image in enumerate(images) if key in image]
        if present and not valid(np.concatenate([value for _, value in present])):
            for i, value in present:
                check(torch.from_numpy(value), f"{name}[{i}][{key!r}]")
    counts = np.array([len(image["labels"]) for image in images], dtype=np.int64)
    if iou_type == "bbox":
        boxes = _column(images, "boxes", lambda n: np.zeros((n, 4))).astype(np.float64)
        masks, default_area = [], (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    else:
        boxes = np.zeros((counts.sum(), 4))
        masks = [_flatten_masks(image["masks"]) for image in images]
        default_area = np.concatenate([m.sum(1, dtype=np.float64) for m in masks] + [np.zeros(0)])
    given_area = _column(images, "area", lambda n: np.full(n, np.nan)).astype(np.float64)
    return _Objects(
        image=np.repeat(np.arange(len(images)), counts),
        position=np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts),
        label=_column(images, "labels", lambda n: np.zeros(n, dtype=np.int64)).astype(np.int64),
        score=_column(images, "scores", np.zeros).astype(np.float64),
        area=np.where(np.isnan(given_area), default_area, given_area),
        crowd=_column(images, "iscrowd", lambda n: np.zeros(n, dtype=np.int64)).astype(bool),
        boxes=boxes,
        masks=masks,
    )


def _read_inputs(preds: object, targets: object, iou_type: str) -> tuple[_Objects, _Objects]:
    """Check ``preds`` and ``targets``; return the tables of detections and of ground truths."""
    for value, name in ((preds, "preds"), (targets, "targets")):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list with one dict per image, got {type(value).__name__}")
    if len(preds) != len(targets):
        raise ValueError(f"preds and targets must have one entry per image each, got {len(preds)} and {len(targets)}")
    pred_images = [_read_image(p, f"preds[{i}]", iou_type, is_target=False) for i, p in enumerate(preds)]
    target_images = [_read_image(t, f"targets[{i}]", iou_type, is_target=True) for i, t in enumerate(targets)]
    if iou_type == "segm":
        for i, (p, t) in enumerate(zip(pred_images, target_images)):
            if p["masks"].shape[1:] != t["masks"].shape[1:]:
                raise ValueError(
                    f"preds[{i}]['masks'] and targets[{i}]['masks'] must have the same height and width,"
                    f" got {tuple(p['masks'].shape[1:])} and {tuple(t['masks'].shape[1:])}"
                )
    return _to_table(pred_images, "preds", iou_type), _to_table(target_images, "targets", iou_type)


# ---------------------------------------------------------------------------------------------
# COCO evaluation: IoU, matching, accumulation
# ---------------------------------------------------------------------------------------------
def _box_pair_iou(det: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of each detection box with the GT box at the same index (elementwise, no +1 pixel).

    Against a crowd GT the union is the detection's own area: a detection inside a crowd
    region is fully covered by it.

    Args:
        det (array[..., 4]): xyxy detection boxes.
        gt (array[..., 4]): xyxy GT boxes, same shape.
        crowd (array[...]): whether each GT is a crowd region.

    Returns:
        array[...]: the IoUs.
    """
    width = np.clip(np.minimum(det[..., 2], gt[..., 2]) - np.maximum(det[..., 0], gt[..., 0]), 0, None)
    height = np.clip(np.minimum(det[..., 3], gt[..., 3]) - np.maximum(det[..., 1], gt[..., 1]), 0, None)
    inter = width * height
    det_area = (det[..., 2] - det[..., 0]) * (det[..., 3] - det[..., 1])
    gt_area = (gt[..., 2] - gt[..., 0]) * (gt[..., 3] - gt[..., 1])
    union = np.where(crowd, det_area, det_area + gt_area - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)  # inter > 0 => union > 0


def _mask_iou(det: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of every detection mask (bool ``[D, P]``, P pixels) with every GT mask (``[G, P]``): ``[D, G]``.

    Against a crowd GT (``crowd``: bool ``[G]``) the union is the detection's own area.
    """
    exact = np.float32 if det.shape[1] <= _FLOAT32_EXACT_COUNTS else np.float64  # float32 is faster
    inter = (det.astype(exact) @ gt.astype(exact).T).astype(np.float64)  # pixels in both masks
    det_area, gt_area = np.count_nonzero(det, axis=1)[:, None], np.count_nonzero(gt, axis=1)[None, :]
    union = np.where(crowd, det_area, det_area + gt_area - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)


def _iou_function(dets: _Objects, gts: _Objects, iou_type: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A function ``iou(det_rows, gt_rows)``: IoU of detection ``det_rows[i]`` with GT ``gt_rows[i]``.

    The rows (integer arrays of any shape) must pair objects of the same image; both tables
    must be sorted by image.
    """
    if iou_type == "bbox":
        return lambda d, g: _box_pair_iou(dets.boxes[d], gts.boxes[g], gts.crowd[g])
    # Masks: one [D_i, G_i] matrix per image (a matrix product), stored flat, then looked up.
    n_images = len(dets.masks)
    n_det, n_gt = np.bincount(dets.image, minlength=n_images), np.bincount(gts.image, minlength=n_images)
    det_start, gt_start = np.cumsum(n_det) - n_det, np.cumsum(n_gt) - n_gt
    tables = [np.zeros(0)]
    for i in range(n_images):
        d = slice(det_start[i], det_start[i] + n_det[i])
        g = slice(gt_start[i], gt_start[i] + n_gt[i])
        det_masks, gt_masks = dets.masks[i][dets.position[d]], gts.masks[i][gts.position[g]]
        tables.append(_mask_iou(det_masks, gt_masks, gts.crowd[g]).ravel())
    table = np.concatenate(tables)
    offset = np.cumsum(n_det * n_gt) - n_det * n_gt

    def iou(d: np.ndarray, g: np.ndarray) -> np.ndarray:
        image = dets.image[d]
        return table[offset[image] + (d - det_start[image]) * n_gt[image] + (g - gt_start[image])]

    return iou


def _outside_area_ranges(area: np.ndarray) -> np.ndarray:
    """Whether each area (``[N]``) lies outside each area range: bool ``[N, A]``."""
    return (area[:, None] < AREA_RANGES[:, 0]) | (area[:, None] > AREA_RANGES[:, 1])


def _greedy_match(ious: np.ndarray, gt_ignore: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """COCO matching of a batch of (image, class) groups, for every area range and IoU threshold.

    Detections, by decreasing score, pick in turn the free GT with the highest IoU at or above
    the threshold. GTs that count are preferred: an ignored GT is taken only when no GT that
    counts qualifies. Crowd GTs stay free. As in pycocotools, a tie in IoU goes to the GT that
    comes later in the input.

    Args:
        ious (array[B, D, G]): IoU of each detection with each GT of its group; -1 for padding.
        gt_ignore (array[B, A, G]): GT ignored in area range ``a`` (crowd or area outside it).
        gt_crowd (array[B, G]): crowd GTs.

    Returns:
        array[B, A, T, D]: column of the matched GT, or -1.
    """
    B, D, G = ious.shape
    A, T = gt_ignore.shape[1], len(IOU_THRESHOLDS)
    thresholds = IOU_THRESHOLDS.reshape(1, 1, T, 1)
    counts = ~gt_ignore[:, :, None, :]  # [B, A, 1, G]
    always_free = gt_crowd[:, None, None, :]  # [B, 1, 1, G]
    columns = np.arange(G)
    taken = np.zeros((B, A, T, G), dtype=bool)
    match = np.full((B, A, T, D), -1)
    for d in range(D):  # rank by rank, all groups, area ranges and thresholds at once
        iou = ious[:, d, None, None, :]  # [B, 1, 1, G]
        candidate = (iou >= thresholds) & (always_free | ~taken)  # [B, A, T, G]
        preferred = candidate & counts
        candidate = np.where(preferred.any(-1, keepdims=True), preferred, candidate)
        best = G - 1 - np.where(candidate, iou, -1.0)[..., ::-1].argmax(-1)  # the last of the best
        found = candidate.any(-1)  # [B, A, T]
        match[..., d] = np.where(found, best, -1)
        taken |= found[..., None] & (columns == best[..., None])
    return match


def _next_power_of_two(n: np.ndarray) -> np.ndarray:
    return 2 ** np.ceil(np.log2(np.maximum(n, 1))).astype(np.int64)


def _match_all(
    det_group: np.ndarray, gt_group: np.ndarray, gt_ignore: np.ndarray, gt_crowd: np.ndarray,
    iou: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:  # fmt: skip
    """Match every detection, for every area range and IoU threshold.

    Detections and GTs come sorted by group (image, class), the detections of a group by
    decreasing score. Groups of similar size (counts rounded up to a power of two) are stacked
    into padded ``[B, D, G]`` IoU batches for ``_greedy_match``.

    Args:
        det_group (array[N_det]), gt_group (array[N_gt]): group of each detection / GT, sorted.
        gt_ignore (array[N_gt, A]): GT ignored in each area range.
        gt_crowd (array[N_gt]): crowd GTs.
        iou: see ``_iou_function``.

    Returns:
        array[N_det, A, T]: row of the matched GT, or -1.
    """
    n_groups = max(det_group.max(initial=-1), gt_group.max(initial=-1)) + 1
    det_count, gt_count = np.bincount(det_group, minlength=n_groups), np.bincount(gt_group, minlength=n_groups)
    det_start, gt_start = np.cumsum(det_count) - det_count, np.cumsum(gt_count) - gt_count
    match = np.full((len(det_group), gt_ignore.shape[1], len(IOU_THRESHOLDS)), -1)
    both = (det_count > 0) & (gt_count > 0)
    size_class = np.stack([_next_power_of_two(det_count), _next_power_of_two(gt_count)], axis=1)
    for size in np.unique(size_class[both], axis=0):
        groups = np.flatnonzero(both & (size_class == size).all(1))
        n_det, n_gt = det_count[groups, None], gt_count[groups, None]  # [B, 1]
        det_offset, gt_offset = np.arange(n_det.max()), np.arange(n_gt.max())
        det_real, gt_real = det_offset < n_det, gt_offset < n_gt  # [B, D], [B, G]
        det_rows = det_start[groups, None] + np.where(det_real, det_offset, 0)  # padding: the first row
        gt_rows = gt_start[groups, None] + np.where(gt_real, gt_offset, 0)
        ious = np.where(gt_real[:, None, :], iou(det_rows[:, :, None], gt_rows[:, None, :]), -1.0)
        columns = _greedy_match(ious, gt_ignore[gt_rows].transpose(0, 2, 1), gt_crowd[gt_rows])  # [B, A, T, D]
        rows = np.take_along_axis(gt_rows, columns.clip(0).reshape(len(groups), -1), axis=1).reshape(columns.shape)
        rows = np.where(columns >= 0, rows, -1).transpose(0, 3, 1, 2)  # [B, D, A, T]
        match[det_rows[det_real]] = rows[det_real]
    return match


def _stable_order(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Indices sorting by ``primary``, then ``secondary``, then input order (all ascending)."""
    return np.lexsort((secondary, primary))


def _coco_curve(tp: np.ndarray, fp: np.ndarray, n_positive: int) -> tuple[np.ndarray, float]:
    """COCO precision at the 101 recall points, and final recall, of one ranked list of detections.

    Recall grows and precision peaks only at true positives, so the curve is evaluated there
    (pycocotools evaluates it at every detection; the result is the same).

    Args:
        tp, fp (array[N]): true / false positive flags, by decreasing score (an ignored detection is neither).
        n_positive (int): number of GTs that count, > 0.

    Returns:
        (array[R], float): interpolated precision, recall.
    """
    tp_rank = np.flatnonzero(tp)
    n_tp = np.arange(1, len(tp_rank) + 1)  # true positives up to each of them
    n_fp = np.searchsorted(np.flatnonzero(fp), tp_rank)  # false positives ranked before each
    recall = n_tp / n_positive
    precision = n_tp / (n_fp + n_tp + np.spacing(1))  # pycocotools' guard against 0 / 0
    return _precision_at(recall, precision, RECALL_POINTS), len(tp_rank) / n_positive


def _accumulate(
    det_class: np.ndarray, det_rank: np.ndarray, det_score: np.ndarray, det_ignored: np.ndarray, match: np.ndarray,
    gt_class: np.ndarray, gt_ignore: np.ndarray, n_classes: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Precision ``[T, R, K, A, M]`` and recall ``[T, K, A, M]``, as pycocotools' ``accumulate``.

    Args:
        det_class, det_rank, det_score (array[N_det]): class index, rank in its (image, class)
            group and score of each detection, sorted by image.
        det_ignored (array[N_det, A]): detection outside each area range.
        match (array[N_det, A, T]): matched GT row, or -1.
        gt_class (array[N_gt]): class index of each GT.
        gt_ignore (array[N_gt, A]): GT ignored in each area range.
        n_classes (int): K.

    Returns:
        (array, array): -1 where a class has no GT that counts in an area range.
    """
    T, R, A, M = len(IOU_THRESHOLDS), len(RECALL_POINTS), len(AREA_RANGES), len(MAX_DETECTIONS)
    precision = np.full((T, R, n_classes, A, M), -1.0)
    recall = np.full((T, n_classes, A, M), -1.0)
    if len(gt_class) == 0:
        return precision, recall
    n_positive = np.stack([np.bincount(gt_class[~gt_ignore[:, a]], minlength=n_classes) for a in range(A)], axis=1)
    # A matched detection takes its GT's ignore flag; an unmatched one is ignored outside the area range.
    matched = match >= 0
    ignored = np.where(matched, gt_ignore[match.clip(0), np.arange(A)[:, None]], det_ignored[:, :, None])
    tp = (matched & ~ignored).transpose(1, 2, 0)  # [A, T, N_det]
    fp = (~matched & ~ignored).transpose(1, 2, 0)
    # Per class, the detections of all images ranked by score; ties keep image order, then rank.
    order = _stable_order(det_class, -det_score)
    bounds = np.searchsorted(det_class[order], np.arange(n_classes + 1))
    for k in np.flatnonzero(n_positive.any(1)):
        for m, max_det in enumerate(MAX_DETECTIONS):
            rows = order[bounds[k] : bounds[k + 1]]
            rows = rows[det_rank[rows] < max_det]  # each image's first max_det detections of class k
            tp_k, fp_k = tp[:, :, rows], fp[:, :, rows]  # [A, T, N]
            for a in np.flatnonzero(n_positive[k]):
                for t in range(T):
                    precision[t, :, k, a, m], recall[t, k, a, m] = _coco_curve(tp_k[a, t], fp_k[a, t], n_positive[k, a])
    return precision, recall


def _summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """The 12 COCO numbers: means over the entries that are not -1 (-1 if none)."""

    def mean(values: np.ndarray) -> float:
        values = values[values > -1]
        return float(np.mean(values)) if values.size else -1.0

    t50, t75 = list(IOU_THRESHOLDS).index(0.5), list(IOU_THRESHOLDS).index(0.75)
    everything, small, medium, large = range(len(AREA_RANGES))
    at1, at10, at100 = range(len(MAX_DETECTIONS))
    stats = (
        precision[..., everything, at100], precision[t50, ..., everything, at100],
        precision[t75, ..., everything, at100], precision[..., small, at100],
        precision[..., medium, at100], precision[..., large, at100],
        recall[..., everything, at1], recall[..., everything, at10], recall[..., everything, at100],
        recall[..., small, at100], recall[..., medium, at100], recall[..., large, at100],
    )  # fmt: skip
    return {key: mean(values) for key, values in zip(COCO_KEYS, stats)}


def coco_evaluate(
    preds: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]], iou_type: str = "bbox"
) -> dict[str, float]:
    """COCO mean average precision (mAP) and recall (mAR), equal to pycocotools' ``COCOeval``.

    The protocol, step by step:

    1. Per image and class, detections are sorted by decreasing score (ties keep input order);
       only the first 100 are kept.
    2. IoU of each detection with each ground truth (GT) of the same image and class: box IoU
       (no +1 pixel) or mask IoU. Against a crowd GT (``iscrowd=1``) the union is the
       detection's own area.
    3. For each IoU threshold (0.50, 0.55, ..., 0.95) and area range (all, small <= 32²,
       medium, large >= 96², both ends inclusive, on the GT's ``area``), detections are matched
       greedily by decreasing score: each takes the free GT with the highest IoU at or above
       the threshold, preferring GTs that count over ignored ones (crowd, or area outside the
       range); a crowd GT can absorb any number of detections. A detection matched to an
       ignored GT, or unmatched with its own area outside the range, is ignored: neither a true
       nor a false positive.
    4. Per class, area range and cap on detections per image (1, 10, 100), the detections of
       all images are ranked by score (a stable sort: ties keep image order). Cumulative true
       and false positives give a precision-recall curve; precision is made monotone and read
       at the recall points 0, 0.01, ..., 1 (AP = their mean); AR is the final recall.
    5. Each number is a mean over IoU thresholds and classes. A class without any GT that
       counts (in that area range) is left out; a number no class can give is -1.

    Unlike pycocotools, no detections at all is fine: AP and AR are then 0 (-1 without GT).

    Args:
        preds (list[dict]): one dict per image, as torchmetrics' ``MeanAveragePrecision`` takes:
            ``boxes`` (Tensor[N, 4] xyxy, for bbox), ``masks`` (bool/uint8 Tensor[N, H, W], for
            segm; nonzero = object), ``scores`` (float Tensor[N]) and ``labels`` (int64 Tensor[N]).
        targets (list[dict]): one dict per image: ``boxes`` or ``masks``, ``labels``, optional
            ``iscrowd`` (Tensor[N] of 0/1) and ``area`` (Tensor[N]; default: the box area for
            bbox, the mask's pixel count for segm).
        iou_type (str): ``"bbox"`` or ``"segm"``.

    Returns:
        dict[str, float]: ``map``, ``map_50``, ``map_75``, ``map_small``, ``map_medium``,
        ``map_large``, ``mar_1``, ``mar_10``, ``mar_100``, ``mar_small``, ``mar_medium``,
        ``mar_large``.
    """
    check_choice(iou_type, "iou_type", IOU_TYPES)
    dets, gts = _read_inputs(preds, targets, iou_type)
    classes = np.unique(np.concatenate([dets.label, gts.label]))
    det_class, gt_class = np.searchsorted(classes, dets.label), np.searchsorted(classes, gts.label)
    # Detections by group (image, class), then decreasing score; each group keeps its first 100.
    det_group = dets.image * len(classes) + det_class
    order = _stable_order(det_group, -dets.score)
    rank = np.arange(len(order)) - np.searchsorted(det_group[order], det_group[order])  # minus the group's start
    order, det_rank = order[rank < MAX_DETECTIONS[-1]], rank[rank < MAX_DETECTIONS[-1]]
    dets, det_class, det_group = dets.take(order), det_class[order], det_group[order]
    # GTs by group, in input order.
    gt_group = gts.image * len(classes) + gt_class
    order = np.argsort(gt_group, kind="stable")
    gts, gt_class, gt_group = gts.take(order), gt_class[order], gt_group[order]
    gt_ignore = gts.crowd[:, None] | _outside_area_ranges(gts.area)  # [N_gt, A]

    match = _match_all(det_group, gt_group, gt_ignore, gts.crowd, _iou_function(dets, gts, iou_type))
    precision, recall = _accumulate(
        det_class, det_rank, dets.score, _outside_area_ranges(dets.area), match, gt_class, gt_ignore, len(classes)
    )
    return _summarize(precision, recall)


# ---------------------------------------------------------------------------------------------
# Region proposals
# ---------------------------------------------------------------------------------------------
def proposal_recall(
    proposals: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]], iou_threshold: float = 0.5
) -> float:
    """Fraction of the ground-truth boxes of all images covered by a proposal of their image with
    IoU >= ``iou_threshold`` (classes play no part: proposals have none).

    Args:
        proposals: one Tensor[P_i, 4] (xyxy) per image; P_i may be 0.
        targets: one dict per image with ``boxes`` (Tensor[G_i, 4] xyxy).

    Returns:
        float in [0, 1]; 0.0 when there is no ground-truth box at all.
    """
    if not isinstance(proposals, Sequence) or not isinstance(targets, Sequence):
        raise TypeError("proposals and targets must be sequences (one entry per image)")
    if len(proposals) != len(targets):
        raise ValueError(f"proposals and targets must have one entry per image, got {len(proposals)} and {len(targets)}")
    iou_threshold = check_probability(iou_threshold, "iou_threshold")
    found = total = 0
    for i, (props, target) in enumerate(zip(proposals, targets)):
        props = check_boxes(props, f"proposals[{i}]")
        if not isinstance(target, Mapping) or "boxes" not in target:
            raise ValueError(f"targets[{i}] must be a dict with 'boxes'")
        gt = check_boxes(target["boxes"], f"targets[{i}]['boxes']")
        total += len(gt)
        if len(gt) and len(props):
            found += int((box_iou(gt, props).max(dim=1).values >= iou_threshold).sum())
    return found / total if total else 0.0


# ---------------------------------------------------------------------------------------------
# Semantic segmentation
# ---------------------------------------------------------------------------------------------
def _check_label_map(value: object, name: str) -> Tensor:
    value = check_tensor(value, name)
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices (e.g. torch.int64), got {value.dtype}")
    return value


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = 255) -> Tensor:
    """Pixel confusion matrix ``mat[gt, pred]``: how many pixels of true class ``gt`` were predicted ``pred``.

    Pixels whose target is outside ``[0, num_classes)`` or equal to ``ignore_index`` (e.g. the
    255 "void" border of PASCAL VOC) are skipped, as in torchvision's reference scripts.

    Args:
        pred (Tensor[...]): predicted class of each pixel (integers in ``[0, num_classes)``).
        target (Tensor[...]): true class of each pixel, same shape.
        num_classes (int): number of classes C.
        ignore_index (int or None): target value to skip.

    Returns:
        Tensor[C, C]: int64 pixel counts; rows are true classes, columns predicted ones.
    """
    n = check_positive_int(num_classes, "num_classes")
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise TypeError(f"ignore_index must be an int or None, got {type(ignore_index).__name__}")
    pred, target = _check_label_map(pred, "pred"), _check_label_map(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    counted = (target >= 0) & (target < n)
    if ignore_index is not None:
        counted &= target != ignore_index
    pred, target = pred[counted].long(), target[counted].long()
    if pred.numel() and not bool(((pred >= 0) & (pred < n)).all()):
        raise ValueError(
            f"pred must hold classes in [0, {n}) where the target is counted,"
            f" got {pred.min().item()} to {pred.max().item()}"
        )
    return torch.bincount(n * target + pred, minlength=n * n).reshape(n, n).cpu()


def segmentation_scores(confmat: Tensor) -> dict[str, float | Tensor]:
    """Pixel accuracy, per-class IoU and Dice, and their means, from a confusion matrix ``mat[gt, pred]``.

    * pixel accuracy = correct pixels / all pixels,
    * IoU of class c = ``mat[c, c] / (row c + column c - mat[c, c])`` (torchvision's references),
    * Dice of class c = ``2 mat[c, c] / (row c + column c)`` (= F1 score).

    A class absent from both the ground truth and the prediction has no IoU or Dice (0 / 0):
    it gets 0 in the per-class tensors and is left out of ``mean_iou`` and ``mean_dice``, so
    that the means never see a NaN. With no pixel at all, every score is 0.

    Args:
        confmat (Tensor[C, C]): non-negative counts, rows = true classes, columns = predictions.

    Returns:
        dict: ``pixel_accuracy`` (float), ``iou`` (float64 Tensor[C]), ``mean_iou`` (float),
        ``dice`` (float64 Tensor[C]), ``mean_dice`` (float).
    """
    confmat = check_tensor(confmat, "confmat", ndim=2)
    if confmat.shape[0] != confmat.shape[1]:
        raise ValueError(f"confmat must be square [C, C], got {tuple(confmat.shape)}")
    if confmat.is_complex() or confmat.dtype == torch.bool:
        raise TypeError(f"confmat must hold counts, got {confmat.dtype}")
    check_finite(confmat, "confmat")
    if bool((confmat < 0).any()):
        raise ValueError("confmat must not contain negative counts")
    mat = confmat.detach().cpu().double()
    correct, true_total, pred_total = mat.diag(), mat.sum(1), mat.sum(0)
    union = true_total + pred_total - correct
    present = union > 0  # the class appears in the ground truth or in the prediction
    safe = lambda x: torch.where(present, x, 1.0)  # noqa: E731  (0 / 1 = 0 for absent classes)
    iou = correct / safe(union)
    dice = 2 * correct / safe(true_total + pred_total)
    mean = lambda x: float(x[present].mean()) if bool(present.any()) else 0.0  # noqa: E731
    total = float(mat.sum())
    return {
        "pixel_accuracy": float(correct.sum()) / total if total > 0 else 0.0,
        "iou": iou,
        "mean_iou": mean(iou),
        "dice": dice,
        "mean_dice": mean(dice),
    }


@torch.no_grad()
def segmentation_evaluate(
    model: torch.nn.Module, data: object, num_classes: int, batch_size: int = 50, boundary_width: int = 2
) -> dict[str, float | Tensor]:
    """Score a segmenter (eval mode, logits ``[N, C, H, W]``) on ``(image, mask)`` samples.

    The predicted class of a pixel is the argmax of its logits. Pixels of all images are pooled
    into one ``confusion_matrix`` (so a large object weighs more than a small one) and scored by
    ``segmentation_scores``; ``boundary_iou`` (mean over the foreground classes) scores the edges.

    Returns:
        dict: ``segmentation_scores``'s keys plus ``boundary_iou`` (float) and ``confmat`` (Tensor[C, C]).
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    model.eval()
    device = next(model.parameters()).device
    preds, targets = [], []
    for images, masks in DataLoader(data, batch_size=batch_size):
        preds.append(model(images.to(device)).argmax(1).cpu().to(torch.uint8))
        targets.append(masks.to(torch.uint8))
    pred, target = torch.cat(preds), torch.cat(targets)
    confmat = confusion_matrix(pred, target, num_classes)
    scores = segmentation_scores(confmat)
    scores["boundary_iou"] = boundary_iou(pred, target, num_classes, width=boundary_width)["mean_iou"]
    scores["confmat"] = confmat
    return scores
