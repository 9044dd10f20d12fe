"""The machinery of every check: cases, comparison, and a precise report of the first difference.

``run_cases`` prints one line when every case passes, and otherwise raises :class:`CheckFailed`
naming the first failing case, the learner's answer, the expected answer and a hint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

__all__ = ["CheckFailed", "Case", "run_cases"]


class CheckFailed(AssertionError):
    """A learner's function disagrees with the reference (the message says where and why)."""


@dataclass(frozen=True)
class Case:
    """One check: call the function with ``args``, compare with ``expected``."""

    description: str
    args: tuple
    expected: Any
    hint: str = ""


def _fmt(value: Any, shape: tuple | None = None) -> str:
    """A short text of a value, with its shape when ``shape`` is given."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    text = repr(value)
    text = text if len(text) < 120 else text[:117] + "..."
    return f"shape {shape}: {text}" if shape is not None else text


def _shape(value: Any) -> tuple | None:
    try:
        return tuple(torch.as_tensor(value).shape)
    except (TypeError, ValueError, RuntimeError):
        return None


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
            shapes = (_shape(answer), _shape(case.expected))
            if isinstance(case.expected, torch.Tensor) and shapes[0] != shapes[1]:
                got, want = _fmt(answer, shapes[0]), _fmt(case.expected, shapes[1])  # the shape is the mistake
            else:
                got, want = _fmt(answer), _fmt(case.expected)
            raise CheckFailed(f"{name} is wrong on case: {case.description}\n  your answer: {got}\n  expected:    {want}{hint}")
    print(f"✅ {name}: all {len(cases)} cases pass")
