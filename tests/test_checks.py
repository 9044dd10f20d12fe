"""course_utils.checks: a correct learner's function passes; each typical mistake gets its specific message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_utils import checks
from course_utils.checks import NOT_ATTEMPTED, PASSED, Case, CheckFailed, check_mask_to_box, exercise, run_cases


def my_mask_to_box(mask: torch.Tensor) -> torch.Tensor:
    """An independent solution: the first and last occupied row and column, +1 on the far edges."""
    rows = torch.where(mask.bool().any(dim=1))[0]
    cols = torch.where(mask.bool().any(dim=0))[0]
    return torch.tensor([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=torch.float32)


def numpy_mask_to_box(mask: torch.Tensor) -> list[int]:
    """Another correct solution a learner might write: NumPy, returning a plain list."""
    ys, xs = np.nonzero(mask.numpy())
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


@pytest.mark.parametrize("solution", [my_mask_to_box, numpy_mask_to_box])
def test_a_correct_solution_passes(solution, capsys):
    check_mask_to_box(solution)
    out = capsys.readouterr().out  # 4 fixed + 6 random cases
    assert "mask_to_box" in out and "all 10 cases pass" in out


def off_by_one(mask):
    box = my_mask_to_box(mask)
    return box - torch.tensor([0.0, 0.0, 1.0, 1.0])  # x2, y2 as the last pixel, not the edge


def swapped(mask):
    x1, y1, x2, y2 = my_mask_to_box(mask)
    return torch.stack([y1, x1, y2, x2])


def forgot_return(mask):
    my_mask_to_box(mask)


def not_started(mask):
    raise NotImplementedError("your code here")


def crashes(mask):
    return my_mask_to_box(mask)[7]  # IndexError: a box has 4 entries


def wrong_shape(mask):
    return my_mask_to_box(mask)[None]


@pytest.mark.parametrize(
    "student, expected",
    [
        (off_by_one, r"mask_to_box is wrong on case: a single pixel at row 2, column 5\n  your answer: \[5.0, 2.0, 5.0, 2.0\]"
                     r"\n  expected:    \[5.0, 2.0, 6.0, 3.0\]\n  hint: x2 and y2 are pixel \*edges\*"),
        (swapped, r"wrong on case: a single pixel at row 2, column 5\n  your answer: \[2.0, 5.0, 3.0, 6.0\]"),
        (forgot_return, r"returned None on case: a single pixel.*Did you forget `return`\?"),
        (crashes, r"mask_to_box raised IndexError: index 7 .*\n  on case: a single pixel at row 2, column 5"),
        (wrong_shape, r"wrong on case: a single pixel.*\n  your answer: shape \(1, 4\): \[\[5.0, 2.0, 6.0, 3.0\]\]\n  expected:    shape \(4,\)"),
    ],
    ids=["off-by-one-x2", "swapped-xy", "returns-none", "raises", "wrong-shape"],
)
def test_typical_mistakes_get_a_specific_message(student, expected):
    with pytest.raises(CheckFailed, match=expected) as info:
        check_mask_to_box(student)
    # no chained trace of the learner's exception or of our internals
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)


def test_a_stub_is_reported_in_one_line_without_raising(capsys):
    check_mask_to_box(not_started)
    out = capsys.readouterr().out
    assert out == f"{NOT_ATTEMPTED} mask_to_box is not implemented yet: replace `raise NotImplementedError` with your code, then run this cell again.\n"


ALL_CHECKS = [getattr(checks, name) for name in checks.__all__ if name.startswith("check_")]


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda check: check.__name__)
def test_every_check_reports_a_stub_without_raising(check, capsys):
    def stub(*args):
        raise NotImplementedError("your code here")

    check(stub)
    out = capsys.readouterr().out
    assert out.startswith(NOT_ATTEMPTED) and "is not implemented yet" in out and out.count("\n") == 1


def test_every_check_has_a_reference_that_passes_it(capsys):
    from course_utils.checks._core import _REFERENCES

    names = {check.__name__.removeprefix("check_") for check in ALL_CHECKS}
    assert names == set(_REFERENCES)
    for name in sorted(names):
        getattr(checks, f"check_{name}")(exercise(name)(_REFERENCES[name]))
        assert capsys.readouterr().out.startswith(f"{PASSED} ")


def test_a_passing_check_prints_its_marker_first(capsys):
    check_mask_to_box(my_mask_to_box)
    assert capsys.readouterr().out.startswith(f"{PASSED} mask_to_box: all")


def test_a_failed_check_shows_as_its_message_alone_in_a_notebook():
    with pytest.raises(CheckFailed) as info:
        check_mask_to_box(off_by_one)
    (shown,) = info.value._render_traceback_()  # what IPython prints instead of a stack trace
    assert shown.endswith(str(info.value)) and "CheckFailed" in shown and "Traceback" not in shown


# --------------------------------------------------------------------------- @checks.exercise


def test_a_decorated_stub_falls_back_to_the_reference_and_says_so_once(capsys):
    @exercise("mask_to_box")
    def mask_to_box(mask):
        raise NotImplementedError("your code here")

    mask = torch.zeros(6, 8, dtype=torch.uint8)
    mask[1:3, 2:7] = 1
    assert mask_to_box(mask).tolist() == [2.0, 1.0, 7.0, 3.0]
    assert mask_to_box(mask).tolist() == [2.0, 1.0, 7.0, 3.0]
    out = capsys.readouterr().out
    assert out.count("mask_to_box is not implemented yet") == 1 and "reference implementation" in out
    assert mask_to_box.__name__ == "mask_to_box" and mask_to_box.learner_function.__name__ == "mask_to_box"
    check_mask_to_box(mask_to_box)  # the check sees the stub itself, never the fallback
    assert capsys.readouterr().out.startswith(NOT_ATTEMPTED)


def test_a_decorated_solution_runs_as_written(capsys):
    calls = []

    @exercise("mask_to_box")
    def mask_to_box(mask):
        calls.append(mask.shape)
        return my_mask_to_box(mask)

    check_mask_to_box(mask_to_box)
    assert len(calls) == 10 and capsys.readouterr().out.startswith(PASSED)


def test_a_decorated_wrong_answer_still_fails_its_check():
    wrong = exercise("mask_to_box")(off_by_one)
    with pytest.raises(CheckFailed, match="mask_to_box is wrong on case: a single pixel"):
        check_mask_to_box(wrong)
    assert wrong(torch.ones(2, 2)).tolist() == [0.0, 0.0, 1.0, 1.0]  # and the notebook goes on with the learner's answer


def test_exercise_rejects_an_unknown_name_and_a_non_function():
    with pytest.raises(ValueError, match=r"exercise name 'iuo' is unknown; known: .*iou"):
        exercise("iuo")
    with pytest.raises(TypeError, match="decorates a function, got int"):
        exercise("iou")(3)


@pytest.mark.parametrize(
    "check, mistake, message",
    [
        (checks.check_mask_to_box, checks.mistakes.mask_to_box_off_by_one, "pixel \\*edges\\*"),
        (checks.check_iou, checks.mistakes.iou_clamping_the_product, "disjoint boxes on a diagonal"),
        (checks.check_match, checks.mistakes.match_with_strict_high, "exactly at the high threshold"),
        (checks.check_saliency, checks.mistakes.softmax_saliency, "differentiate the \\*logit\\*"),
    ],
    ids=lambda value: getattr(value, "__name__", "message"),
)
def test_each_shipped_mistake_fails_its_check_with_the_lesson_s_message(check, mistake, message):
    with pytest.raises(CheckFailed, match=message):
        check(mistake)


def test_a_mistake_only_on_square_images_is_caught_on_the_non_square_case():
    def transposed_shape(mask):  # swaps x/y only where it matters: reads (W, H) as (H, W)
        return my_mask_to_box(mask.t().contiguous().view(mask.shape)) if mask.shape[0] != mask.shape[1] else my_mask_to_box(mask)

    with pytest.raises(CheckFailed, match="wrong on case: (pixels touching the image border|a non-square image)"):
        check_mask_to_box(transposed_shape)


def test_a_mistake_on_the_border_is_caught():
    def clipped(mask):  # forgets that the box may reach the last row and column
        box = my_mask_to_box(mask)
        return torch.minimum(box, torch.tensor([mask.shape[1] - 1, mask.shape[0] - 1] * 2, dtype=torch.float32))

    with pytest.raises(CheckFailed, match="pixels touching the image border.*\n.*\n.*\n  hint: the box must reach"):
        check_mask_to_box(clipped)


def test_check_failed_is_an_assertion_error():
    assert issubclass(CheckFailed, AssertionError)


def test_run_cases_rejects_a_non_callable():
    with pytest.raises(TypeError, match="pass your function itself"):
        run_cases(my_mask_to_box(torch.ones(2, 2)), [], "mask_to_box")
    with pytest.raises(TypeError, match="pass your function itself"):
        check_mask_to_box(None)


def test_run_cases_compares_tensors_floats_and_other_values(capsys):
    cases = [
        Case("tensor", (2.0,), torch.tensor([2.0, 4.0])),
        Case("float", (3.0,), 6.0),
        Case("exact", ("ab",), "abab"),
    ]

    def double(x):
        return torch.tensor([x, 2 * x]) if isinstance(x, float) and x == 2.0 else 2 * x

    run_cases(double, cases, "double")
    assert "double: all 3 cases pass" in capsys.readouterr().out
    # a float answer within atol passes, beyond it fails
    run_cases(lambda x: 6.0 + 5e-5, [Case("float", (3.0,), 6.0)], "near")
    assert "near: all 1 cases pass" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="near is wrong on case: float"):
        run_cases(lambda x: 6.0 + 5e-3, [Case("float", (3.0,), 6.0)], "near")
    # an answer that cannot become a tensor or a float is reported as wrong, not as a crash
    with pytest.raises(CheckFailed, match="wrong on case: tensor"):
        run_cases(lambda x: "two", [Case("tensor", (2.0,), torch.tensor([2.0]))], "f")
    with pytest.raises(CheckFailed, match="wrong on case: float"):
        run_cases(lambda x: "six", [Case("float", (3.0,), 6.0)], "f")


def test_run_cases_stops_at_the_first_failing_case_and_shows_its_hint():
    calls = []

    def f(x):
        calls.append(x)
        return 0

    cases = [Case("first", (1,), 0), Case("second", (2,), 1, hint="look at x"), Case("third", (3,), 0)]
    with pytest.raises(CheckFailed, match="wrong on case: second\n  your answer: 0\n  expected:    1\n  hint: look at x"):
        run_cases(f, cases, "f")
    assert calls == [1, 2]
