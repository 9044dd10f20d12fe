"""Helpers shared by the detectors' parts: box clipping and filtering, balanced sampling, checks of
images, targets and settings."""

from __future__ import annotations

import math
from numbers import Real
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..validation import check_positive_int, check_probability

__all__ = [
    "clip_boxes_to_image", "remove_small_boxes", "sample_positive_negative", "check_images", "check_targets",
    "match_device_and_mode",
]


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


def check_images(images: object, channels: int = 3) -> list[Tensor]:
    """A detector's images: a non-empty list of finite float Tensor[channels, H_i, W_i] (or one
    Tensor[N, channels, H, W], split into a list); clear errors name the offending image."""
    if isinstance(images, Tensor):
        if images.ndim != 4:
            raise ValueError(
                "images must be a list of Tensor[3, H, W] (or one Tensor[N, 3, H, W]), "
                f"got a tensor of shape {tuple(images.shape)}"
            )
        images = list(images.unbind(0))
    if not isinstance(images, (list, tuple)):
        raise TypeError(f"images must be a list of Tensor[3, H, W], got {type(images).__name__}")
    if not images:
        raise ValueError("images is empty: give at least one Tensor[3, H, W]")
    for i, image in enumerate(images):
        if not isinstance(image, Tensor):
            raise TypeError(f"images[{i}] must be a torch.Tensor, got {type(image).__name__}")
        if image.ndim != 3:
            raise ValueError(
                f"images[{i}] must have shape [{channels}, H, W], got {tuple(image.shape)} ({image.ndim} dimensions)"
            )
        if image.shape[0] != channels:
            raise ValueError(
                f"images[{i}] must have {channels} channels (shape [{channels}, H, W]), got shape {tuple(image.shape)}"
            )
        if image.shape[1] == 0 or image.shape[2] == 0:
            raise ValueError(f"images[{i}] is empty: shape {tuple(image.shape)}")
        if not image.is_floating_point():
            raise TypeError(f"images[{i}] must be a float tensor with values in [0, 1], got dtype {image.dtype}")
        if not bool(torch.isfinite(image).all()):
            raise ValueError(f"images[{i}] contains NaN or infinite values")
    return list(images)


def check_targets(targets: object, num_images: int, num_classes: int) -> list[dict[str, Tensor]]:
    """One target dict per image: ``boxes`` float Tensor[G, 4] with x2 > x1 and y2 > y1, ``labels``
    integer Tensor[G] in [1, num_classes) (0 is the background); labels come back as int64."""
    if not isinstance(targets, (list, tuple)):
        raise TypeError(f"targets must be a list of dicts with 'boxes' and 'labels', got {type(targets).__name__}")
    if len(targets) != num_images:
        raise ValueError(
            f"targets has {len(targets)} entries but there are {num_images} images: give one dict per image"
        )
    checked = []
    for i, target in enumerate(targets):
        if not isinstance(target, Mapping):
            raise TypeError(f"targets[{i}] must be a dict with 'boxes' and 'labels', got {type(target).__name__}")
        for key in ("boxes", "labels"):
            if key not in target:
                raise ValueError(f"targets[{i}] has no {key!r} entry")
            if not isinstance(target[key], Tensor):
                raise TypeError(f"targets[{i}][{key!r}] must be a torch.Tensor, got {type(target[key]).__name__}")
        boxes, labels = target["boxes"], target["labels"]
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"targets[{i}]['boxes'] must have shape [G, 4], got {tuple(boxes.shape)}")
        if not boxes.is_floating_point():
            raise TypeError(f"targets[{i}]['boxes'] must be a float tensor, got dtype {boxes.dtype}")
        if not bool(torch.isfinite(boxes).all()):
            raise ValueError(f"targets[{i}]['boxes'] contains NaN or infinite values")
        degenerate = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if bool(degenerate.any()):
            j = int(degenerate.nonzero()[0, 0])
            raise ValueError(
                f"targets[{i}]['boxes'][{j}] = {boxes[j].tolist()} is degenerate: "
                "boxes need x2 > x1 and y2 > y1 (positive width and height)"
            )
        if labels.ndim != 1 or labels.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"targets[{i}]['labels'] must have shape [{boxes.shape[0]}] (one per box), got {tuple(labels.shape)}"
            )
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"targets[{i}]['labels'] must hold integer class indices, got dtype {labels.dtype}")
        bad = (labels < 1) | (labels >= num_classes)
        if bool(bad.any()):
            j = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"targets[{i}]['labels'][{j}] = {int(labels[j])} is out of range: "
                f"labels must be in [1, {num_classes}) (0 is the background)"
            )
        checked.append({**target, "labels": labels.to(torch.int64)})
    return checked


def match_device_and_mode(twin: nn.Module, model: nn.Module) -> nn.Module:
    """``twin`` moved to ``model``'s device and put in its mode (``to_torchvision``'s last step)."""
    parameter = next(model.parameters(), None)
    if parameter is not None:
        twin.to(parameter.device)
    return twin.train(model.training)
