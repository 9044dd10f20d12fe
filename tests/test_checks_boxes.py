"""checks.check_iou / check_pairwise_iou: correct solutions pass, typical mistakes get their specific message,
and each fixed case reports its own hint (notebook 01's solutions and stubs: test_notebook_exercises.py)."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torchvision.ops as tv

from course_utils.checks import CheckFailed, check_iou, check_pairwise_iou
from course_utils.checks import boxes as checks_boxes



# --------------------------------------------------------------------------- correct solutions


def python_iou(a, b):
    """Plain Python on the four numbers, with a guard for a zero union."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def torchvision_iou(a, b):
    """torchvision's box_iou on a 1×1 problem, its 0/0 NaN replaced by 0: a 0-dim tensor."""
    return torch.nan_to_num(tv.box_iou(a[None], b[None]), nan=0.0)[0, 0]


def numpy_pairwise_iou(boxes1, boxes2):
    """Broadcasting in NumPy, returning an ndarray of float64."""
    b1, b2 = boxes1.double().numpy()[:, None, :], boxes2.double().numpy()[None, :, :]
    wh = np.clip(np.minimum(b1[..., 2:], b2[..., 2:]) - np.maximum(b1[..., :2], b2[..., :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1]) + (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def loop_pairwise_iou(boxes1, boxes2):
    """Slow but correct: one python_iou per pair, filled into an N×M tensor."""
    result = torch.zeros(len(boxes1), len(boxes2))
    for i, a in enumerate(boxes1):
        for j, b in enumerate(boxes2):
            result[i, j] = python_iou(a, b)
    return result


def test_a_nested_list_answer_is_accepted_but_cannot_be_empty_with_m_columns():
    nested = lambda b1, b2: [[python_iou(a, b) for b in b2] for a in b1]  # noqa: E731
    with pytest.raises(CheckFailed, match=r"wrong on case: no boxes in boxes1.*\n.*\n.*\n  hint: with N = 0 the result has shape \[0, M\]"):
        check_pairwise_iou(nested)


@pytest.mark.parametrize("solution", [python_iou, torchvision_iou])
def test_a_correct_iou_passes(solution, capsys):
    check_iou(solution)
    assert "✅ iou: all 21 cases pass" in capsys.readouterr().out  # 11 fixed + 10 random


@pytest.mark.parametrize("solution", [numpy_pairwise_iou, loop_pairwise_iou, lambda b1, b2: torch.nan_to_num(tv.box_iou(b1, b2))])
def test_a_correct_pairwise_iou_passes(solution, capsys):
    check_pairwise_iou(solution)
    assert "✅ pairwise_iou: all 12 cases pass" in capsys.readouterr().out  # 8 fixed + 4 random


def test_the_expected_values_are_torchvisions():
    """The fixed pairs' expected values come from course_utils.boxes; check them against torchvision and by hand."""
    by_hand = {
        "the lesson's worked example A=(0,0,10,10), B=(1,1,11,11)": 81 / 119,
        "identical boxes": 1.0,
        "a small box nested in a big one: IoU = 16 / 100": 0.16,
        "swapped arguments: the big box second": 0.16,
        "float coordinates": 1.5 / (5.0 + 2.5 - 1.5),  # overlap 1.5 × 1.0; areas 2 × 2.5 and 2.5 × 1
    }
    for description, a, b, _ in checks_boxes._PAIRS:
        a, b = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
        expected = float(torch.nan_to_num(tv.box_iou(a, b)))
        assert python_iou(a[0], b[0]) == pytest.approx(expected, abs=1e-12)
        assert expected == pytest.approx(by_hand.get(description, expected), abs=1e-12)
        if any(word in description for word in ("touch", "disjoint", "zero")):
            assert expected == 0.0


# --------------------------------------------------------------------------- typical mistakes


def no_clamp(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def clamp_the_product(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0, w * h)  # two negative sides multiply to a positive "area"
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def plus_one(a, b):
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - w * h
    return w * h / union


def assumes_b_is_to_the_right(a, b):
    w = max(0, min(a[2], b[2]) - b[0])
    h = max(0, min(a[3], b[3]) - b[1])
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def divides_zero_by_zero(a, b):
    w = (torch.min(a[2], b[2]) - torch.max(a[0], b[0])).clamp(min=0)
    h = (torch.min(a[3], b[3]) - torch.max(a[1], b[1])).clamp(min=0)
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)  # 0 / 0 = NaN


def rounds_to_int(a, b):
    return python_iou([int(v) for v in a], [int(v) for v in b])


@pytest.mark.parametrize(
    "student, expected",
    [
        (no_clamp, r"iou is wrong on case: disjoint boxes side by side\n  your answer: -0\.2\d*\n  expected:    0\.0\n  hint: clamp"),
        (clamp_the_product, r"wrong on case: disjoint boxes on a diagonal .*\n  your answer: 2\.25\n  expected:    0\.0\n  hint: clamp .* \*separately\*"),
        (plus_one, r"wrong on case: the lesson's worked example .*\n.*\n.*\n  hint: intersection 9 × 9 = 81.*no \+1"),
        (assumes_b_is_to_the_right, r"wrong on case: swapped arguments: the big box second\n.*\n.*\n  hint: IoU is symmetric"),
        (divides_zero_by_zero, r"wrong on case: two zero-area boxes \(the same point\)\n  your answer: nan\n.*\n  hint: .*0 / 0 \(NaN\)"),
        (rounds_to_int, r"wrong on case: float coordinates\n.*\n.*\n  hint: coordinates can be fractions"),
    ],
    ids=["no-clamp", "clamp-product", "plus-one", "asymmetric", "nan", "int-cast"],
)
def test_typical_iou_mistakes_get_a_specific_message(student, expected):
    with pytest.raises(CheckFailed, match=expected):
        check_iou(student)


@pytest.mark.parametrize("index", range(len(checks_boxes._PAIRS)))
def test_every_fixed_iou_case_reports_its_description_and_hint(index):
    """A function right everywhere but on one fixed pair is caught on that pair, with that pair's hint."""
    description, bad_a, bad_b, hint = checks_boxes._PAIRS[index]

    def wrong_on_one_pair(a, b):
        if a.tolist() == list(map(float, bad_a)) and b.tolist() == list(map(float, bad_b)):
            return 0.1
        return python_iou(a, b)

    with pytest.raises(CheckFailed) as info:
        check_iou(wrong_on_one_pair)
    message = str(info.value)
    assert f"on case: {description}\n  your answer: 0.1\n" in message
    assert message.endswith(f"hint: {hint}")


def elementwise(boxes1, boxes2):
    """Pairs boxes1[i] with boxes2[i] only: the diagonal of the matrix."""
    return torch.tensor([python_iou(a, b) for a, b in zip(boxes1, boxes2)])


def transposed(boxes1, boxes2):
    return torch.as_tensor(numpy_pairwise_iou(boxes2, boxes1))


def pairwise_nan(boxes1, boxes2):
    return torch.stack([torch.stack([divides_zero_by_zero(a, b) for b in boxes2]) for a in boxes1])


def pairwise_no_clamp(boxes1, boxes2):
    return torch.tensor([[no_clamp(a, b) for b in boxes2] for a in boxes1])


@pytest.mark.parametrize(
    "student, expected",
    [
        (elementwise, r"wrong on case: one pair, the lesson's worked example: a 1×1 matrix\n  your answer: shape \(1,\): \[0\.680\d*\]\n  expected:    shape \(1, 1\).*\n  hint: the result is an N×M matrix even for one pair"),
        (transposed, r"wrong on case: 2 boxes against 2 boxes: a 2×2 matrix, not 2 numbers\n.*\n.*\n  hint: the result is N×M"),
        (pairwise_no_clamp, r"wrong on case: boxes that only touch, disjoint and nested boxes\n.*\n.*\n  hint: .*clamp"),
        (pairwise_nan, r"wrong on case: zero-area boxes \(points and lines\) among normal ones\n.*nan.*\n.*\n  hint: .*\(NaN\)"),
        (lambda b1, b2: torch.zeros(len(b1), len(b2)), r"wrong on case: one pair, the lesson's worked example"),
    ],
    ids=["elementwise", "transposed", "no-clamp", "nan", "zeros"],
)
def test_typical_pairwise_mistakes_get_a_specific_message(student, expected):
    with pytest.raises(CheckFailed, match=expected):
        check_pairwise_iou(student)


def test_pairwise_check_covers_the_empty_and_the_swapped_case():
    def fails_when_empty(boxes1, boxes2):
        if len(boxes1) == 0:
            raise IndexError("boxes1 is empty")
        return numpy_pairwise_iou(boxes1, boxes2)

    with pytest.raises(CheckFailed, match=r"pairwise_iou raised IndexError: boxes1 is empty\n  on case: no boxes in boxes1"):
        check_pairwise_iou(fails_when_empty)

    def first_argument_must_be_shorter(boxes1, boxes2):  # right only when N <= M
        return numpy_pairwise_iou(boxes1, boxes2) if len(boxes1) <= len(boxes2) else transposed(boxes1, boxes2)

    with pytest.raises(CheckFailed, match=r"wrong on case: swapped arguments \(boxes2, boxes1\): the transposed matrix"):
        check_pairwise_iou(first_argument_must_be_shorter)


def test_random_cases_catch_a_mistake_the_fixed_cases_miss():
    def wrong_far_from_the_origin(a, b):  # right for every fixed pair (all within [0, 12])
        return python_iou(a, b) if max(float(v) for v in (*a, *b)) <= 12 else 0.5

    with pytest.raises(CheckFailed, match=r"wrong on case: random pair #\d+"):
        check_iou(wrong_far_from_the_origin)
