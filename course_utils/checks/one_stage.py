"""Checks for notebook 05 (one-stage detectors): YOLO's target for one object, and decoding one cell's box."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

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
ROOT = "the size terms are square roots of the width and height relative to the image: √(w / image_size), √(h / image_size)."
LAST_EDGE = "a centre exactly on the image's last edge (cx = image_size) belongs to the last cell: clamp col and row to grid_size - 1."


def _target_case(description: str, box: list[float], image_size: int, grid_size: int, hint: str) -> Case:
    box_t = torch.tensor(box, dtype=torch.float32)
    return Case(description, (box_t, image_size, grid_size), reference_yolo_target(box_t, image_size, grid_size), hint)


def check_yolo_target(student_fn: Callable[[Tensor, int, int], tuple[int, int, Tensor]]) -> None:
    """``my_yolo_target(box [4], image_size, grid_size) -> (row, col, target [4])`` vs ``detection.yolo.encode_targets``."""
    cases = [
        _target_case("a box covering the 128-px image: centre (64, 64) starts cell (4, 4) of the 8×8 grid", [0, 0, 128, 128], 128, 8,
                     OFFSET),
        _target_case("a 64×16 box centred at (40, 40), cell (2, 2): √(64/128) and √(16/128) as size terms", [8, 32, 72, 48], 128, 8,
                     ROOT),
        _target_case("centre (40, 90): x gives the column, y the row", [30, 80, 50, 100], 128, 8, ROW_COL),
        _target_case("centre (21, 70) in cell (4, 1): the offsets are in cells, inside the cell", [13, 60, 29, 80], 128, 8, OFFSET),
        _target_case("a centre exactly on a cell edge (x = 48) starts the next cell, offset 0", [40, 40, 56, 56], 128, 8, CELL),
        _target_case("a box past the bottom-right corner, centre (120, 124): cell (7, 7)", [112, 116, 128, 132],
                     128, 8, LAST_EDGE),
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


CENTRE = "the centre is ((col + x) · cell, (row + y) · cell) with cell = image_size / grid_size: x, y are offsets in the cell."
SWAP = "x goes with the column and y with the row: cx = (col + x) · cell, cy = (row + y) · cell."
SQUARE = "the model predicts √w and √h (relative to the image): the size is (√w)² · image_size by (√h)² · image_size."
CORNERS = "return corners, not centre and size: [cx - w/2, cy - h/2, cx + w/2, cy + h/2]."
CONFIDENCE = "the fifth number is the confidence; the box comes from the first four only."


def _decode_case(description: str, prediction: list[float], row: int, col: int, grid_size: int, image_size: int, hint: str) -> Case:
    p = torch.tensor(prediction, dtype=torch.float32)
    args = (p, row, col, grid_size, image_size)
    return Case(description, args, reference_decode_cell(*args), hint)


def check_yolo_decode(student_fn: Callable[[Tensor, int, int, int, int], Tensor]) -> None:
    """``my_decode_cell(prediction [5], row, col, grid_size, image_size) -> box [4]`` vs the model's decoding."""
    cases = [
        _decode_case("cell (0, 0), offsets 0.5, √w = √h = 1 on 128 px, 8×8: the whole image, centred at (8, 8)", [0.5, 0.5, 1.0, 1.0, 0.9],
                     0, 0, 8, 128, CORNERS),
        _decode_case("cell (4, 4), √w = 0.8, √h = 0.2: a wide box of 0.64 × 0.04 of the image", [0.5, 0.5, 0.8, 0.2, 0.7], 4, 4, 8, 128,
                     SQUARE),
        _decode_case("cell (2, 5): the column moves x, the row moves y", [0.25, 0.75, 0.3, 0.3, 0.8], 2, 5, 8, 128, SWAP),
        _decode_case("cell (3, 3), offsets (0.1, 0.9)", [0.1, 0.9, 0.4, 0.4, 0.5], 3, 3, 8, 128, CENTRE),
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
