"""Checks of notebook 06: a correct confusion matrix / Dice / bilinear kernel passes, each classic mistake gets its hint."""

import numpy as np
import pytest
import sklearn.metrics as skm
import torch

from course_utils import checks
from course_utils.checks import CheckFailed, check_bilinear_kernel, check_confusion_matrix, check_dice


def confmat(pred, target, num_classes, *, transposed=False, keep_void=False, no_minlength=False):
    keep = torch.ones_like(target, dtype=torch.bool) if keep_void else target != 255
    p, t = pred[keep].numpy(), np.minimum(target[keep].numpy(), num_classes - 1)
    labels = sorted(set(p) | set(t)) if no_minlength else list(range(num_classes))
    mat = torch.from_numpy(skm.confusion_matrix(t, p, labels=labels)).long()
    return mat.T if transposed else mat


def dice(pred, true, *, iou=False, empty_is_one=False):
    inter, a, b = float((pred & true).sum()), float(pred.sum()), float(true.sum())
    if empty_is_one and a == 0:
        return 1.0
    return inter / (a + b - inter) if iou else 2 * inter / (a + b)


def bilinear(k, *, centre_at_half=False, divide_by_k=False):
    f = (k + 1) // 2
    centre = (k / 2 if centre_at_half else f - 0.5) if k % 2 == 0 else f - 1
    tent = 1 - (torch.arange(k, dtype=torch.float32) - centre).abs() / (k if divide_by_k else f)
    return tent[:, None] * tent[None, :]


def test_correct_solutions_pass(capsys):
    check_confusion_matrix(confmat)
    check_dice(dice)
    check_bilinear_kernel(bilinear)
    out = capsys.readouterr().out.splitlines()
    assert [line[0] for line in out] == [checks.PASSED] * 3
    assert "my_confusion_matrix" in out[0] and "my_dice" in out[1] and "my_bilinear_kernel" in out[2]


@pytest.mark.parametrize(
    "mistake, hint",
    [(dict(transposed=True), "mat\\[gt, pred\\]"), (dict(keep_void=True), "255"), (dict(no_minlength=True), "minlength")],
)
def test_confusion_matrix_mistakes_get_their_hint(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_confusion_matrix(lambda p, t, n: confmat(p, t, n, **mistake))


@pytest.mark.parametrize("mistake, hint", [(dict(iou=True), "that is the IoU"), (dict(empty_is_one=True), "Dice 0, not NaN and not 1")])
def test_dice_mistakes_get_their_hint(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_dice(lambda p, t: dice(p, t, **mistake))


@pytest.mark.parametrize("mistake, hint", [(dict(centre_at_half=True), "centre = f - 0.5"), (dict(divide_by_k=True), "not by k")])
def test_bilinear_kernel_mistakes_get_their_hint(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_bilinear_kernel(lambda k: bilinear(k, **mistake))


def test_stubs_are_reported_as_not_attempted(capsys):
    def stub(*args):
        raise NotImplementedError

    for check in (check_confusion_matrix, check_dice, check_bilinear_kernel):
        check(stub)
    assert [line[0] for line in capsys.readouterr().out.splitlines()] == [checks.NOT_ATTEMPTED] * 3


def test_exercise_fallbacks_use_the_reference():
    @checks.exercise("dice")
    def my_dice(pred, true):
        raise NotImplementedError

    a = torch.zeros(4, 4, dtype=torch.bool)
    a[:2] = True
    assert my_dice(a, a) == pytest.approx(1.0)
