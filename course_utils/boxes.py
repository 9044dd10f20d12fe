"""Bounding boxes: formats, area, IoU, GIoU and non-maximum suppression (NMS).

A box is 4 numbers; ``xyxy`` (corners) is the format the functions here expect.
IoU = intersection area / union area measures how well two boxes agree (1 = identical,
0 = disjoint). NMS keeps the best-scoring box and deletes its near-duplicates (IoU > threshold).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .validation import check_boxes, check_choice, check_finite, check_probability, check_same_length, check_tensor

__all__ = ["box_area", "box_convert", "box_iou", "generalized_box_iou", "nms", "batched_nms"]

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def _widen(t: Tensor) -> Tensor:
    """Promote dtypes narrower than 32 bits (float16, int8, ...) so products cannot overflow."""
    if t.element_size() >= 4:
        return t
    return t.float() if t.is_floating_point() else t.int()


def _check_in_format(boxes: object, name: str, fmt: str) -> Tensor:
    """Validate ``[N, 4]`` boxes given in ``fmt``; return them with their dtype unchanged."""
    boxes = check_tensor(boxes, name)
    check_boxes(boxes, name, allow_degenerate=fmt != "xyxy")  # shape, finiteness, x2 >= x1 for xyxy
    if fmt != "xyxy" and boxes.numel():
        negative = (boxes[:, 2:] < 0).any(dim=1)
        if bool(negative.any()):
            i = int(negative.nonzero()[0, 0])
            raise ValueError(f"{name}[{i}] = {boxes[i].tolist()} has a negative width or height ({fmt!r} format)")
    return boxes


def _to_xyxy(boxes: Tensor, fmt: str) -> Tensor:
    if fmt == "xywh":
        x, y, w, h = boxes.unbind(1)
        return torch.stack([x, y, x + w, y + h], dim=1)
    if fmt == "cxcywh":
        cx, cy, w, h = boxes.unbind(1)
        return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=1)
    return boxes


def _from_xyxy(boxes: Tensor, fmt: str) -> Tensor:
    x1, y1, x2, y2 = boxes.unbind(1)
    if fmt == "xywh":
        return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=1)
    if fmt == "cxcywh":
        return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=1)
    return boxes


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert ``boxes`` (Tensor[N, 4]) from ``in_fmt`` to ``out_fmt``.

    Formats: ``"xyxy"`` (x1, y1, x2, y2), ``"xywh"`` (x1, y1, width, height) and
    ``"cxcywh"`` (centre x, centre y, width, height). Same format -> a copy.

    Returns:
        Tensor[N, 4]: the converted boxes.
    """
    check_choice(in_fmt, "in_fmt", BOX_FORMATS)
    check_choice(out_fmt, "out_fmt", BOX_FORMATS)
    boxes = _check_in_format(boxes, "boxes", in_fmt)
    if in_fmt == out_fmt:
        return boxes.clone()
    return _from_xyxy(_to_xyxy(boxes, in_fmt), out_fmt)


def _area(boxes: Tensor) -> Tensor:
    boxes = _widen(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_area(boxes: Tensor) -> Tensor:
    """Area ``(x2 - x1) * (y2 - y1)`` of each xyxy box (no +1 pixel).

    Args:
        boxes (Tensor[N, 4]): xyxy boxes with ``x2 >= x1`` and ``y2 >= y1``.

    Returns:
        Tensor[N]: the areas; dtypes narrower than 32 bits are widened (float16 -> float32).
    """
    check_boxes(boxes, "boxes")
    return _area(boxes)


def _inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise intersection and union areas, both Tensor[N, M]."""
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # [N, M, 2]
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])  # [N, M, 2]
    wh = _widen(bottom_right - top_left).clamp(min=0)  # no overlap -> width or height 0
    inter = wh[..., 0] * wh[..., 1]
    union = _area(boxes1)[:, None] + _area(boxes2)[None, :] - inter
    return inter, union


def _safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, with 0 where the denominator is 0 (the numerator is 0 there too)."""
    return numerator / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def _iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    inter, union = _inter_union(boxes1, boxes2)
    return _safe_divide(inter, union)


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair of xyxy boxes.

    Two boxes with zero area (so zero union) get IoU 0, never NaN. Integer and float16
    boxes give a float32 result.

    Args:
        boxes1 (Tensor[N, 4]): first set of boxes.
        boxes2 (Tensor[M, 4]): second set of boxes.

    Returns:
        Tensor[N, M]: ``iou[i, j]`` = IoU of ``boxes1[i]`` and ``boxes2[j]``, in [0, 1].
    """
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    return _iou(boxes1, boxes2)


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalized IoU: ``IoU - (C - union) / C``, C the area of the smallest box enclosing both.

    Unlike IoU it still says *how far apart* two disjoint boxes are (down to -1).

    Args:
        boxes1 (Tensor[N, 4]): first set of xyxy boxes.
        boxes2 (Tensor[M, 4]): second set of xyxy boxes.

    Returns:
        Tensor[N, M]: pairwise GIoU values, in [-1, 1].
    """
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    inter, union = _inter_union(boxes1, boxes2)
    enclosing_wh = _widen(
        torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:]) - torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    )
    enclosing = enclosing_wh[..., 0] * enclosing_wh[..., 1]  # [N, M]
    return _safe_divide(inter, union) - _safe_divide(enclosing - union, enclosing)


def _greedy_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, labels: Tensor | None = None) -> Tensor:
    """Greedy NMS; with ``labels``, a box only suppresses boxes of its own label."""
    order = torch.sort(scores, descending=True, stable=True).indices  # ties keep index order
    keep = []
    while order.numel() > 0:
        best, rest = order[0], order[1:]
        keep.append(best)
        # index_select / masked_select are boxes[rest] / rest[mask] without the slower
        # advanced-indexing path (a large cost inside this Python loop).
        ious = _iou(boxes[best].unsqueeze(0), boxes.index_select(0, rest))[0]
        # Compare in float64 as torchvision does: 0.3 is not a float32 number.
        suppressed = ious.double() > iou_threshold
        if labels is not None:
            suppressed &= labels.index_select(0, rest) == labels[best]
        order = rest.masked_select(~suppressed)
    if not keep:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    return torch.stack(keep)


def _check_scores(scores: object, boxes: Tensor) -> Tensor:
    scores = check_finite(check_tensor(scores, "scores", ndim=1), "scores")
    check_same_length(boxes, scores, "boxes", "scores")
    return scores


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression.

    Repeatedly take the highest-scoring remaining box, keep it, and drop every remaining box
    whose IoU with it is strictly greater than ``iou_threshold``. Equal scores keep their
    original order (stable sort).

    Args:
        boxes (Tensor[N, 4]): xyxy boxes.
        scores (Tensor[N]): one score per box.
        iou_threshold (float): in [0, 1]; boxes overlapping a kept box by more are discarded.

    Returns:
        Tensor[K] (int64): indices of the kept boxes, by decreasing score.
    """
    boxes = check_boxes(boxes, "boxes")
    scores = _check_scores(scores, boxes)
    iou_threshold = check_probability(iou_threshold, "iou_threshold")
    return _greedy_nms(boxes, scores, iou_threshold)


def _check_labels(idxs: object, boxes: Tensor) -> Tensor:
    idxs = check_tensor(idxs, "idxs", ndim=1)
    if idxs.is_floating_point() or idxs.is_complex() or idxs.dtype == torch.bool:
        raise TypeError(f"idxs must hold integer class indices, got dtype {idxs.dtype}")
    check_same_length(boxes, idxs, "boxes", "idxs")
    return idxs


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Non-maximum suppression done independently for each class.

    A box can only suppress boxes with the same ``idxs`` value: the result is the union of
    ``nms`` run on each class separately.

    Args:
        boxes (Tensor[N, 4]): xyxy boxes.
        scores (Tensor[N]): one score per box.
        idxs (Tensor[N]): integer class index of each box.
        iou_threshold (float): in [0, 1].

    Returns:
        Tensor[K] (int64): indices of the kept boxes, by decreasing score.
    """
    boxes = check_boxes(boxes, "boxes")
    scores = _check_scores(scores, boxes)
    idxs = _check_labels(idxs, boxes)
    iou_threshold = check_probability(iou_threshold, "iou_threshold")
    return _greedy_nms(boxes, scores, iou_threshold, labels=idxs)
