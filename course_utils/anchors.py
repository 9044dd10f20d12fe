"""Anchors and box coding: how a detector turns "is there an object here?" into boxes.

Anchors are fixed reference boxes (several sizes x aspect ratios) repeated at every cell of a
feature map. Training matches each anchor to a ground-truth box by IoU, and the network learns
small offsets (dx, dy, dw, dh) that move an anchor onto its object: ``encode_boxes`` computes
them from boxes, ``decode_boxes`` turns predicted offsets back into boxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .validation import (
    check_boxes,
    check_finite,
    check_positive_int,
    check_positive_number,
    check_probability,
    check_same_length,
    check_tensor,
)

__all__ = ["generate_anchors", "match_anchors", "encode_boxes", "decode_boxes"]

BELOW_LOW_THRESHOLD = -1  # match_anchors: background anchor
BETWEEN_THRESHOLDS = -2  # match_anchors: ambiguous anchor, ignored by the loss
BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # largest dw/dh decoded: a box grows at most 62.5x


def _check_hw(value: object, name: str) -> tuple[int, int]:
    """An int or an (h, w) pair of positive ints."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or an (h, w) pair, got {value!r}")
        return check_positive_int(value[0], f"{name}[0]"), check_positive_int(value[1], f"{name}[1]")
    size = check_positive_int(value, name)
    return size, size


def _check_numbers(values: object, name: str) -> list[float]:
    """A non-empty list or tuple of positive numbers."""
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple of numbers, got {type(values).__name__}")
    if not values:
        raise ValueError(f"{name} must not be empty")
    return [check_positive_number(v, f"{name}[{i}]") for i, v in enumerate(values)]


def generate_anchors(
    image_size: int | tuple[int, int],
    feature_size: int | tuple[int, int],
    sizes: Sequence[float],
    aspect_ratios: Sequence[float],
) -> Tensor:
    """Anchors of one feature map, in the values and order of torchvision's ``AnchorGenerator``.

    Each feature-map cell ``(i, j)`` gets ``len(aspect_ratios) * len(sizes)`` anchors centred on
    the cell's top-left pixel ``(j * stride_x, i * stride_y)``, ``stride = image_size // feature_size``.
    An anchor of size ``s`` and ratio ``r = h / w`` has ``w = s / sqrt(r)``, ``h = s * sqrt(r)``;
    its half-extents are rounded to whole pixels.

    Args:
        image_size: ``(h, w)`` of the input image, or an int for a square one.
        feature_size: ``(h, w)`` of the feature map, at most ``image_size``.
        sizes: anchor sizes in pixels (sqrt of the anchor area).
        aspect_ratios: height / width ratios.

    Returns:
        Tensor[h * w * A, 4] (float32): xyxy anchors, ordered by cell (row-major), then
        ratio, then size.
    """
    image_h, image_w = _check_hw(image_size, "image_size")
    feature_h, feature_w = _check_hw(feature_size, "feature_size")
    if feature_h > image_h or feature_w > image_w:
        raise ValueError(f"feature_size {(feature_h, feature_w)} is larger than image_size {(image_h, image_w)}")
    scales = torch.tensor(_check_numbers(sizes, "sizes"), dtype=torch.float32)
    ratios = torch.tensor(_check_numbers(aspect_ratios, "aspect_ratios"), dtype=torch.float32)

    # One zero-centred "cell anchor" per (ratio, size) pair, ratio-major.
    h_ratios = ratios.sqrt()
    w_ratios = 1 / h_ratios
    half_w = (w_ratios[:, None] * scales[None, :]).flatten() / 2
    half_h = (h_ratios[:, None] * scales[None, :]).flatten() / 2
    cell_anchors = torch.stack([-half_w, -half_h, half_w, half_h], dim=1).round()  # [A, 4]

    # Shift the cell anchors to every position of the grid.
    ys = torch.arange(feature_h, dtype=torch.float32) * (image_h // feature_h)
    xs = torch.arange(feature_w, dtype=torch.float32) * (image_w // feature_w)
    shift_y, shift_x = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)  # [h * w, 1, 4]
    return (shifts + cell_anchors[None]).reshape(-1, 4)


def match_anchors(
    iou_matrix: Tensor,
    high_threshold: float,
    low_threshold: float,
    allow_low_quality_matches: bool = False,
) -> Tensor:
    """Assign each anchor (prediction) its best ground-truth box, as torchvision's ``Matcher``.

    An anchor whose best IoU is ``>= high_threshold`` is matched; below ``low_threshold`` it gets
    ``-1`` (background); in between ``-2`` (ignored). With ``allow_low_quality_matches``, every
    anchor that has the highest IoU of some ground-truth box (ties included) gets its best match
    back, so that no ground-truth box is left without an anchor.

    Args:
        iou_matrix (Tensor[G, P]): quality (IoU) of each ground-truth box with each anchor.
        high_threshold (float): in [0, 1].
        low_threshold (float): in [0, high_threshold].
        allow_low_quality_matches (bool): see above.

    Returns:
        Tensor[P] (int64): the matched ground-truth index of each anchor, or -1 / -2.
    """
    iou_matrix = check_finite(check_tensor(iou_matrix, "iou_matrix", ndim=2), "iou_matrix")
    if iou_matrix.numel() == 0:
        raise ValueError(f"iou_matrix is empty (shape {tuple(iou_matrix.shape)}): need at least one box and one anchor")
    high_threshold = check_probability(high_threshold, "high_threshold")
    low_threshold = check_probability(low_threshold, "low_threshold")
    if low_threshold > high_threshold:
        raise ValueError(f"low_threshold ({low_threshold}) must be <= high_threshold ({high_threshold})")
    if not isinstance(allow_low_quality_matches, bool):
        raise TypeError(f"allow_low_quality_matches must be a bool, got {type(allow_low_quality_matches).__name__}")

    best_iou, best_gt = iou_matrix.max(dim=0)  # best ground truth of each anchor
    matches = best_gt.clone()
    matches[best_iou < low_threshold] = BELOW_LOW_THRESHOLD
    matches[(best_iou >= low_threshold) & (best_iou < high_threshold)] = BETWEEN_THRESHOLDS
    if allow_low_quality_matches:
        best_iou_of_gt = iou_matrix.max(dim=1).values  # [G]
        is_best_for_some_gt = (iou_matrix == best_iou_of_gt[:, None]).any(dim=0)  # [P]
        matches[is_best_for_some_gt] = best_gt[is_best_for_some_gt]
    return matches


def _check_weights(weights: object) -> tuple[float, float, float, float]:
    if not isinstance(weights, (list, tuple)) or len(weights) != 4:
        raise ValueError(f"weights must be a list or tuple of 4 numbers (wx, wy, ww, wh), got {weights!r}")
    wx, wy, ww, wh = (check_positive_number(w, f"weights[{i}]") for i, w in enumerate(weights))
    return wx, wy, ww, wh


def _check_positive_size(boxes: object, name: str) -> Tensor:
    """xyxy boxes with strictly positive width and height (they are divided by / taken the log of)."""
    boxes = check_boxes(boxes, name)
    flat = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bool(flat.any()):
        i = int(flat.nonzero()[0, 0])
        raise ValueError(f"{name}[{i}] = {boxes[i].tolist()} has zero width or height: it cannot be encoded")
    return boxes


def _size_and_centre(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Width, height, centre x and centre y of xyxy boxes (each Tensor[N])."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return widths, heights, boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights


def encode_boxes(
    reference_boxes: Tensor,
    proposals: Tensor,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
) -> Tensor:
    """Offsets that move each proposal (anchor) onto its reference (ground-truth) box.

    ``dx = wx * (gx - px) / pw``, ``dy = wy * (gy - py) / ph``, ``dw = ww * log(gw / pw)``,
    ``dh = wh * log(gh / ph)`` with (x, y) box centres, as torchvision's ``BoxCoder.encode_single``.

    Args:
        reference_boxes (Tensor[N, 4]): xyxy target boxes, positive width and height.
        proposals (Tensor[N, 4]): xyxy anchors or proposals, positive width and height.
        weights: (wx, wy, ww, wh), e.g. (10, 10, 5, 5) for Faster R-CNN's box head.

    Returns:
        Tensor[N, 4]: the regression targets (dx, dy, dw, dh).
    """
    reference_boxes = _check_positive_size(reference_boxes, "reference_boxes")
    proposals = _check_positive_size(proposals, "proposals")
    check_same_length(reference_boxes, proposals, "reference_boxes", "proposals")
    wx, wy, ww, wh = _check_weights(weights)

    gt_w, gt_h, gt_x, gt_y = _size_and_centre(reference_boxes)
    p_w, p_h, p_x, p_y = _size_and_centre(proposals)
    dx = wx * (gt_x - p_x) / p_w
    dy = wy * (gt_y - p_y) / p_h
    dw = ww * torch.log(gt_w / p_w)
    dh = wh * torch.log(gt_h / p_h)
    return torch.stack([dx, dy, dw, dh], dim=1)


def decode_boxes(
    rel_codes: Tensor,
    boxes: Tensor,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
) -> Tensor:
    """Apply predicted offsets to boxes: the inverse of ``encode_boxes``.

    ``dw`` and ``dh`` are clamped at ``log(1000 / 16)`` before ``exp`` so that a wild prediction
    cannot overflow, as torchvision's ``BoxCoder.decode_single``. ``rel_codes`` may hold K groups
    of 4 offsets per box (one per class); each is applied to the same box.

    Args:
        rel_codes (Tensor[N, 4 * K]): offsets (dx, dy, dw, dh) per box and group.
        boxes (Tensor[N, 4]): xyxy anchors or proposals.
        weights: (wx, wy, ww, wh), the ones used to encode.

    Returns:
        Tensor[N, 4 * K]: decoded xyxy boxes, in the dtype of ``rel_codes``.
    """
    rel_codes = check_finite(check_tensor(rel_codes, "rel_codes", ndim=2, floating=True), "rel_codes")
    if rel_codes.shape[1] == 0 or rel_codes.shape[1] % 4:
        raise ValueError(f"rel_codes must have shape [N, 4 * K], got {tuple(rel_codes.shape)}")
    boxes = check_boxes(boxes, "boxes")
    check_same_length(rel_codes, boxes, "rel_codes", "boxes")
    wx, wy, ww, wh = _check_weights(weights)

    widths, heights, ctr_x, ctr_y = (t[:, None] for t in _size_and_centre(boxes.to(rel_codes.dtype)))
    dx = rel_codes[:, 0::4] / wx
    dy = rel_codes[:, 1::4] / wy
    dw = (rel_codes[:, 2::4] / ww).clamp(max=BBOX_XFORM_CLIP)
    dh = (rel_codes[:, 3::4] / wh).clamp(max=BBOX_XFORM_CLIP)

    pred_x = dx * widths + ctr_x
    pred_y = dy * heights + ctr_y
    half_w = 0.5 * (torch.exp(dw) * widths)
    half_h = 0.5 * (torch.exp(dh) * heights)
    return torch.stack([pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h], dim=2).flatten(1)
