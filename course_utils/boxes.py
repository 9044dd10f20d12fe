"""Bounding boxes: formats, area, IoU, GIoU and non-maximum suppression (NMS).

A box is 4 numbers; ``xyxy`` (corners) is the format the functions here expect.
IoU = intersection area / union area measures how well two boxes agree (1 = identical,
0 = disjoint). NMS keeps the best-scoring box and deletes its near-duplicates (IoU > threshold).
"""

from __future__ import annotations

import math

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


# _greedy_nms resolves boxes in blocks of at most NMS_BLOCK; a label with more boxes than that
# starts with NMS_FIRST_BLOCK and doubles. Any sizes give the same result; these are for speed.
NMS_BLOCK = 256
NMS_FIRST_BLOCK = 32
NMS_MAX_ROUNDS = 8  # rounds of _resolve_block before it falls back to one box at a time


def _float_below(value: float, dtype: torch.dtype) -> float:
    """The largest ``dtype`` number <= ``value``.

    For ``x`` of that dtype, ``x > _float_below(t, dtype)`` exactly when ``float(x) > t``:
    no ``dtype`` number lies in between. So a float32 IoU can be compared with a threshold
    like 0.3 (not a float32 number) as torchvision compares it, in double, without first
    converting a whole IoU matrix to float64.
    """
    below = torch.tensor(value, dtype=dtype)  # the nearest dtype number, maybe above value
    if below.item() > value:
        below = torch.nextafter(below, torch.tensor(-math.inf, dtype=dtype))
    return below.item()


def _suppresses(boxes1: Tensor, boxes2: Tensor, area1: Tensor, area2: Tensor, threshold: float) -> Tensor:
    """``[i, j]`` = IoU(boxes1[i], boxes2[j]) > threshold, Tensor[N, M] (bool); ``area*`` are the box areas.

    The IoU is the float IoU of ``box_iou`` (the same operations in the same order, so the same
    bits as torchvision's NMS), computed with in-place steps to touch the ``[N, M]`` memory few
    times; 0 / 0 (two zero-area boxes) is NaN here, which is never > threshold, like IoU 0.
    """
    x1, y1, x2, y2 = (c[:, None] for c in boxes1.unbind(1))
    u1, v1, u2, v2 = boxes2.unbind(1)
    width = torch.minimum(x2, u2).sub_(torch.maximum(x1, u1)).clamp_(min=0)
    height = torch.minimum(y2, v2).sub_(torch.maximum(y1, v1)).clamp_(min=0)
    inter = width.mul_(height)
    union = (area1[:, None] + area2[None, :]).sub_(inter)
    return inter.div_(union) > threshold


def _resolve_block(suppresses: Tensor) -> Tensor:
    """Greedy NMS among B boxes sorted by decreasing score, all still candidates.

    Box ``i`` is kept if no kept box before it suppresses it:
    ``keep[i] = not any(keep[j] and suppresses[j, i] for j < i)``. Each ``keep[i]`` depends on
    earlier entries only, so the rule has exactly one solution, and applying it to the whole
    vector at once, starting from "keep everything", settles at least one more entry per
    round; usually a few rounds do (as many as the longest chain of suppressions). A long
    chain (each box removing the next) would take one round per box: after
    ``NMS_MAX_ROUNDS`` the block is done the textbook way, one box at a time.

    Args:
        suppresses (Tensor[B, B], bool): ``[j, i]`` = box j would remove box i; only j < i is read.

    Returns:
        Tensor[B] (bool): the boxes greedy NMS keeps.
    """
    suppresses = suppresses.triu(diagonal=1)
    suppressed_by = suppresses.T.contiguous()  # [i, j] = j would remove i: reduce along rows, faster
    keep = torch.ones(len(suppresses), dtype=torch.bool, device=suppresses.device)
    for _ in range(NMS_MAX_ROUNDS):
        settled = ~(suppressed_by & keep).any(dim=1)
        if torch.equal(settled, keep):
            return keep
        keep = settled
    keep = torch.ones_like(keep)
    for i in range(len(keep)):
        if keep[i]:
            keep[i + 1:] &= ~suppresses[i, i + 1:]
    return keep


def _blocks(run_lengths: list[int]) -> list[tuple[int, int, int]]:
    """Split boxes sorted by label into blocks ``(start, stop, end)``: boxes ``start .. stop - 1``
    are resolved together, and none of them can suppress a box at ``end`` or later (another label).

    Labels with few boxes are packed together, up to NMS_BLOCK boxes a block. A label with more
    boxes gets blocks of its own: NMS_FIRST_BLOCK, then doubling up to NMS_BLOCK. Small first
    blocks matter when the top boxes suppress most of the rest (a crowd of near-duplicates):
    the IoU of the boxes they remove is never computed.
    """
    blocks, packed, start = [], None, 0  # packed: where the block of small labels being filled starts
    for length in run_lengths:
        end = start + length
        if packed is not None and end - packed > NMS_BLOCK:  # this label does not fit: close the block
            blocks.append((packed, start, start))
            packed = None
        if length <= NMS_BLOCK:
            packed = start if packed is None else packed
        else:
            size = NMS_FIRST_BLOCK
            while start < end:
                blocks.append((start, min(start + size, end), end))
                start, size = start + size, min(2 * size, NMS_BLOCK)
        start = end
    if packed is not None:
        blocks.append((packed, start, start))
    return blocks


def _greedy_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, labels: Tensor | None = None) -> Tensor:
    """Greedy NMS; with ``labels``, a box only suppresses boxes of its own label.

    The result of the textbook loop (keep the best remaining box, drop its overlaps, repeat)
    with few Python steps. The boxes are sorted by label, then by decreasing score (stable:
    ties keep index order), and walked in blocks (``_blocks``). For a block, one vectorized
    IoU of its remaining boxes against the remaining boxes from there to the end of its labels
    says who suppresses whom; ``_resolve_block`` settles the block; its kept boxes then
    remove their overlaps further down in one step.
    """
    n = len(boxes)
    boxes = _widen(boxes)
    by_score = torch.sort(scores, descending=True, stable=True).indices  # ties keep index order
    order = by_score
    if labels is not None:
        order = by_score[torch.sort(labels[by_score], stable=True).indices]  # by label, then by score
        labels = labels[order]
        run_lengths = torch.unique_consecutive(labels, return_counts=True)[1].tolist()
    else:
        run_lengths = [n] if n else []
    boxes = boxes[order]
    areas = _area(boxes)
    threshold = _float_below(iou_threshold, boxes.dtype)  # compared as torchvision does, in double

    keep = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    removed = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    for start, stop, end in _blocks(run_lengths):
        alive = start + (~removed[start:end]).nonzero().flatten()  # remaining boxes, by label and score
        rows = int((alive < stop).sum())  # alive[:rows] are the block's own
        if rows == 0:
            continue
        mine = alive[:rows]
        suppresses = _suppresses(boxes[mine], boxes[alive], areas[mine], areas[alive], threshold)
        if labels is not None:
            suppresses &= labels[mine, None] == labels[None, alive]
        kept = _resolve_block(suppresses[:, :rows])
        keep[mine[kept]] = True
        if rows < len(alive):
            removed[alive[rows:]] |= suppresses[kept, rows:].any(dim=0)
    # Back to input indices, by decreasing score (then index) across labels.
    kept_inputs = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    kept_inputs[order] = keep
    return by_score[kept_inputs[by_score]]


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
