"""Checks for notebook 02 (anchors and box coding): encode and decode offsets, match anchors by IoU."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ..anchors import decode_boxes, encode_boxes, match_anchors
from ._core import Case, reference, run_cases

reference("encode")(encode_boxes)
reference("decode")(decode_boxes)
reference("match")(match_anchors)

CENTRES = "dx and dy move the anchor's *centre* onto the box's centre: use (x1 + x2) / 2, not the corners."
UNITS = "dx is measured in anchor widths and dy in anchor heights: dx = (gx - ax) / aw, dy = (gy - ay) / ah."
LOG = "dw = log(gw / aw): an anchor that already has the right width needs dw = log(1) = 0; twice as wide gives log 2 ≈ 0.693."
SHRINK = "a box smaller than its anchor gives a negative log offset: half the height → dh = log(0.5) ≈ -0.693."
DECODE = "decode undoes encode: centre x = ax + dx * aw, width = aw * exp(dw), then back to corners x ± width / 2."
CLAMP = "clamp dw and dh at log(1000 / 16) ≈ 4.135 before exp, so a wild prediction cannot blow a box up (or overflow)."
DEFINITION = "one entry per anchor (a Tensor[P]): its best GT's index if that IoU >= high, -1 if it is < low, -2 in between."
HIGH = "IoU >= high is a match: an IoU exactly at the high threshold counts as positive (the anchor gets the GT's index)."
LOW = "only IoU < low is background (-1): an IoU exactly at the low threshold lies in [low, high) and is ignored (-2)."
BETWEEN = "an anchor whose best IoU lies in [low, high) is ambiguous: -2, so that the loss ignores it."
AXIS = "iou_matrix is [G, P] (ground truths × anchors): take the max over dim 0, the GT axis, to get one answer per anchor."
BEST = "each anchor takes the GT it overlaps most (the argmax over the GT axis), not the first one above the threshold."
NO_LOW_QUALITY = "this exercise has no low-quality matches: a GT whose best IoU is below high gets no anchor."

_ENCODE_CASES = [
    # (description, ground-truth box, anchor, hint)
    ("an anchor equal to its ground-truth box: all offsets 0", (10, 20, 50, 40), (10, 20, 50, 40), LOG),
    ("a box shifted right by half the anchor's width: dx = 0.5", (30, 0, 70, 40), (10, 0, 50, 40), UNITS),
    ("a box shifted left and up: negative dx and dy", (0, 0, 20, 20), (8, 4, 28, 24), UNITS),
    ("the same centre, twice as wide: dx = 0 and dw = log 2", (0, 10, 40, 30), (10, 10, 30, 30), CENTRES),
    ("the same centre, half as tall: dh = -log 2", (10, 15, 30, 25), (10, 10, 30, 30), SHRINK),
    ("a wide anchor (40×10) moved by (10, 10): dx = 0.25, dy = 1", (10, 10, 50, 20), (0, 0, 40, 10), UNITS),
    ("fractional coordinates", (1.5, 2.25, 7.75, 9.0), (2.0, 2.0, 8.5, 6.5), UNITS),
]

_DECODE_CASES = [
    # (description, offsets, anchor, hint)
    ("zero offsets give back the anchor itself", (0, 0, 0, 0), (10, 20, 50, 40), DECODE),
    ("dx = 1 moves the anchor by one anchor width", (1, 0, 0, 0), (10, 20, 50, 40), DECODE),
    ("dy = -0.5 moves it up by half its height", (0, -0.5, 0, 0), (10, 20, 50, 40), DECODE),
    ("dw = log 2 doubles the width around the same centre", (0, 0, math.log(2), 0), (10, 10, 30, 30), DECODE),
    ("dh = -log 2 halves the height around the same centre", (0, 0, 0, -math.log(2)), (10, 10, 30, 30), DECODE),
    ("a wide anchor (40×10): dx scales with the width, dy with the height", (0.25, 1, 0, 0), (0, 0, 40, 10), UNITS),
    ("a wild prediction dw = dh = 10 is clamped: the box grows 62.5×, not e^10 ≈ 22026×", (0, 0, 10, 10), (0, 0, 16, 16), CLAMP),
]


def _boxes(rows: list) -> Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def _random_boxes(n: int, generator: torch.Generator) -> Tensor:
    """``n`` random xyxy boxes (Tensor[n, 4]) in a 128×128 image, sides in [4, 64)."""
    top_left = torch.rand(n, 2, generator=generator) * 100
    return torch.cat([top_left, top_left + 4 + torch.rand(n, 2, generator=generator) * 60], dim=1)


def check_encode(student_fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Exercise 1: ``encode(gt, anchors)`` for Tensor[N, 4] xyxy boxes → offsets Tensor[N, 4], weights (1, 1, 1, 1)."""
    cases = [Case(d, (_boxes(g), _boxes(a)), encode_boxes(_boxes(g), _boxes(a)), h) for d, g, a, h in _ENCODE_CASES]
    every_gt, every_anchor = _boxes([g for _, g, _, _ in _ENCODE_CASES]), _boxes([a for _, _, a, _ in _ENCODE_CASES])
    together = "all the cases above at once: one row per (box, anchor) pair"
    cases.append(Case(together, (every_gt, every_anchor), encode_boxes(every_gt, every_anchor), UNITS))
    generator = torch.Generator().manual_seed(20)
    for i, n in enumerate([1, 5, 20, 100]):
        gt, anchors = _random_boxes(n, generator), _random_boxes(n, generator)
        cases.append(Case(f"random boxes #{i + 1} (N = {n})", (gt, anchors), encode_boxes(gt, anchors), f"{UNITS} {LOG}"))
    run_cases(student_fn, cases, "encode")


def check_decode(student_fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Exercise 2: ``decode(offsets, anchors)`` for Tensor[N, 4] → xyxy boxes Tensor[N, 4], weights (1, 1, 1, 1)."""
    cases = [Case(d, (_boxes(o), _boxes(a)), decode_boxes(_boxes(o), _boxes(a)), h) for d, o, a, h in _DECODE_CASES]
    generator = torch.Generator().manual_seed(21)
    gt, anchors = _random_boxes(10, generator), _random_boxes(10, generator)
    cases.append(Case("decoding encoded offsets gives back the ground-truth boxes", (encode_boxes(gt, anchors), anchors), gt, DECODE))
    for i, n in enumerate([1, 5, 20, 100]):
        offsets, anchors = torch.randn(n, 4, generator=generator) * 0.5, _random_boxes(n, generator)
        cases.append(Case(f"random offsets #{i + 1} (N = {n})", (offsets, anchors), decode_boxes(offsets, anchors), DECODE))
    run_cases(student_fn, cases, "decode")


def _iou(rows: list) -> Tensor:
    # float64, so that a threshold such as 0.7 is stored exactly and "IoU == high" means what it says
    return torch.tensor(rows, dtype=torch.float64)


# (description, iou_matrix [G, P], high, low, hint)
_MATCH_CASES = [
    ("one GT, three anchors: IoU 0.9 (match), 0.5 (between), 0.1 (background)", _iou([[0.9, 0.5, 0.1]]), 0.7, 0.3, DEFINITION),
    ("an IoU of 0.5, between low (0.3) and high (0.7), is ignored: -2", _iou([[0.5, 0.8]]), 0.7, 0.3, BETWEEN),
    ("an IoU exactly at the high threshold (0.7) is positive", _iou([[0.7, 0.2]]), 0.7, 0.3, HIGH),
    ("an IoU exactly at the low threshold (0.3) is ignored, not background", _iou([[0.3, 0.8]]), 0.7, 0.3, LOW),
    ("an anchor that overlaps no GT at all (IoU 0 everywhere) is background", _iou([[0.0, 0.75], [0.0, 0.1]]), 0.7, 0.3, LOW),
    ("2 GTs × 5 anchors: one answer per anchor (shape [5])", _iou([[0.8, 0.1, 0.4, 0.0, 0.3], [0.1, 0.9, 0.2, 0.0, 0.65]]), 0.5, 0.3, AXIS),
    ("an anchor above high for both GTs takes the one it overlaps most (GT 1)", _iou([[0.6, 0.2], [0.8, 0.1]]), 0.5, 0.4, BEST),
    ("low == high: no ignored band, every anchor is matched or background", _iou([[0.5, 0.49, 0.51], [0.2, 0.3, 0.6]]), 0.5, 0.5, LOW),
    ("a GT whose best IoU (0.45) is below high gets no anchor", _iou([[0.45, 0.2, 0.1], [0.1, 0.2, 0.9]]), 0.5, 0.3, NO_LOW_QUALITY),
    ("3 GTs × 2 anchors (more GTs than anchors)", _iou([[0.1, 0.2], [0.75, 0.3], [0.2, 0.35]]), 0.7, 0.3, AXIS),
]


def _random_iou(num_gt: int, num_anchors: int, generator: torch.Generator, thresholds: tuple[float, float]) -> Tensor:
    """A random [G, P] IoU matrix in which a few anchors' best IoU equals one of the thresholds exactly."""
    iou = torch.rand(num_gt, num_anchors, generator=generator, dtype=torch.float64)
    for column in torch.randperm(num_anchors, generator=generator)[: num_anchors // 3].tolist():
        threshold = thresholds[column % 2]
        best_gt = int(torch.randint(num_gt, (1,), generator=generator))
        iou[:, column] *= 0.99 * threshold
        iou[best_gt, column] = threshold
    return iou


def check_match(student_fn: Callable[[Tensor, float, float], Tensor]) -> None:
    """Exercise 3: ``match(iou_matrix, high, low)`` for Tensor[G, P] → Tensor[P] of GT indices, -1 or -2 (no low-quality matches)."""
    cases = [Case(d, (iou, high, low), match_anchors(iou, high, low), h) for d, iou, high, low, h in _MATCH_CASES]
    generator = torch.Generator().manual_seed(22)
    for i, (num_gt, num_anchors, high, low) in enumerate([(1, 6, 0.7, 0.3), (3, 12, 0.5, 0.4), (4, 30, 0.6, 0.6), (5, 200, 0.7, 0.3)]):
        iou = _random_iou(num_gt, num_anchors, generator, (high, low))
        description = f"random IoU matrix #{i + 1} ({num_gt}×{num_anchors}, high {high}, low {low})"
        cases.append(Case(description, (iou, high, low), match_anchors(iou, high, low), f"{HIGH} {LOW}"))
    run_cases(student_fn, cases, "match")
