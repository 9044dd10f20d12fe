"""Argument checks shared by every module: clear errors that name the argument.

Each function returns the (possibly converted) value so callers can write
``boxes = check_boxes(boxes, "boxes")``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Mapping, Sequence

import torch
from torch import Tensor


def check_tensor(value: object, name: str, *, ndim: int | None = None, floating: bool = False) -> Tensor:
    """Require a ``torch.Tensor`` (optionally of rank ``ndim`` and a floating dtype)."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {value.dtype}")
    return value


def check_finite(value: Tensor, name: str) -> Tensor:
    """Reject NaN and infinite entries."""
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return value


def check_boxes(boxes: object, name: str = "boxes", *, allow_degenerate: bool = False) -> Tensor:
    """Require a finite float ``[N, 4]`` xyxy tensor with ``x2 >= x1`` and ``y2 >= y1``.

    Integer tensors are accepted and returned as float32.
    """
    boxes = check_tensor(boxes, name, ndim=2)
    if boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape [N, 4], got {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        boxes = boxes.float()
    check_finite(boxes, name)
    if not allow_degenerate and boxes.numel():
        bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"{name}[{i}] = {boxes[i].tolist()} is degenerate: xyxy boxes need x2 >= x1 and y2 >= y1"
            )
    return boxes


def check_probability(value: object, name: str) -> float:
    """Require a real number in [0, 1] (a threshold, a fraction)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def check_positive_int(value: object, name: str, *, allow_zero: bool = False) -> int:
    """Require a positive (or non-negative) integer."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be {kind}, got {value}")
    return value


def check_positive_number(value: object, name: str) -> float:
    """Require a finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_non_negative_number(value: object, name: str) -> float:
    """Require a finite real number >= 0."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Require one of a fixed set of strings."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value  # type: ignore[return-value]


def check_same_length(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    """Require two tensors to have the same first dimension."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{name_a} and {name_b} must have the same length, got {a.shape[0]} and {b.shape[0]}")


def check_labelled_boxes(target: object, name: str = "target") -> tuple[Tensor, Tensor]:
    """The ``boxes`` ([N, 4] xyxy) and ``labels`` ([N] int) of a dict such as a detection target."""
    if not isinstance(target, Mapping) or "boxes" not in target or "labels" not in target:
        raise TypeError(f"{name} must be a dict with 'boxes' and 'labels', got {type(target).__name__}")
    boxes = check_boxes(target["boxes"], f"{name}['boxes']")
    labels = check_tensor(target["labels"], f"{name}['labels']", ndim=1)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"{name}['labels'] must hold integer class indices, got dtype {labels.dtype}")
    check_same_length(boxes, labels, f"{name}['boxes']", f"{name}['labels']")
    return boxes, labels


def check_detections(detections: object, name: str = "detections") -> tuple[Tensor, Tensor, Tensor]:
    """The ``boxes``, ``scores`` and ``labels`` of a detector's output dict."""
    boxes, labels = check_labelled_boxes(detections, name)
    if "scores" not in detections:  # type: ignore[operator]
        raise TypeError(f"{name} must have 'scores'")
    scores = check_finite(check_tensor(detections["scores"], f"{name}['scores']", ndim=1), f"{name}['scores']")  # type: ignore[index]
    check_same_length(boxes, scores, f"{name}['boxes']", f"{name}['scores']")
    return boxes, scores, labels


def check_per_image_pairs(preds: object, targets: object) -> None:
    """``preds`` and ``targets`` are lists with one dict per image, of the same length."""
    for value, name in ((preds, "preds"), (targets, "targets")):
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            raise TypeError(f"{name} must be a list of dicts (one per image), got {type(value).__name__}")
    if len(preds) != len(targets):  # type: ignore[arg-type]
        raise ValueError(f"preds and targets must have one dict per image, got {len(preds)} and {len(targets)}")  # type: ignore[arg-type]
