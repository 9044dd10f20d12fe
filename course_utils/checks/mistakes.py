"""Classic wrong answers to the exercises, for the notebooks' "what a failing check looks like" cells.

They live here rather than in the notebooks so that a student version never shows, right after
an exercise, code that is one line away from its solution. Each is wrong in exactly the way its
name says; the notebooks describe the mistake in words and show what the check replies.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..boxes import nms
from ..detection._utils import clip_boxes_to_image, remove_small_boxes
from ..detection.rpn import RPN_MIN_SIZE

__all__ = [
    "mask_to_box_off_by_one", "iou_clamping_the_product", "match_with_strict_high",
    "roi_pool_without_rounding", "filter_proposals_nms_before_topk", "fastrcnn_loss_over_positives",
    "softmax_saliency",
]  # fmt: skip


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


def roi_pool_without_rounding(feature: Tensor, box: Tensor, output_size: int) -> Tensor:
    """04: the RoI's corners truncated to whole cells (``int``) instead of rounded to the nearest one."""
    _, height, width = feature.shape
    x1, y1, x2, y2 = (int(v) for v in box.tolist())
    bin_h, bin_w = max(y2 - y1 + 1, 1) / output_size, max(x2 - x1 + 1, 1) / output_size
    out = feature.new_zeros(feature.shape[0], output_size, output_size)
    for i in range(output_size):
        top, bottom = (min(max(y1 + v, 0), height) for v in (math.floor(i * bin_h), math.ceil((i + 1) * bin_h)))
        for j in range(output_size):
            left, right = (min(max(x1 + v, 0), width) for v in (math.floor(j * bin_w), math.ceil((j + 1) * bin_w)))
            if bottom > top and right > left:
                out[:, i, j] = feature[:, top:bottom, left:right].amax(dim=(1, 2))
    return out


def filter_proposals_nms_before_topk(
    boxes: Tensor, logits: Tensor, image_size: tuple[int, int], pre_nms_top_n: int, post_nms_top_n: int, iou_threshold: float
) -> Tensor:
    """04: NMS over every box first, then the ``pre_nms_top_n`` best: top-k no longer decides which boxes NMS sees."""
    boxes = clip_boxes_to_image(boxes, image_size)
    wide = remove_small_boxes(boxes, RPN_MIN_SIZE)
    boxes, scores = boxes[wide], torch.sigmoid(logits[wide])
    return boxes[nms(boxes, scores, iou_threshold)[:pre_nms_top_n][:post_nms_top_n]]


def fastrcnn_loss_over_positives(
    class_logits: Tensor, box_regression: Tensor, labels: Tensor, regression_targets: Tensor
) -> tuple[Tensor, Tensor]:
    """04: the box loss divided by the number of positive RoIs instead of the number of sampled RoIs."""
    positive = torch.where(labels > 0)[0]
    deltas = box_regression.reshape(len(labels), -1, 4)[positive, labels[positive]]
    box = F.smooth_l1_loss(deltas, regression_targets[positive], beta=1 / 9, reduction="sum") / len(positive)
    return F.cross_entropy(class_logits, labels), box


def softmax_saliency(model: nn.Module, x: Tensor, target: int) -> Tensor:
    """08: the gradient of the class *probability* (after the softmax) instead of its logit."""
    x = x.clone().requires_grad_(True)
    model(x).softmax(dim=1)[:, target].sum().backward()
    return x.grad.abs()
