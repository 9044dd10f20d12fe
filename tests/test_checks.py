"""course_utils.checks: a correct learner's function passes; each typical mistake gets its specific message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_utils.checks import Case, CheckFailed, check_mask_to_box, run_cases


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
        (not_started, r"^mask_to_box is not implemented yet"),
        (crashes, r"mask_to_box raised IndexError: index 7 .*\n  on case: a single pixel at row 2, column 5"),
        (wrong_shape, r"wrong on case: a single pixel.*\n  your answer: shape \(1, 4\): \[\[5.0, 2.0, 6.0, 3.0\]\]\n  expected:    shape \(4,\)"),
    ],
    ids=["off-by-one-x2", "swapped-xy", "returns-none", "not-implemented", "raises", "wrong-shape"],
)
def test_typical_mistakes_get_a_specific_message(student, expected):
    with pytest.raises(CheckFailed, match=expected) as info:
        check_mask_to_box(student)
    # no chained trace of the learner's exception or of our internals
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)


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
