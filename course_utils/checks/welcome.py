"""Checks for notebook 00 (welcome and setup)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..data import masks_to_boxes
from ._core import Case, reference, run_cases


def _mask(h: int, w: int, pixels: Sequence[tuple[int, int]]) -> torch.Tensor:
    mask = torch.zeros((h, w), dtype=torch.uint8)
    for y, x in pixels:
        mask[y, x] = 1
    return mask


@reference("mask_to_box")
def reference_mask_to_box(mask: torch.Tensor) -> torch.Tensor:
    """The tight xyxy box (Tensor[4], pixel edges) of one ``[H, W]`` mask."""
    return masks_to_boxes(mask[None])[0]


def check_mask_to_box(student_fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Notebook 00's warm-up: the tight xyxy box (pixel edges) of one ``[H, W]`` mask."""
    edge = "x2 and y2 are pixel *edges*: a mask covering columns 3..7 has x1 = 3 and x2 = 8."
    fixed = [
        ("a single pixel at row 2, column 5", _mask(8, 8, [(2, 5)]), edge),
        ("a 2×3 block", _mask(10, 10, [(y, x) for y in (4, 5) for x in (1, 2, 3)]), "x runs along columns, y along rows."),
        ("pixels touching the image border", _mask(6, 9, [(0, 0), (5, 8)]), "the box must reach the last row and column."),
        ("a non-square image (rows ≠ columns)", _mask(4, 12, [(1, 10), (3, 2)]), "mask.shape is (H, W): rows first."),
    ]
    cases = [Case(d, (m,), reference_mask_to_box(m), h) for d, m, h in fixed]
    generator = torch.Generator().manual_seed(0)
    for i in range(6):
        mask = (torch.rand((20, 30), generator=generator) > 0.97).to(torch.uint8)
        mask[int(torch.randint(20, (1,), generator=generator)), int(torch.randint(30, (1,), generator=generator))] = 1
        cases.append(Case(f"random mask #{i + 1}", (mask,), reference_mask_to_box(mask), edge))
    run_cases(student_fn, cases, "mask_to_box")
