"""Exercise checks: run a learner's function against the reference and say precisely what differs.

Each ``check_<exercise>(student_fn)`` runs fixed cases (the edge cases that teach something)
and seeded random cases. It prints one line when everything passes, and otherwise raises
:class:`CheckFailed` naming the first failing case, the learner's answer, the expected answer
and a hint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from .data import masks_to_boxes

__all__ = ["CheckFailed", "Case", "run_cases", "check_mask_to_box"]


class CheckFailed(AssertionError):
    """A learner's function disagrees with the reference (the message says where and why)."""


@dataclass(frozen=True)
class Case:
    """One check: call the function with ``args``, compare with ``expected``."""

    description: str
    args: tuple
    expected: Any
    hint: str = ""


def _fmt(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


def _same(answer: Any, expected: Any, atol: float) -> bool:
    if isinstance(expected, torch.Tensor):
        if not isinstance(answer, torch.Tensor):
            try:
                answer = torch.as_tensor(answer, dtype=expected.dtype)
            except (TypeError, ValueError, RuntimeError):
                return False
        return answer.shape == expected.shape and torch.allclose(answer.double(), expected.double(), atol=atol, rtol=0)
    if isinstance(expected, float):
        try:
            return abs(float(answer) - expected) <= atol
        except (TypeError, ValueError):
            return False
    return answer == expected


def run_cases(student_fn: Callable, cases: Sequence[Case], name: str, atol: float = 1e-4) -> None:
    """Run every case; print a summary when all pass, else raise :class:`CheckFailed`."""
    if not callable(student_fn):
        raise TypeError(f"pass your function itself (e.g. check(my_{name})), got {type(student_fn).__name__}")
    for case in cases:
        try:
            answer = student_fn(*case.args)
        except NotImplementedError:
            raise CheckFailed(f"{name} is not implemented yet: replace `raise NotImplementedError` with your code.") from None
        except Exception as exc:  # the learner's bug, reported without a deep trace
            raise CheckFailed(f"{name} raised {type(exc).__name__}: {exc}\n  on case: {case.description}\n  input: {_fmt(case.args)}") from None
        if answer is None:
            raise CheckFailed(f"{name} returned None on case: {case.description}. Did you forget `return`?")
        if not _same(answer, case.expected, atol):
            hint = f"\n  hint: {case.hint}" if case.hint else ""
            raise CheckFailed(
                f"{name} is wrong on case: {case.description}\n  your answer: {_fmt(answer)}\n  expected:    {_fmt(case.expected)}{hint}"
            )
    print(f"✅ {name}: all {len(cases)} cases pass")


def _mask(h: int, w: int, pixels: Sequence[tuple[int, int]]) -> torch.Tensor:
    mask = torch.zeros((h, w), dtype=torch.uint8)
    for y, x in pixels:
        mask[y, x] = 1
    return mask


def check_mask_to_box(student_fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Notebook 00's warm-up: the tight xyxy box (pixel edges) of one ``[H, W]`` mask."""
    edge = "x2 and y2 are pixel *edges*: a mask covering columns 3..7 has x1 = 3 and x2 = 8."
    fixed = [
        ("a single pixel at row 2, column 5", _mask(8, 8, [(2, 5)]), edge),
        ("a 2×3 block", _mask(10, 10, [(y, x) for y in (4, 5) for x in (1, 2, 3)]), "x runs along columns, y along rows."),
        ("pixels touching the image border", _mask(6, 9, [(0, 0), (5, 8)]), "the box must reach the last row and column."),
        ("a non-square image (rows ≠ columns)", _mask(4, 12, [(1, 10), (3, 2)]), "mask.shape is (H, W): rows first."),
    ]
    cases = [Case(d, (m,), masks_to_boxes(m[None])[0], h) for d, m, h in fixed]
    generator = torch.Generator().manual_seed(0)
    for i in range(6):
        mask = (torch.rand((20, 30), generator=generator) > 0.97).to(torch.uint8)
        mask[int(torch.randint(20, (1,), generator=generator)), int(torch.randint(30, (1,), generator=generator))] = 1
        cases.append(Case(f"random mask #{i + 1}", (mask,), masks_to_boxes(mask[None])[0], edge))
    run_cases(student_fn, cases, "mask_to_box")
