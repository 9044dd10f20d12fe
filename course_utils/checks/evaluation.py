"""Checks for notebook 12 (trust but verify): the hit rate of the pointing game."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from ..xai import pointing_game
from ._core import Case, reference, run_cases

DEFINITION = (
    "for each image take its heatmap's maximum pixel (row i, column j); it is a hit when the pixel's "
    "centre (x, y) = (j + 0.5, i + 0.5) lies in one of the image's boxes; return hits / images."
)
CENTRE = (
    "boxes use pixel-EDGE coordinates: the pixel in column j spans x from j to j + 1, so test its "
    "centre j + 0.5. With x2 = 5 the box's last column is 4; column 5 is outside."
)
BORDER = "a centre exactly on the box's border counts as inside: compare with <= and >=, not < and >."
ROWS_COLS = (
    "for an H×W map the flat argmax k is row k // W and column k % W; x is the column, y the row, "
    "and a box is (x1, y1, x2, y2)."
)
ANY_BOX = "an image is a hit when its point is in ANY of its boxes, not only the first one."
FIRST_MAX = (
    "on ties take the FIRST maximum in row-major order, as heatmap.flatten().argmax() does: "
    "one point per image, even if another maximum lies in the box."
)
SIGNED = "the maximum is the largest value, not the largest magnitude: do not take abs()."
NO_BOX = "an image with no box (a [0, 4] tensor) is never a hit, but it still counts in the number of images."
RATE = "return the hit RATE, hits / number of images (a number in [0, 1]), not the number of hits."
FLOATS = "box coordinates can be fractions of a pixel: compare with them as they are, do not round them."


def _single(height: int, width: int, peaks: Sequence[tuple[int, int, float]]) -> Tensor:
    """A ``[1, height, width]`` heatmap of zeros with ``value`` at each ``(row, column, value)``."""
    heatmap = torch.zeros(1, height, width)
    for row, column, value in peaks:
        heatmap[0, row, column] = value
    return heatmap


def _boxes(rows: list) -> Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


@reference("pointing_game")
def reference_pointing_game(heatmaps: Tensor, boxes: list[Tensor]) -> float:
    """The pointing game's hit rate of ``heatmaps`` [N, H, W] against N box sets [K_i, 4]."""
    return pointing_game(heatmaps, boxes)["hit_rate"]


def _case(description: str, heatmaps: Tensor, boxes: list[Tensor], hint: str) -> Case:
    return Case(description, (heatmaps, boxes), reference_pointing_game(heatmaps, boxes), hint)


def _fixed_cases() -> list[Case]:
    """The edge cases, each on one idea (a wrong idea turns its expected 1.0 into 0.0 or back)."""
    four = torch.zeros(4, 6, 6)
    for n, (row, column) in enumerate([(1, 1), (4, 4), (2, 3), (5, 0)]):
        four[n, row, column] = 1.0
    constant = torch.full((1, 5, 7), 0.3)
    return [
        _case("one image, its maximum in the middle of the box", _single(8, 8, [(3, 3, 1.0)]), [_boxes([2, 2, 6, 6])], DEFINITION),
        _case("the maximum one column right of the box: column 5 when x2 = 5 (a miss)",
              _single(8, 8, [(3, 5, 1.0)]), [_boxes([2, 2, 5, 5])], CENTRE),
        _case("fractional box coordinates (2.4, 2.4, 4.6, 4.6), the maximum's centre at (4.5, 3.5)",
              _single(8, 8, [(3, 4, 1.0)]), [_boxes([2.4, 2.4, 4.6, 4.6])], FLOATS),
        _case("the maximum's centre exactly on the box's left border x1 = 3.5",
              _single(8, 8, [(4, 3, 1.0)]), [_boxes([3.5, 2, 6, 7])], BORDER),
        _case("the maximum's centre exactly on the box's bottom-right corner (3.5, 3.5)",
              _single(8, 8, [(3, 3, 1.0)]), [_boxes([1.5, 1.5, 3.5, 3.5])], BORDER),
        _case("a non-square 4×9 map, its maximum at row 1, column 6",
              _single(4, 9, [(1, 6, 1.0)]), [_boxes([6, 1, 7, 2])], ROWS_COLS),
        _case("two boxes, the maximum in the second one",
              _single(10, 10, [(7, 8, 1.0)]), [_boxes([[0, 0, 3, 3], [6, 6, 10, 10]])], ANY_BOX),
        _case("a tie: the first maximum (row-major) is outside the box, the second inside (a miss)",
              _single(8, 8, [(0, 7, 2.0), (5, 2, 2.0)]), [_boxes([1, 4, 4, 7])], FIRST_MAX),
        _case("a constant heatmap: every pixel ties, so the point is the top-left pixel",
              constant, [_boxes([0, 0, 1, 1])], FIRST_MAX),
        _case("signed values: -9 outside the box, the maximum +1 inside",
              _single(8, 8, [(1, 1, -9.0), (6, 6, 1.0)]), [_boxes([5, 5, 8, 8])], SIGNED),
        _case("four images, three hits: hit rate 3 / 4", four,
              [_boxes([1, 1, 2, 2]), _boxes([4, 4, 6, 6]), _boxes([0, 0, 2, 2]), _boxes([0, 5, 1, 6])], RATE),
        _case("two images, the second without any box: hit rate 1 / 2",
              torch.cat([_single(6, 6, [(2, 2, 1.0)])] * 2), [_boxes([1, 1, 4, 4]), _boxes([])], NO_BOX),
    ]


def _random_case(number: int, generator: torch.Generator) -> Case:
    """A few random maps whose maximum 1.0 sits on one or two (a tie) random pixels; 0 to 3 float boxes each."""
    n = int(torch.randint(1, 9, (1,), generator=generator))
    height, width = (int(v) for v in torch.randint(3, 16, (2,), generator=generator))
    heatmaps = 0.9 * torch.rand(n, height * width, generator=generator)
    peaks = torch.randint(height * width, (n, 2), generator=generator)
    peaks[:, 1] = torch.where(torch.rand(n, generator=generator) < 0.5, peaks[:, 0], peaks[:, 1])
    heatmaps = heatmaps.scatter(1, peaks, 1.0).view(n, height, width)
    size = torch.tensor([width, height], dtype=torch.float32)
    boxes = []
    for _ in range(n):
        k = int(torch.randint(0, 4, (1,), generator=generator))
        top_left = torch.rand(k, 2, generator=generator) * 0.6 * size
        sides = (0.2 + 0.5 * torch.rand(k, 2, generator=generator)) * size
        boxes.append(torch.cat([top_left, top_left + sides], dim=1))
    description = f"random #{number}: {n} map(s) of {height}×{width}, 0 to 3 boxes each"
    return _case(description, heatmaps, boxes, DEFINITION)


def check_pointing_game(student_fn: Callable[[Tensor, list[Tensor]], float]) -> None:
    """``my_pointing_game(heatmaps [N, H, W], boxes: list of N Tensor[K_i, 4]) -> hit rate`` vs ``xai.pointing_game``."""
    generator = torch.Generator().manual_seed(12)
    cases = _fixed_cases() + [_random_case(i + 1, generator) for i in range(10)]
    run_cases(student_fn, cases, "pointing_game", atol=1e-6)
