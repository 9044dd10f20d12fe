"""Checks for notebook 01 (boxes and IoU): the IoU of two boxes, then of every pair of two sets."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..boxes import box_iou
from ._core import Case, reference, run_cases

CLAMP = "clamp the intersection's width and height at 0 *separately* (max(0, w), max(0, h)) before multiplying."
NO_PLUS_ONE = "boxes that only touch share an edge, not an area: their IoU is 0. Width is x2 - x1, with no +1."
ZERO_UNION = "two zero-area boxes have union 0: return IoU 0 there instead of computing 0 / 0 (NaN)."
SYMMETRIC = "IoU is symmetric: the union is area(a) + area(b) - intersection, whichever box comes first."
NESTED = "when one box contains the other, the intersection is the small box and the union the big one."
FLOATS = "coordinates can be fractions of a pixel: do not round them or convert them to int."
DEFINITION = "IoU = intersection area / union area, union = area(a) + area(b) - intersection."
WORKED = "intersection 9 × 9 = 81, union 100 + 100 - 81 = 119, IoU 81 / 119. Widths are x2 - x1, with no +1."
ONE_PAIR = "the result is an N×M matrix even for one pair (shape [1, 1]); here its entry is 81 / 119."
PAIRWISE = "the result is N×M: entry [i, j] compares boxes1[i] with boxes2[j]; broadcast boxes1[:, None] against boxes2[None, :]."

# (description, box a, box b, hint): each pair teaches one thing.
_PAIRS = [
    ("the lesson's worked example A=(0,0,10,10), B=(1,1,11,11)", (0, 0, 10, 10), (1, 1, 11, 11), WORKED),
    ("identical boxes", (2, 3, 12, 9), (2, 3, 12, 9), "a box overlaps itself completely: intersection = union, IoU 1."),
    ("boxes that only touch (they share the edge x = 5)", (0, 0, 5, 5), (5, 0, 10, 5), NO_PLUS_ONE),
    ("boxes that only touch at a corner", (0, 0, 5, 5), (5, 5, 9, 9), NO_PLUS_ONE),
    ("disjoint boxes side by side", (0, 0, 4, 4), (6, 0, 10, 4), CLAMP),
    ("disjoint boxes on a diagonal (both overlap sides are negative)", (0, 0, 2, 2), (5, 5, 8, 8), CLAMP),
    ("a small box nested in a big one: IoU = 16 / 100", (0, 0, 10, 10), (2, 2, 6, 6), NESTED),
    ("swapped arguments: the big box second", (2, 2, 6, 6), (0, 0, 10, 10), SYMMETRIC),
    ("two zero-area boxes (the same point)", (3, 3, 3, 3), (3, 3, 3, 3), ZERO_UNION),
    ("a zero-width box (a line) inside a box", (4, 0, 4, 8), (0, 0, 10, 10), "a line has no area, so no intersection: IoU 0."),
    ("float coordinates", (0.5, 0.5, 2.5, 3.0), (1.0, 1.5, 3.5, 2.5), FLOATS),
]


def _boxes(rows: list) -> Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def _random_boxes(n: int, generator: torch.Generator, size: float = 20.0) -> Tensor:
    """``n`` random float xyxy boxes (Tensor[n, 4]) in a 40×40 area, sides in [0, size)."""
    top_left = torch.rand(n, 2, generator=generator) * 40
    return torch.cat([top_left, top_left + torch.rand(n, 2, generator=generator) * size], dim=1)


@reference("iou")
def reference_iou(box_a: Tensor, box_b: Tensor) -> float:
    """IoU of two xyxy boxes, each a Tensor[4]."""
    return float(box_iou(box_a[None], box_b[None]))


reference("pairwise_iou")(box_iou)


def check_iou(student_fn: Callable[[Tensor, Tensor], float]) -> None:
    """Exercise 1: ``iou(box_a, box_b)`` of two xyxy boxes (each a Tensor[4]) → a number."""
    cases = [Case(d, (_boxes(a)[0], _boxes(b)[0]), reference_iou(_boxes(a)[0], _boxes(b)[0]), h) for d, a, b, h in _PAIRS]
    generator = torch.Generator().manual_seed(1)
    for i in range(10):
        a, b = _random_boxes(2, generator)
        cases.append(Case(f"random pair #{i + 1}", (a, b), reference_iou(a, b), DEFINITION))
    run_cases(student_fn, cases, "iou")


def check_pairwise_iou(student_fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Exercise 2: ``pairwise_iou(boxes1, boxes2)`` for Tensor[N, 4] and Tensor[M, 4] → Tensor[N, M]."""
    edge_a = _boxes([a for _, a, _, _ in _PAIRS])
    edge_b = _boxes([b for _, _, b, _ in _PAIRS])
    overlapping_2 = _boxes([[0, 0, 10, 10], [2, 2, 6, 6]])
    overlapping_3 = _boxes([[1, 1, 11, 11], [0, 0, 10, 10], [4, 4, 8, 8]])
    fixed = [
        ("one pair, the lesson's worked example: a 1×1 matrix", _boxes([0, 0, 10, 10]), _boxes([1, 1, 11, 11]), ONE_PAIR),
        ("2 boxes against 2 boxes: a 2×2 matrix, not 2 numbers", edge_a[:2], edge_b[:2], PAIRWISE),
        ("2 boxes against 3 boxes: a 2×3 matrix", overlapping_2, overlapping_3, PAIRWISE),
        ("boxes that only touch, disjoint and nested boxes", edge_a[2:8], edge_b[2:8], f"{NO_PLUS_ONE} {CLAMP}"),
        ("zero-area boxes (points and lines) among normal ones", edge_a[7:10], edge_b[7:10], ZERO_UNION),
        ("float coordinates", edge_a[9:], edge_b[7:], FLOATS),
        ("no boxes in boxes1: an empty 0×3 matrix", _boxes([]), edge_b[:3], "with N = 0 the result has shape [0, M]."),
        ("swapped arguments (boxes2, boxes1): the transposed matrix", overlapping_3, overlapping_2, PAIRWISE),
    ]
    cases = [Case(d, (a, b), box_iou(a, b), h) for d, a, b, h in fixed]
    generator = torch.Generator().manual_seed(2)
    for i, (n, m) in enumerate([(1, 4), (5, 1), (5, 7), (20, 30)]):
        boxes1, boxes2 = _random_boxes(n, generator), _random_boxes(m, generator)
        cases.append(Case(f"random boxes #{i + 1}: {n}×{m}", (boxes1, boxes2), box_iou(boxes1, boxes2), PAIRWISE))
    run_cases(student_fn, cases, "pairwise_iou")
