"""Checks for notebook 07 (instance segmentation): the IoU of two instance masks, the overlap that mask AP thresholds."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ._core import Case, reference, run_cases


@reference("mask_iou")
def reference_mask_iou(mask_a: Tensor, mask_b: Tensor) -> float:
    """IoU of two binary masks ``[H, W]`` (bool or 0/1 integers): pixels in both / pixels in either; 0 when both are empty."""
    a, b = mask_a.bool(), mask_b.bool()
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0


def _disk(h: int, w: int, cy: float, cx: float, r: float) -> Tensor:
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r**2).to(torch.uint8)


def _block(h: int, w: int, y0: int, y1: int, x0: int, x1: int, dtype: torch.dtype = torch.uint8) -> Tensor:
    mask = torch.zeros((h, w), dtype=dtype)
    mask[y0:y1, x0:x1] = 1
    return mask


PIXELS = "count pixels: intersection = pixels set in both masks, union = pixels set in at least one (a | b), IoU = intersection / union."
UNION = "the union is not |a| + |b|: that counts the shared pixels twice. Use |a| + |b| - |a ∩ b|, or (a | b).sum()."
EMPTY = "two empty masks have no union: return 0.0 (as pycocotools does), not NaN or an error."
UINT8 = ("uint8 masks wrap around: 255 + 1 = 0, and a uint8 sum of many pixels can overflow; turn the masks into bool "
         "(mask.bool()) before & and |, and count with .sum() (which gives int64).")
BOX = "mask IoU looks at pixels, not at the boxes around them: two disks in the same box can overlap only partly."


def check_mask_iou(student_fn: Callable[[Tensor, Tensor], float]) -> None:
    """``my_mask_iou(mask_a [H, W], mask_b [H, W]) -> float`` vs the reference (pixels in both / pixels in either)."""
    fixed = [
        ("two 10×10 blocks overlapping in a 5×10 strip: 50 / 150", _block(20, 20, 0, 10, 0, 10), _block(20, 20, 5, 15, 0, 10), UNION),
        ("a mask with itself: 1", _disk(16, 16, 8, 8, 5), _disk(16, 16, 8, 8, 5), PIXELS),
        ("disjoint masks: 0", _block(12, 12, 0, 3, 0, 3), _block(12, 12, 6, 9, 6, 9), PIXELS),
        ("a 4×4 block inside an 8×8 block: 16 / 64", _block(10, 10, 2, 6, 2, 6), _block(10, 10, 0, 8, 0, 8), UNION),
        ("two disks in the same box, one shifted: pixels decide, not boxes", _disk(24, 24, 11, 11, 8), _disk(24, 24, 13, 11, 8), BOX),
        ("two empty masks: 0.0", torch.zeros(8, 8, dtype=torch.uint8), torch.zeros(8, 8, dtype=torch.uint8), EMPTY),
        ("bool masks of a non-square image", _block(6, 15, 1, 5, 2, 12, torch.bool), _block(6, 15, 0, 3, 0, 8, torch.bool), PIXELS),
        ("big uint8 masks (300 pixels in both)", _block(40, 40, 0, 20, 0, 15), _block(40, 40, 0, 20, 0, 20), UINT8),
    ]
    cases = [Case(d, (a, b), reference_mask_iou(a, b), h) for d, a, b, h in fixed]
    generator = torch.Generator().manual_seed(0)
    for i in range(6):
        a = (torch.rand((30, 25), generator=generator) > 0.6).to(torch.uint8)
        b = (torch.rand((30, 25), generator=generator) > 0.5).to(torch.uint8)
        cases.append(Case(f"random masks #{i + 1}", (a, b), reference_mask_iou(a, b), f"{PIXELS} {UNION}"))
    run_cases(student_fn, cases, "my_mask_iou")
