"""course_utils.checks.check_nms / check_average_precision: right answers pass, typical mistakes get their hint,
and the random cases follow the reference (notebook 03's solutions and stubs: test_notebook_exercises.py)."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torchvision

from course_utils import boxes, metrics
from course_utils.checks import CheckFailed, check_average_precision, check_nms



# ----------------------------------------------------------------------------------------------
# NMS: correct solutions and typical mistakes
# ----------------------------------------------------------------------------------------------
def numpy_nms(b: torch.Tensor, s: torch.Tensor, threshold: float) -> list[int]:
    """An independent solution in plain NumPy (float64), returning a list."""
    b, s = b.double().numpy(), s.numpy()
    order = list(np.argsort(-s, kind="stable"))
    keep = []
    while order:
        best, order = order[0], order[1:]
        keep.append(int(best))
        x1, y1 = np.maximum(b[best, :2], b[order, :2]).T if order else (np.zeros(0), np.zeros(0))
        x2, y2 = np.minimum(b[best, 2:], b[order, 2:]).T if order else (np.zeros(0), np.zeros(0))
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
        iou = inter / (area(b[best]) + area(b[order]) - inter) if order else inter
        order = [i for i, v in zip(order, iou) if v <= threshold]
    return keep


def nms_with(b, s, threshold, *, sort, suppress):
    """Greedy NMS whose sort and suppression rule can be swapped for a mistaken one."""
    order = sort(s)
    keep = []
    while len(order):
        best, order = order[0], order[1:]
        keep.append(int(best))
        order = order[~suppress(boxes.box_iou(b[best][None], b[order])[0], threshold)]
    return torch.tensor(keep, dtype=torch.int64)


stable = lambda s: torch.sort(s, descending=True, stable=True).indices  # noqa: E731
strictly_above = lambda iou, t: iou.double() > t  # noqa: E731


def at_or_above(b, s, t):
    return nms_with(b, s, t, sort=stable, suppress=lambda iou, t: iou >= t)


def reversed_ascending_sort(b, s, t):  # ties come out with the later index first
    return nms_with(b, s, t, sort=lambda s: torch.sort(s, stable=True).indices.flip(0), suppress=strictly_above)


def input_order(b, s, t):
    return torch.sort(boxes.nms(b, s, t)).values


def suppressed_boxes_also_suppress(b, s, t):
    order = stable(s)
    iou = boxes.box_iou(b[order], b[order]).double() > t
    dominated = torch.triu(iou, diagonal=1).any(0)  # overlapped by ANY higher-scored box
    return order[~dominated]


def crashes_on_empty(b, s, t):
    keep = [int(i) for i in boxes.nms(b, s, t)]
    return torch.stack([torch.tensor(k) for k in keep])


def forgot_return(b, s, t):
    boxes.nms(b, s, t)


@pytest.mark.parametrize("solution", [boxes.nms, torchvision.ops.nms, numpy_nms], ids=["course_utils", "torchvision", "numpy"])
def test_correct_nms_passes(solution, capsys):
    check_nms(solution)
    assert "✅ my_nms: all 20 cases pass" in capsys.readouterr().out


@pytest.mark.parametrize(
    "student, expected",
    [
        (at_or_above, r"wrong on case: IoU exactly equal to the threshold \(0.5\): both kept\n  your answer: .*\[0\]\n"
                      r"  expected: .*\[0, 1\]\n  hint: suppress only when IoU > iou_threshold \(strictly\)"),
        (reversed_ascending_sort, r"wrong on case: equal scores: the earlier index wins\n.*\n.*\n  hint: equal scores keep their input order"),
        (input_order, r"wrong on case: the best box comes last in the input\n  your answer: .*\[1, 2\]\n  expected: .*\[2, 1\]"),
        (suppressed_boxes_also_suppress, r"wrong on case: a chain: .*\n  your answer: .*\[0\]\n  expected: .*\[0, 2\]\n"
                                         r"  hint: only a box you KEEP suppresses others"),
        (crashes_on_empty, r"my_nms raised RuntimeError: .*\n  on case: no boxes at all"),
        (forgot_return, r"returned None .* Did you forget `return`"),
    ],
    ids=["at-or-above", "unstable-ties", "input-order", "suppressed-suppress", "empty-crash", "no-return"],
)
def test_nms_mistakes_get_their_hint(student, expected):
    with pytest.raises(CheckFailed, match=expected):
        check_nms(student)


def test_a_mistake_only_on_ties_among_many_boxes_is_caught():
    """argsort without stable=True may keep small inputs in order by luck; many ties expose it."""

    def unstable_when_large(b, s, t):
        if len(s) < 10:
            return boxes.nms(b, s, t)
        return reversed_ascending_sort(b, s, t)

    with pytest.raises(CheckFailed, match="many equal scores"):
        check_nms(unstable_when_large)


# ----------------------------------------------------------------------------------------------
# All-point AP: correct solutions and typical mistakes
# ----------------------------------------------------------------------------------------------
def numpy_all_points(recall, precision) -> float:
    r = np.concatenate([[0.0], recall.numpy()])
    p = np.concatenate([precision.numpy(), [0.0]])
    for i in range(len(p) - 2, -1, -1):  # the VOC devkit way: envelope by a backward loop
        p[i] = max(p[i], p[i + 1])
    return float(np.sum((r[1:] - r[:-1]) * p[:-1]))


def as_tensor(recall, precision):
    envelope = precision.flip(0).cummax(0).values.flip(0)
    return (torch.diff(recall, prepend=torch.zeros(1, dtype=recall.dtype)) * envelope).sum()


def no_envelope(recall, precision):
    return float((torch.diff(recall, prepend=torch.zeros(1, dtype=recall.dtype)) * precision).sum())


def no_recall_zero(recall, precision):
    envelope = precision.flip(0).cummax(0).values.flip(0)
    return float((torch.diff(recall) * envelope[1:]).sum())


def trapezoid(recall, precision):
    return float(np.trapezoid(precision.numpy(), recall.numpy())) if len(recall) else 0.0


def envelope_from_the_left(recall, precision):
    return float((torch.diff(recall, prepend=torch.zeros(1, dtype=recall.dtype)) * precision.cummax(0).values).sum())


def eleven_points(recall, precision):
    return metrics.average_precision(recall, precision, "voc11")


@pytest.mark.parametrize(
    "solution",
    [lambda r, p: metrics.average_precision(r, p, "all_points"), numpy_all_points, as_tensor],
    ids=["course_utils", "numpy-devkit-loop", "returns-a-tensor"],
)
def test_correct_average_precision_passes(solution, capsys):
    check_average_precision(solution)
    assert "✅ my_average_precision: all 16 cases pass" in capsys.readouterr().out


@pytest.mark.parametrize(
    "student, expected",
    [
        (no_envelope, r"wrong on case: a dip: .*\n.*\n.*\n  hint: make precision monotone from the right first"),
        (no_recall_zero, r"wrong on case: a perfect ranking: .*\n  your answer: .*0.75\n  expected: .*1.0\n"
                         r"  hint: .*the first step, from recall 0"),
        (trapezoid, r"wrong on case: a perfect ranking"),
        (envelope_from_the_left, r"wrong on case: a dip: .*\n.*\n.*\n  hint: make precision monotone from the right"),
        (eleven_points, r"wrong on case: recall starts above 0: .*\n  your answer: .*0.5454"),
    ],
    ids=["no-envelope", "no-recall-zero", "trapezoid", "left-envelope", "eleven-points"],
)
def test_average_precision_mistakes_get_their_hint(student, expected):
    with pytest.raises(CheckFailed, match=expected):
        check_average_precision(student)
