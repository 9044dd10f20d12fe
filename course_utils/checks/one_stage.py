"""Checks for notebook 05 (one-stage detectors): YOLO's target for one object, decoding one cell's box, and RetinaNet's focal loss."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..detection.ops import sigmoid_focal_loss
from ..detection.yolo import _cell_boxes, encode_targets
from ._core import Case, reference, run_cases


# ---------------------------------------------------------------------------------------------
# YOLO's target for one object
# ---------------------------------------------------------------------------------------------
@reference("yolo_target")
def reference_yolo_target(box: Tensor, image_size: int, grid_size: int) -> tuple[int, int, Tensor]:
    """One object's xyxy ``box`` [4] in pixels -> (row, col, target [4] = x, y offsets in the cell, √(w/s), √(h/s))."""
    encoded = encode_targets([{"boxes": box[None], "labels": torch.ones(1, dtype=torch.int64)}], grid_size, image_size)
    return int(encoded.row[0]), int(encoded.col[0]), encoded.xywh[0]


CELL = "the responsible cell holds the box centre: col = floor(cx / cell), row = floor(cy / cell), cell = image_size / grid_size."
ROW_COL = "return (row, col): the row comes from the centre's y, the column from its x."
OFFSET = "x and y are the centre's offset inside its cell, in cells: cx / cell - col (in [0, 1)), not cx / image_size."
ROOT = ("the size terms are square roots of the width and height relative to the image: √(w / image_size), √(h / image_size) "
        "(not w / image_size, not √w in pixels).")
FLOOR = ("the cell is floor(cx / cell), not round(cx / cell): a centre 1.8 cells from the left edge is in column 1, at offset 0.8 "
         "(round would give column 2 and a negative offset).")
LAST_EDGE = "a centre exactly on the image's last edge (cx = image_size) belongs to the last cell: clamp col and row to grid_size - 1."


def _target_case(description: str, box: list[float], image_size: int, grid_size: int, hint: str) -> Case:
    box_t = torch.tensor(box, dtype=torch.float32)
    return Case(description, (box_t, image_size, grid_size), reference_yolo_target(box_t, image_size, grid_size), hint)


def check_yolo_target(student_fn: Callable[[Tensor, int, int], tuple[int, int, Tensor]]) -> None:
    """``my_yolo_target(box [4], image_size, grid_size) -> (row, col, target [4])`` vs ``detection.yolo.encode_targets``.

    The fixed cases come in an order where each classic mistake first fails on the case that
    teaches it (sizes, offsets in the cell, row/col, floor, cell edges, the last edge).
    """
    cases = [
        _target_case("a 32×8 box centred on the top-left corner (0, 0): cell (0, 0), offsets 0, size terms √(32/128) = 0.5 and "
                     "√(8/128) = 0.25", [-16, -4, 16, 4], 128, 8, ROOT),
        _target_case("centre (21, 22) in cell (1, 1) of 16-px cells: offsets (0.3125, 0.375) inside the cell", [11, 12, 31, 32], 128, 8,
                     OFFSET),
        _target_case("centre (36, 84): x gives the column (2), y the row (5)", [26, 74, 46, 94], 128, 8, ROW_COL),
        _target_case("centre (29, 90) = (1.81, 5.63) cells: cell (5, 1), not (6, 2)", [19, 80, 39, 100], 128, 8, FLOOR),
        _target_case("a centre exactly on a cell edge (x = y = 48) starts the next cell, offset 0", [40, 40, 56, 56], 128, 8, CELL),
        _target_case("a box touching the bottom-right border, centre (112, 116): cell (7, 7)", [96, 104, 128, 128], 128, 8, CELL),
        _target_case("centre exactly on the last edge (x = 112) of a 112-px image, 7×7 grid", [104, 20, 120, 40], 112, 7, LAST_EDGE),
        _target_case("a 4×4 grid on a 64-px image: cells of 16 px", [5, 33, 21, 61], 64, 4, CELL),
    ]
    generator = torch.Generator().manual_seed(0)
    for i in range(10):
        grid_size = int(torch.tensor([4, 7, 8, 16])[torch.randint(4, (1,), generator=generator)])
        image_size = grid_size * int(torch.randint(8, 33, (1,), generator=generator))
        corner = torch.rand(2, generator=generator) * image_size * 0.8
        size = 2 + torch.rand(2, generator=generator) * (image_size - corner - 2)
        box = torch.cat([corner, corner + size]).tolist()
        cases.append(_target_case(f"random case #{i + 1}: box {[round(v, 1) for v in box]}, {image_size} px, {grid_size}×{grid_size} grid",
                                  box, image_size, grid_size, f"{CELL} {OFFSET} {ROOT}"))
    run_cases(student_fn, cases, "my_yolo_target")


# ---------------------------------------------------------------------------------------------
# Decoding one cell's box
# ---------------------------------------------------------------------------------------------
@reference("yolo_decode")
def reference_decode_cell(prediction: Tensor, row: int, col: int, grid_size: int, image_size: int) -> Tensor:
    """One box of cell (row, col), ``prediction`` [5] = (x, y, √w, √h, confidence) -> its xyxy box [4] in pixels."""
    return _cell_boxes(prediction[:4], torch.tensor(float(row)), torch.tensor(float(col)), grid_size, image_size)


CENTRE = ("the centre is ((col + x) · cell, (row + y) · cell) with cell = image_size / grid_size: x, y are offsets in the cell, "
          "so add the cell's column and row before scaling.")
SWAP = "x goes with the column and y with the row: cx = (col + x) · cell, cy = (row + y) · cell."
SQUARE = "the model predicts √w and √h (relative to the image): the size is (√w)² · image_size by (√h)² · image_size."
CORNERS = ("return corners, not centre and size: [cx - w/2, cy - h/2, cx + w/2, cy + h/2], in pixels, with cx = (col + x) · cell "
           "(cell = image_size / grid_size: x is an offset in the cell, not in the image) and w = (√w)² · image_size (relative "
           "to the whole image, not to the cell).")
CONFIDENCE = "the fifth number is the confidence; the box comes from the first four only."


def _decode_case(description: str, prediction: list[float], row: int, col: int, grid_size: int, image_size: int, hint: str) -> Case:
    p = torch.tensor(prediction, dtype=torch.float32)
    args = (p, row, col, grid_size, image_size)
    return Case(description, args, reference_decode_cell(*args), hint)


def check_yolo_decode(student_fn: Callable[[Tensor, int, int, int, int], Tensor]) -> None:
    """``my_decode_cell(prediction [5], row, col, grid_size, image_size) -> box [4]`` vs the model's decoding.

    Ordered so that each classic mistake first fails on the case that teaches it (corners, the
    square, the cell offset, row/col, the confidence).
    """
    cases = [
        _decode_case("cell (0, 0), offsets 0.5, √w = √h = 1 on 128 px, 8×8: a box the size of the image, centred at (8, 8)",
                     [0.5, 0.5, 1.0, 1.0, 0.9], 0, 0, 8, 128, CORNERS),
        _decode_case("cell (0, 0), √w = 0.8, √h = 0.2: a wide box of 0.64 × 0.04 of the image", [0.5, 0.5, 0.8, 0.2, 0.7], 0, 0, 8, 128,
                     SQUARE),
        _decode_case("cell (3, 3), offsets (0.25, 0.75): the centre is 3 cells plus the offset from each edge", [0.25, 0.75, 0.4, 0.4, 0.5],
                     3, 3, 8, 128, CENTRE),
        _decode_case("cell (2, 5): the column moves x, the row moves y", [0.25, 0.75, 0.3, 0.3, 0.8], 2, 5, 8, 128, SWAP),
        _decode_case("the confidence (0.01) plays no part in the box", [0.5, 0.5, 0.5, 0.5, 0.01], 1, 6, 8, 128, CONFIDENCE),
        _decode_case("a 7×7 grid on 112 px: cells of 16 px", [0.3, 0.6, 0.35, 0.5, 0.4], 6, 2, 7, 112, CENTRE),
    ]
    generator = torch.Generator().manual_seed(0)
    for i in range(10):
        grid_size = int(torch.tensor([4, 7, 8, 16])[torch.randint(4, (1,), generator=generator)])
        image_size = grid_size * int(torch.randint(8, 33, (1,), generator=generator))
        row, col = (int(v) for v in torch.randint(grid_size, (2,), generator=generator))
        prediction = torch.rand(5, generator=generator).tolist()
        cases.append(_decode_case(f"random case #{i + 1}: cell ({row}, {col}) of {grid_size}×{grid_size}, {image_size} px",
                                  prediction, row, col, grid_size, image_size, f"{CENTRE} {SQUARE}"))
    run_cases(student_fn, cases, "my_decode_cell")


# ---------------------------------------------------------------------------------------------
# The focal loss (RetinaNet)
# ---------------------------------------------------------------------------------------------
@reference("focal_loss")
def reference_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise focal loss of ``logits`` against 0/1 ``targets`` (same shape): ``torchvision.ops.sigmoid_focal_loss``
    with ``reduction="none"``: ``alpha_t · (1 - p_t)^gamma · BCE``; ``alpha = -1``: no weighting."""
    return sigmoid_focal_loss(logits, targets, alpha, gamma, reduction="none")


BCE = ("with gamma = 0 and alpha = 0.5 the focal loss is 0.5 × the binary cross-entropy of each element, "
       "F.binary_cross_entropy_with_logits(logits, targets, reduction='none'): one loss per element, the shape of logits "
       "(no mean, no sum).")
ALPHA = ("alpha weights the positives (target 1) and 1 - alpha the negatives: alpha_t = alpha · targets + (1 - alpha) · (1 - targets). "
         "With RetinaNet's alpha = 0.25 the positives get the smaller weight: the focusing term already quiets the easy negatives.")
NO_ALPHA = "alpha = -1 means no weighting at all (as torchvision): skip the alpha_t factor when alpha < 0."
FOCUS = ("the modulating factor is (1 - p_t) ** gamma, p_t being the probability given to the true label (p = sigmoid(logits) "
         "for a positive): near 0 for an easy example (p_t near 1), near 1 for a hard one.")
P_T = ("use p_t, not p, in the factor: p_t = p for a positive and 1 - p for a negative (p_t = p · t + (1 - p) · (1 - t)); "
       "(1 - p) ** gamma would make the confident negatives (p near 0) weigh the most.")
STABLE = ("compute the cross-entropy from the logits with F.binary_cross_entropy_with_logits (stable for any logit), not as "
          "-log(sigmoid(x)): in float32 sigmoid(30) is exactly 1, so log(1 - p) = -inf (and 0 · -inf = nan).")
ELEMENTWISE = "the loss is element-wise (reduction 'none'): return a tensor of the shape of logits, one loss per element."


def _focal_case(description: str, logits: Tensor, targets: Tensor, alpha: float, gamma: float, hint: str) -> Case:
    args = (logits, targets, alpha, gamma)
    return Case(description, args, reference_focal_loss(*args), hint)


def _focal_inputs(generator: torch.Generator, shape: tuple[int, ...], positive: float, scale: float = 3.0) -> tuple[Tensor, Tensor]:
    """Logits ~ scale · N(0, 1) and float 0/1 targets (a share ``positive`` of ones) of ``shape``."""
    logits = scale * torch.randn(shape, generator=generator)
    targets = (torch.rand(shape, generator=generator) < positive).float()
    return logits, targets


def check_focal_loss(student_fn: Callable[[Tensor, Tensor, float, float], Tensor]) -> None:
    """``my_focal_loss(logits, targets, alpha=0.25, gamma=2.0) -> Tensor`` (element-wise) vs ``detection.sigmoid_focal_loss``.

    Ordered so that each classic mistake first fails on the case that teaches it: the cross-entropy,
    alpha on the positives, alpha = -1, the focusing term, p_t instead of p, extreme logits.
    """
    g = torch.Generator().manual_seed(5)
    logits, targets = _focal_inputs(g, (12,), 0.5)
    positives = 3 * torch.randn(8, generator=g)
    negatives = 3 * torch.randn(8, generator=g)
    extreme = torch.tensor([30.0, -30.0, 30.0, -30.0, 100.0, -100.0, 100.0, -100.0])
    extreme_targets = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    grid_logits, grid_targets = _focal_inputs(g, (16, 5), 0.05)  # 16 anchors × 5 classes, as RetinaNet's classification head
    easy = torch.tensor([-4.6, -2.2, 0.0, 2.2, 4.6])
    cases = [
        _focal_case("gamma = 0, alpha = 0.5: half the binary cross-entropy of each element", logits, targets, 0.5, 0.0, BCE),
        _focal_case("gamma = 0, alpha = 0.25: the alpha-weighted cross-entropy (positives × 0.25, negatives × 0.75)", logits, targets,
                    0.25, 0.0, ALPHA),
        _focal_case("gamma = 0, alpha = -1: no weighting, plain binary cross-entropy", logits, targets, -1, 0.0, NO_ALPHA),
        _focal_case("positives only, gamma = 2, alpha = -1: (1 - p)² · BCE", positives, torch.ones(8), -1, 2.0, FOCUS),
        _focal_case("negatives only, gamma = 2, alpha = -1: for a negative p_t = 1 - p", negatives, torch.zeros(8), -1, 2.0, P_T),
        _focal_case("negatives from easy (p = 0.01) to hard (p = 0.99), the defaults alpha = 0.25, gamma = 2", easy, torch.zeros(5),
                    0.25, 2.0, P_T),
        _focal_case("extreme logits ±30 and ±100: the loss must stay finite (22.5 for a negative at logit 30)", extreme,
                    extreme_targets, 0.25, 2.0, STABLE),
        _focal_case("a 16 × 5 map (anchors × classes) with 5% positives: the loss keeps the shape", grid_logits, grid_targets, 0.25, 2.0,
                    ELEMENTWISE),
        _focal_case("gamma = 0.5 (not a whole number), alpha = 0.75", logits, targets, 0.75, 0.5, FOCUS),
    ]
    for i in range(8):
        shape = tuple(int(v) for v in torch.randint(1, 9, (int(torch.randint(1, 4, (1,), generator=g)),), generator=g))
        alpha = (0.25, 0.5, 0.75, -1.0)[int(torch.randint(4, (1,), generator=g))]
        gamma = (0.0, 0.5, 1.0, 2.0, 5.0)[int(torch.randint(5, (1,), generator=g))]
        logits, targets = _focal_inputs(g, shape, 0.3, scale=float(1 + 4 * torch.rand(1, generator=g)))
        cases.append(_focal_case(f"random case #{i + 1}: shape {list(shape)}, alpha {alpha}, gamma {gamma}", logits, targets, alpha,
                                 gamma, f"{ALPHA} {P_T} {STABLE}"))
    run_cases(student_fn, cases, "my_focal_loss")
