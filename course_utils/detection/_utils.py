"""Helpers shared by the RPN and the RoI heads: box clipping and filtering, balanced sampling, argument checks."""

from __future__ import annotations

import math
from numbers import Real
from typing import Sequence

import torch
from torch import Tensor

from ..validation import check_positive_int, check_probability

__all__ = ["clip_boxes_to_image", "remove_small_boxes", "sample_positive_negative"]


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp xyxy boxes (Tensor[..., 4]) into an image of ``size = (height, width)``."""
    height, width = size
    boxes_x = boxes[..., 0::2].clamp(min=0, max=width)
    boxes_y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((boxes_x, boxes_y), dim=boxes.dim()).reshape(boxes.shape)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices (Tensor[K] int64) of the boxes whose width and height are both ``>= min_size``."""
    widths, heights = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    return torch.where((widths >= min_size) & (heights >= min_size))[0]


def sample_positive_negative(
    labels: Sequence[Tensor], batch_size_per_image: int, positive_fraction: float
) -> tuple[list[Tensor], list[Tensor]]:
    """Pick a random, balanced subset of training examples in each image.

    ``labels`` holds, per image, ``>= 1`` for a positive, ``0`` for a negative and ``-1`` for an
    example to ignore. At most ``batch_size_per_image * positive_fraction`` positives are drawn,
    negatives fill the rest of ``batch_size_per_image``. Same draws as torchvision's
    ``BalancedPositiveNegativeSampler`` (``randperm`` of the positives, then of the negatives).

    Returns:
        (positive masks, negative masks): two lists of bool Tensor[P_i], one per image.
    """
    positive_masks, negative_masks = [], []
    for labels_in_image in labels:
        positive = torch.where(labels_in_image >= 1)[0]
        negative = torch.where(labels_in_image == 0)[0]
        num_pos = min(positive.numel(), int(batch_size_per_image * positive_fraction))
        num_neg = min(negative.numel(), batch_size_per_image - num_pos)
        chosen_pos = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
        chosen_neg = negative[torch.randperm(negative.numel(), device=negative.device)[:num_neg]]
        pos_mask = torch.zeros_like(labels_in_image, dtype=torch.bool)
        neg_mask = torch.zeros_like(labels_in_image, dtype=torch.bool)
        pos_mask[chosen_pos] = True
        neg_mask[chosen_neg] = True
        positive_masks.append(pos_mask)
        negative_masks.append(neg_mask)
    return positive_masks, negative_masks


def _check_sizes(value: object, name: str) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise TypeError(f"{name} must be a non-empty list or tuple of numbers, got {value!r}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name}[{i}] must be a finite number > 0, got {v!r}")
        out.append(float(v))
    return tuple(out)


def _check_sampling(fg_iou_thresh: object, bg_iou_thresh: object, batch_size_per_image: object, positive_fraction: object) -> tuple[float, float, int, float]:
    """The matching thresholds and sampling settings shared by the RPN and the RoI heads, checked."""
    fg, bg = check_probability(fg_iou_thresh, "fg_iou_thresh"), check_probability(bg_iou_thresh, "bg_iou_thresh")
    if bg > fg:
        raise ValueError(f"bg_iou_thresh ({bg_iou_thresh}) must be <= fg_iou_thresh ({fg_iou_thresh})")
    return fg, bg, check_positive_int(batch_size_per_image, "batch_size_per_image"), check_probability(positive_fraction, "positive_fraction")
