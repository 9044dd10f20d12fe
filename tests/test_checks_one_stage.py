"""Checks of notebook 05: a correct YOLO target / cell decoding passes, each classic mistake gets its hint."""

import math

import pytest
import torch

from course_utils import checks
from course_utils.checks import CheckFailed, check_yolo_decode, check_yolo_target
from course_utils.detection import YOLO
from course_utils.detection.yolo import decode_predictions


def yolo_target(box, image_size, grid_size, *, swap=False, image_offset=False, no_root=False, clamp=True):
    cell = image_size / grid_size
    cx, cy = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
    col, row = int(cx // cell), int(cy // cell)
    if clamp:
        col, row = min(col, grid_size - 1), min(row, grid_size - 1)
    w, h = float(box[2] - box[0]) / image_size, float(box[3] - box[1]) / image_size
    x, y = (cx / image_size, cy / image_size) if image_offset else (cx / cell - col, cy / cell - row)
    size = (w, h) if no_root else (math.sqrt(w), math.sqrt(h))
    return (col, row, torch.tensor([x, y, *size])) if swap else (row, col, torch.tensor([x, y, *size]))


def decode_cell(prediction, row, col, grid_size, image_size, *, swap=False, no_square=False, centre_size=False):
    cell = image_size / grid_size
    r, c = (col, row) if swap else (row, col)
    cx, cy = (c + prediction[0]) * cell, (r + prediction[1]) * cell
    w, h = (prediction[2:4] if no_square else prediction[2:4] ** 2) * image_size
    if centre_size:
        return torch.stack([cx, cy, w, h])
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def test_correct_solutions_pass(capsys):
    check_yolo_target(yolo_target)
    check_yolo_decode(decode_cell)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{checks.PASSED} my_yolo_target") and out[1].startswith(f"{checks.PASSED} my_decode_cell")


@pytest.mark.parametrize(
    "mistake, hint",
    [
        (dict(swap=True), "the row comes from the centre's y"),
        (dict(image_offset=True), "offset inside its cell"),
        (dict(no_root=True), "square roots"),
        (dict(clamp=False), "last edge"),
    ],
    ids=["row-col-swapped", "offset-in-the-image", "no-square-root", "no-clamp"],
)
def test_yolo_target_mistakes_get_their_hint(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_yolo_target(lambda box, s, g: yolo_target(box, s, g, **mistake))


@pytest.mark.parametrize(
    "mistake, hint",
    [(dict(swap=True), "x goes with the column"), (dict(no_square=True), "predicts √w and √h"), (dict(centre_size=True), "corners")],
    ids=["row-col-swapped", "not-squared", "centre-and-size"],
)
def test_yolo_decode_mistakes_get_their_hint(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_yolo_decode(lambda p, r, c, g, s: decode_cell(p, r, c, g, s, **mistake))


def test_the_references_agree_with_the_model_s_own_decoding():
    """The decode reference is what YOLO.forward decodes: every cell of a random prediction map."""
    from course_utils.checks.one_stage import reference_decode_cell

    torch.manual_seed(0)
    grid, size = 4, 64
    boxes = torch.rand(1, grid, grid, 2, 5)
    decoded, _ = decode_predictions(boxes, torch.zeros(1, grid, grid, 3), size)  # [1, S·S·B, 4], cell by cell
    mine = torch.stack([reference_decode_cell(boxes[0, r, c, b], r, c, grid, size) for r in range(grid) for c in range(grid) for b in range(2)])
    torch.testing.assert_close(mine, decoded[0].reshape(-1, 4))
    assert isinstance(YOLO(3, image_size=64, grid_size=grid), YOLO)


def test_checks_reject_a_non_function():
    with pytest.raises(TypeError):
        check_yolo_target(3)
