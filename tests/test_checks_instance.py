"""Checks of notebook 07: a correct mask IoU passes, each classic mistake gets its hint; the reference equals pycocotools."""

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch

from course_utils import checks
from course_utils.checks import CheckFailed, check_mask_iou
from course_utils.checks.instance import reference_mask_iou


def mask_iou(a, b, *, double_union=False, no_empty=False, uint8=False, boxes=False):
    if boxes:  # the IoU of the masks' boxes
        from course_utils.data import masks_to_boxes
        from course_utils.boxes import box_iou

        if not a.any() or not b.any():
            return 0.0
        return float(box_iou(masks_to_boxes(a[None]), masks_to_boxes(b[None]))[0, 0])
    if uint8:  # arithmetic on uint8: the counts wrap around at 256
        a, b = a.to(torch.uint8), b.to(torch.uint8)
        inter, union = (a * b).sum(dtype=torch.uint8), (a + b - a * b).sum(dtype=torch.uint8)
        return float(inter) / float(union) if int(union) else 0.0
    a, b = a.bool(), b.bool()
    inter = int((a & b).sum())
    union = int(a.sum()) + int(b.sum()) if double_union else int((a | b).sum())
    if no_empty:
        return inter / union if union else float("nan")
    return inter / union if union else 0.0


def test_correct_solution_passes(capsys):
    check_mask_iou(mask_iou)
    assert capsys.readouterr().out.startswith(f"{checks.PASSED} my_mask_iou")


@pytest.mark.parametrize(
    "mistake, hint",
    [
        (dict(double_union=True), "counts the shared pixels twice"),
        (dict(no_empty=True), "two empty masks have no union"),
        (dict(uint8=True), "uint8 masks wrap around"),
        (dict(boxes=True), "pixels, not at the boxes"),
    ],
)
def test_each_mistake_fails_with_its_hint(mistake, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_mask_iou(lambda a, b: mask_iou(a, b, **mistake))


def test_stub_is_not_attempted(capsys):
    def stub(a, b):
        raise NotImplementedError

    check_mask_iou(stub)
    assert capsys.readouterr().out.startswith(checks.NOT_ATTEMPTED)


@pytest.mark.parametrize("seed", range(5))
def test_reference_equals_pycocotools(seed):
    g = torch.Generator().manual_seed(seed)
    h, w = int(torch.randint(1, 40, (1,), generator=g)), int(torch.randint(1, 40, (1,), generator=g))
    a = (torch.rand(h, w, generator=g) > float(torch.rand(1, generator=g))).to(torch.uint8)
    b = (torch.rand(h, w, generator=g) > float(torch.rand(1, generator=g))).to(torch.uint8)
    rle = [mask_utils.encode(np.asfortranarray(m.numpy())) for m in (a, b)]
    expected = float(mask_utils.iou([rle[0]], [rle[1]], [0])[0, 0])
    assert reference_mask_iou(a, b) == pytest.approx(expected, abs=1e-12)
    assert reference_mask_iou(a.bool(), b) == reference_mask_iou(a, b)
