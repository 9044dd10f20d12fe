"""Checks of notebook 05: a correct YOLO target / cell decoding / focal loss passes, each classic mistake gets its hint."""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from course_utils import checks
from course_utils.checks import CheckFailed, check_focal_loss, check_yolo_decode, check_yolo_target
from course_utils.detection import YOLO
from course_utils.detection.yolo import decode_predictions


def yolo_target(box, image_size, grid_size, *, swap=False, image_offset=False, no_root=False, clamp=True, rounded=False,
                pixels=False):
    cell = image_size / grid_size
    cx, cy = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
    col, row = (round(cx / cell), round(cy / cell)) if rounded else (int(cx // cell), int(cy // cell))
    if clamp:
        col, row = min(col, grid_size - 1), min(row, grid_size - 1)
    w, h = float(box[2] - box[0]) / image_size, float(box[3] - box[1]) / image_size
    if pixels:  # √w of the width in pixels
        w, h = w * image_size, h * image_size
    x, y = (cx / image_size, cy / image_size) if image_offset else (cx / cell - col, cy / cell - row)
    size = (w, h) if no_root else (math.sqrt(w), math.sqrt(h))
    return (col, row, torch.tensor([x, y, *size])) if swap else (row, col, torch.tensor([x, y, *size]))


def decode_cell(prediction, row, col, grid_size, image_size, *, swap=False, no_square=False, centre_size=False, no_cell=False,
                in_image=False):
    cell = image_size / grid_size
    r, c = (col, row) if swap else (row, col)
    if no_cell:  # forgot the cell's own position
        r, c = 0, 0
    if in_image:  # the offsets read as fractions of the image
        return decode_cell(prediction, 0, 0, 1, image_size)
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
        (dict(rounded=True), "floor"),
        (dict(pixels=True), "relative to the image"),
    ],
    ids=["row-col-swapped", "offset-in-the-image", "no-square-root", "no-clamp", "round-not-floor", "root-of-pixels"],
)
def test_yolo_target_mistakes_get_their_hint(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_yolo_target(lambda box, s, g: yolo_target(box, s, g, **mistake))


@pytest.mark.parametrize(
    "mistake, hint",
    [
        (dict(swap=True), "x goes with the column"),
        (dict(no_square=True), "predicts √w and √h"),
        (dict(centre_size=True), "corners"),
        (dict(no_cell=True), "add the cell's column and row"),
        (dict(in_image=True), "not in the image"),
    ],
    ids=["row-col-swapped", "not-squared", "centre-and-size", "no-cell-offset", "offsets-in-the-image"],
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


def test_the_target_reference_is_the_model_s_own_encoding():
    """One object at a time, the reference gives the cell and target of encode_targets, and decoding inverts it."""
    from course_utils.checks.one_stage import reference_decode_cell, reference_yolo_target
    from course_utils.detection.yolo import encode_targets

    torch.manual_seed(1)
    for grid, size in [(4, 64), (7, 112), (8, 128)]:
        corner = torch.rand(20, 2) * size * 0.8
        boxes = torch.cat([corner, corner + 2 + torch.rand(20, 2) * (size - corner - 2)], 1)
        encoded = encode_targets([{"boxes": b[None], "labels": torch.ones(1, dtype=torch.int64)} for b in boxes], grid, size)
        for i, box in enumerate(boxes):
            row, col, target = reference_yolo_target(box, size, grid)
            assert (row, col) == (int(encoded.row[i]), int(encoded.col[i])) and torch.equal(target, encoded.xywh[i])
            assert 0 <= target[0] <= 1 and 0 <= target[1] <= 1
            torch.testing.assert_close(reference_decode_cell(torch.cat([target, torch.ones(1)]), row, col, grid, size), box)


# ----------------------------------------------------------------------------------------------
# the focal loss
# ----------------------------------------------------------------------------------------------
def focal_loss(logits, targets, alpha=0.25, gamma=2.0, *, alpha_on_negatives=False, always_alpha=False, p_not_pt=False,
               pt_power=False, naive_log=False, reduce=False, no_focus=False):
    """An independent solution, with a switch for each classic mistake."""
    p = torch.sigmoid(logits)
    if naive_log:
        bce = -(targets * torch.log(p) + (1 - targets) * torch.log(1 - p))
    else:
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    factor = (1 - p) ** gamma if p_not_pt else p_t**gamma if pt_power else (1 - p_t) ** gamma
    loss = bce if no_focus else factor * bce
    if alpha >= 0 or always_alpha:
        a = (1 - alpha) if alpha_on_negatives else alpha
        loss = (a * targets + (1 - a) * (1 - targets)) * loss
    return loss.mean() if reduce else loss


def test_a_correct_focal_loss_passes_and_so_does_torchvision_s(capsys):
    check_focal_loss(focal_loss)
    check_focal_loss(lambda x, t, alpha=0.25, gamma=2.0: torchvision.ops.sigmoid_focal_loss(x, t, alpha, gamma))
    out = capsys.readouterr().out.splitlines()
    assert all(line.startswith(f"{checks.PASSED} my_focal_loss: all 17 cases pass") for line in out) and len(out) == 2


@pytest.mark.parametrize(
    "mistake, hint",
    [
        (dict(reduce=True), "one loss per element"),
        (dict(alpha_on_negatives=True), "alpha weights the positives"),
        (dict(always_alpha=True), "alpha = -1 means no weighting"),
        (dict(pt_power=True), r"\(1 - p_t\) \*\* gamma"),
        (dict(no_focus=True), "modulating factor"),
        (dict(p_not_pt=True), "use p_t, not p"),
        (dict(naive_log=True), "binary_cross_entropy_with_logits \\(stable"),
    ],
    ids=["mean-not-elementwise", "alpha-on-negatives", "alpha-minus-one-applied", "p_t-power", "no-focusing", "p-not-p_t",
         "unstable-log"],
)
def test_focal_loss_mistakes_get_their_hint(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_focal_loss(lambda x, t, alpha=0.25, gamma=2.0: focal_loss(x, t, alpha, gamma, **mistake))


def test_the_unstable_log_fails_on_the_extreme_logits_only():
    with pytest.raises(CheckFailed, match="extreme logits"):
        check_focal_loss(lambda x, t, alpha=0.25, gamma=2.0: focal_loss(x, t, alpha, gamma, naive_log=True))


def test_the_focal_reference_equals_torchvision_on_random_and_extreme_inputs():
    from course_utils.checks.one_stage import reference_focal_loss

    torch.manual_seed(2)
    logits = torch.cat([10 * torch.randn(200), torch.tensor([30.0, -30.0, 100.0, -100.0])])
    targets = (torch.rand(len(logits)) < 0.3).float()
    for alpha in (0.25, 0.5, -1):
        for gamma in (0.0, 0.5, 2.0, 5.0):
            ours = reference_focal_loss(logits, targets, alpha, gamma)
            assert torch.isfinite(ours).all()
            torch.testing.assert_close(ours, torchvision.ops.sigmoid_focal_loss(logits, targets, alpha, gamma))
    # gamma = 0 is the alpha-weighted cross-entropy
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(reference_focal_loss(logits, targets, 0.25, 0.0), (0.25 * targets + 0.75 * (1 - targets)) * bce)


# ----------------------------------------------------------------------------------------------
# what every check does with a stub, a crash, a missing return and a non-function
# ----------------------------------------------------------------------------------------------
CHECKS = {
    "my_yolo_target": (check_yolo_target, lambda box, s, g: yolo_target(box, s, g)),
    "my_decode_cell": (check_yolo_decode, lambda p, r, c, g, s: decode_cell(p, r, c, g, s)),
    "my_focal_loss": (check_focal_loss, lambda x, t, alpha=0.25, gamma=2.0: focal_loss(x, t, alpha, gamma)),
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_checks_reject_a_non_function(name):
    check, _ = CHECKS[name]
    with pytest.raises(TypeError, match="pass your function itself"):
        check(3)


@pytest.mark.parametrize("name", list(CHECKS))
def test_a_stub_is_reported_as_not_attempted(name, capsys):
    check, _ = CHECKS[name]

    def stub(*args):
        raise NotImplementedError

    check(stub)
    assert capsys.readouterr().out.startswith(f"{checks.NOT_ATTEMPTED} {name} is not implemented yet")


@pytest.mark.parametrize("name", list(CHECKS))
def test_an_error_in_the_learner_s_code_is_reported_with_the_case(name):
    check, _ = CHECKS[name]

    def crashes(*args):
        return [1, 2][5]

    with pytest.raises(CheckFailed, match=rf"{name} raised IndexError: list index out of range\n  on case: .+\n  input: ") as info:
        check(crashes)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained stack trace


@pytest.mark.parametrize("name", list(CHECKS))
def test_a_missing_return_is_reported(name):
    check, _ = CHECKS[name]
    with pytest.raises(CheckFailed, match="Did you forget `return`"):
        check(lambda *args: None)


@pytest.mark.parametrize("name, exercise", [("my_yolo_target", "yolo_target"), ("my_decode_cell", "yolo_decode"),
                                            ("my_focal_loss", "focal_loss")])
def test_a_stub_falls_back_to_the_reference(name, exercise, capsys):
    check, solution = CHECKS[name]

    @checks.exercise(exercise)
    def stub(*args):
        raise NotImplementedError

    from course_utils.checks._core import _REFERENCES

    args = {"yolo_target": (torch.tensor([10.0, 20.0, 40.0, 50.0]), 128, 8),
            "yolo_decode": (torch.tensor([0.2, 0.4, 0.5, 0.3, 0.9]), 2, 3, 8, 128),
            "focal_loss": (torch.tensor([-2.0, 0.5, 3.0]), torch.tensor([0.0, 1.0, 1.0]), 0.25, 2.0)}[exercise]
    expected = solution(*args)
    got = stub(*args)
    assert "reference implementation stands in" in capsys.readouterr().out
    assert checks._core._same(got, expected, 1e-5) and exercise in _REFERENCES
    check(stub)  # the check tests the learner's own function: still a stub
    assert capsys.readouterr().out.startswith(checks.NOT_ATTEMPTED)
