"""The machinery of every check: cases, comparison, and a precise report of the first difference.

``run_cases`` has three outcomes, each one short block of text in the notebook:

- every case passes: it prints one line starting with :data:`PASSED`;
- the function is still the student version's stub (it raises ``NotImplementedError``): it
  prints one line starting with :data:`NOT_ATTEMPTED` and returns, so that "Run All" goes on;
- otherwise it raises :class:`CheckFailed`, naming the first failing case, the learner's answer,
  the expected answer and a hint; in a notebook the error shows as that message alone.

:func:`exercise` marks a learner's function: while it is a stub, the cells after its check use
the course's reference implementation instead, saying so once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

__all__ = ["CheckFailed", "Case", "run_cases", "exercise", "reference", "PASSED", "NOT_ATTEMPTED"]

PASSED = "✅"  # first character of a passing check's line (tools/grade.py reads it)
NOT_ATTEMPTED = "⏳"  # first character of a stub's line

_REFERENCES: dict[str, Callable] = {}  # exercise name -> the course's implementation with the learner's signature


class CheckFailed(AssertionError):
    """A learner's function disagrees with the reference (the message says where and why)."""

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of a stack trace: the check's message is the whole story."""
        return [f"\x1b[0;31mCheckFailed\x1b[0m: {self}"]


def reference(name: str) -> Callable[[Callable], Callable]:
    """Register the course's implementation of exercise ``name`` (same signature as the learner's)."""

    def register(fn: Callable) -> Callable:
        _REFERENCES[name] = fn
        return fn

    return register


def exercise(name: str) -> Callable[[Callable], Callable]:
    """Decorate a learner's function: while it raises ``NotImplementedError`` (the stub), calls go
    to the course's reference implementation of exercise ``name``, with a one-time notice.

    The checks always test the learner's own function, never the fallback.
    """
    if name not in _REFERENCES:
        raise ValueError(f"exercise name {name!r} is unknown; known: {', '.join(sorted(_REFERENCES))}")

    def decorate(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"checks.exercise({name!r}) decorates a function, got {type(fn).__name__}")
        told = False

        @functools.wraps(fn)
        def learner_or_reference(*args: Any, **kwargs: Any) -> Any:
            nonlocal told
            try:
                return fn(*args, **kwargs)
            except NotImplementedError:
                if not told:
                    print(f"ℹ️ {fn.__name__} is not implemented yet: the course's reference implementation stands in for it.")
                    told = True
                return _REFERENCES[name](*args, **kwargs)

        learner_or_reference.learner_function = fn
        return learner_or_reference

    return decorate


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
    if isinstance(expected, (tuple, list)):  # several results (e.g. two losses): each compared on its own
        return (isinstance(answer, (tuple, list)) and len(answer) == len(expected)
                and all(_same(a, e, atol) for a, e in zip(answer, expected)))
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
    """Run every case: print a summary when all pass, a notice for a stub, else raise :class:`CheckFailed`."""
    if not callable(student_fn):
        raise TypeError(f"pass your function itself (e.g. check(my_{name})), got {type(student_fn).__name__}")
    student_fn = getattr(student_fn, "learner_function", student_fn)  # the learner's code, not the fallback
    for case in cases:
        try:
            answer = student_fn(*case.args)
        except NotImplementedError:
            print(f"{NOT_ATTEMPTED} {name} is not implemented yet: replace `raise NotImplementedError` with your code, then run this cell again.")
            return
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
    print(f"{PASSED} {name}: all {len(cases)} cases pass")
