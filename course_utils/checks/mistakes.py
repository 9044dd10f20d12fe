"""Classic wrong answers to the exercises, for the notebooks' "what a failing check looks like" cells.

They live here rather than in the notebooks so that a student version never shows, right after
an exercise, code that is one line away from its solution. Each is wrong in exactly the way its
name says; the notebooks describe the mistake in words and show what the check replies.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["mask_to_box_off_by_one", "iou_clamping_the_product", "match_with_strict_high", "softmax_saliency"]


def mask_to_box_off_by_one(mask: Tensor) -> Tensor:
    """00: x2 and y2 set to the last column and row of the mask instead of the pixel edge after them."""
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return torch.stack([cols.min(), rows.min(), cols.max(), rows.max()]).float()


def iou_clamping_the_product(box_a: Tensor, box_b: Tensor) -> float:
    """01: the intersection's width × height clamped at 0 as a product (two negative sides make a positive area)."""
    inter_w = min(box_a[2], box_b[2]) - max(box_a[0], box_b[0])
    inter_h = min(box_a[3], box_b[3]) - max(box_a[1], box_b[1])
    intersection = max(0.0, inter_w * inter_h)
    union = (box_a[2] - box_a[0]) * (box_a[3] - box_a[1]) + (box_b[2] - box_b[0]) * (box_b[3] - box_b[1]) - intersection
    return intersection / union


def match_with_strict_high(iou_matrix: Tensor, high: float, low: float) -> Tensor:
    """02: an anchor counts as positive only when its IoU is *above* the high threshold (``>`` instead of ``>=``)."""
    best_iou, best_gt = iou_matrix.max(dim=0)
    return torch.where(best_iou > high, best_gt, torch.where(best_iou < low, -1, -2))


def softmax_saliency(model: nn.Module, x: Tensor, target: int) -> Tensor:
    """08: the gradient of the class *probability* (after the softmax) instead of its logit."""
    x = x.clone().requires_grad_(True)
    model(x).softmax(dim=1)[:, target].sum().backward()
    return x.grad.abs()
