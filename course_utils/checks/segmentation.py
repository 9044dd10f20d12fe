"""Checks for notebook 06 (semantic segmentation): the confusion matrix, the Dice score and the bilinear kernel."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..metrics import confusion_matrix, segmentation_scores
from ..segmentation import bilinear_kernel
from ._core import Case, reference, run_cases


# ---------------------------------------------------------------------------------------------
# The pixel confusion matrix
# ---------------------------------------------------------------------------------------------
@reference("confusion_matrix")
def reference_confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``mat[gt, pred]`` pixel counts (int64 [C, C]); target pixels equal to 255 are skipped."""
    return confusion_matrix(pred, target, num_classes)


ROWS = "rows are the true classes, columns the predictions: mat[gt, pred] (transpose yours if it is mat[pred, gt])."
VOID = "target pixels equal to 255 (void) are not counted at all, whatever was predicted there."
ALL_CLASSES = "the matrix is C×C even when a class appears nowhere: use bincount(C · gt + pred, minlength=C·C)."


def _confmat_case(description: str, pred: list, target: list, num_classes: int, hint: str) -> Case:
    p, t = torch.tensor(pred), torch.tensor(target)
    return Case(description, (p, t, num_classes), reference_confusion_matrix(p, t, num_classes), hint)


def check_confusion_matrix(student_fn: Callable[[Tensor, Tensor, int], Tensor]) -> None:
    """``my_confusion_matrix(pred [H, W], target [H, W], num_classes) -> Tensor[C, C]`` vs ``metrics.confusion_matrix``."""
    cases = [
        _confmat_case("a perfect 2×2 prediction: the counts are on the diagonal", [[0, 1], [1, 1]], [[0, 1], [1, 1]], 2, ALL_CLASSES),
        _confmat_case("one pixel of class 1 predicted 0: mat[1, 0] = 1", [[0, 0], [1, 1]], [[0, 1], [1, 1]], 2, ROWS),
        _confmat_case("class 2 never appears: its row and column are zeros", [[0, 1], [0, 1]], [[0, 1], [1, 1]], 3, ALL_CLASSES),
        _confmat_case("two void pixels (255) in the target are skipped", [[0, 1, 2], [2, 2, 0]], [[0, 255, 2], [1, 255, 0]], 3, VOID),
    ]
    generator = torch.Generator().manual_seed(0)
    for i in range(6):
        n = int(torch.randint(2, 6, (1,), generator=generator))
        target = torch.randint(0, n, (8, 9), generator=generator)
        pred = torch.where(torch.rand(8, 9, generator=generator) < 0.6, target, torch.randint(0, n, (8, 9), generator=generator))
        target[torch.rand(8, 9, generator=generator) < 0.1] = 255
        cases.append(_confmat_case(f"random case #{i + 1}: 8×9 maps, {n} classes", pred.tolist(), target.tolist(), n,
                                   f"{ROWS} {VOID}"))
    run_cases(student_fn, cases, "my_confusion_matrix")


# ---------------------------------------------------------------------------------------------
# Dice of one class
# ---------------------------------------------------------------------------------------------
@reference("dice")
def reference_dice(pred_mask: Tensor, true_mask: Tensor) -> float:
    """Dice of two bool masks of the same shape: ``2 |A ∩ B| / (|A| + |B|)`` (not both empty)."""
    pred, true = pred_mask.bool(), true_mask.bool()
    matrix = torch.tensor([[int((~pred & ~true).sum()), int((pred & ~true).sum())], [int((~pred & true).sum()), int((pred & true).sum())]])
    return float(segmentation_scores(matrix)["dice"][1])  # matrix = mat[gt, pred]


DICE = "Dice = 2 |A ∩ B| / (|A| + |B|): twice the overlap over the sum of the two sizes."
NOT_IOU = "that is the IoU |A ∩ B| / |A ∪ B|; Dice counts the overlap twice and divides by |A| + |B| (Dice = 2 IoU / (1 + IoU))."
EMPTY = "a prediction that is empty while the truth is not has no overlap: Dice 0, not NaN and not 1."
FLOAT = "count pixels as numbers before dividing (e.g. .sum().item() or .float()): integer division or bool arithmetic goes wrong."


def _dice_case(description: str, pred: Tensor, true: Tensor, hint: str) -> Case:
    return Case(description, (pred, true), reference_dice(pred, true), hint)


def _disc(size: int, cy: float, cx: float, r: float) -> Tensor:
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (ys - cy) ** 2 + (xs - cx) ** 2 <= r**2


def check_dice(student_fn: Callable[[Tensor, Tensor], float]) -> None:
    """``my_dice(pred_mask [H, W] bool, true_mask [H, W] bool) -> float`` vs ``metrics.segmentation_scores``'s Dice."""
    half = torch.zeros(4, 4, dtype=torch.bool)
    half[:, :2] = True
    quarter = torch.zeros(4, 4, dtype=torch.bool)
    quarter[:2, :2] = True
    cases = [
        _dice_case("identical masks: Dice 1", half, half.clone(), DICE),
        _dice_case("a prediction covering half of the true mask: 2·4 / (4 + 8) = 0.667 (the IoU would be 0.5)", quarter, half, NOT_IOU),
        _dice_case("an empty prediction of a non-empty mask: Dice 0", torch.zeros(4, 4, dtype=torch.bool), half, EMPTY),
        _dice_case("disjoint masks: Dice 0", quarter, ~half, DICE),
        _dice_case("two overlapping discs of radius 6, centres 4 px apart", _disc(24, 12, 10, 6), _disc(24, 12, 14, 6), FLOAT),
    ]
    generator = torch.Generator().manual_seed(1)
    for i in range(6):
        true = torch.rand(12, 12, generator=generator) < 0.4
        pred = torch.where(torch.rand(12, 12, generator=generator) < 0.7, true, torch.rand(12, 12, generator=generator) < 0.4)
        cases.append(_dice_case(f"random case #{i + 1}: 12×12 masks", pred | true & (i == 0), true, f"{DICE} {NOT_IOU}"))
    run_cases(student_fn, cases, "my_dice")


# ---------------------------------------------------------------------------------------------
# The bilinear kernel of a transposed convolution
# ---------------------------------------------------------------------------------------------
@reference("bilinear_kernel")
def reference_bilinear_kernel(kernel_size: int) -> Tensor:
    """The ``[k, k]`` tent filter that makes a stride-``ceil(k/2)`` transposed convolution up-sample bilinearly."""
    return bilinear_kernel(1, 1, kernel_size)[0, 0]


TENT = ("the filter is an outer product of a 1-D tent: 1 - |i - centre| / f for i = 0 .. k-1, with f = ceil(k / 2) "
        "(the up-sampling factor), centre = f - 1 for odd k and f - 0.5 for even k.")
CENTRE_HINT = "for even k the tent's peak sits between the two middle taps: centre = f - 0.5 (k = 4: taps 0.25, 0.75, 0.75, 0.25)."
FACTOR = "divide the distance by the factor f = ceil(k / 2), not by k: the tent reaches 0 one factor away from its centre."


def check_bilinear_kernel(student_fn: Callable[[int], Tensor]) -> None:
    """``my_bilinear_kernel(kernel_size) -> Tensor[k, k]`` vs ``segmentation.bilinear_kernel``."""
    hints = {1: TENT, 3: FACTOR, 2: CENTRE_HINT, 4: CENTRE_HINT, 5: FACTOR, 8: CENTRE_HINT, 16: TENT}  # each mistake fails first where its hint is
    cases = [Case(f"kernel_size = {k} (factor {(k + 1) // 2})", (k,), reference_bilinear_kernel(k), hint) for k, hint in hints.items()]
    run_cases(student_fn, cases, "my_bilinear_kernel")
