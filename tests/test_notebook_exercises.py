"""Every exercise of every notebook, end to end: the solution passes its check; in the student
version written by ``tools/make_student.py`` the stub's check says "not implemented yet" without
raising, and the decorated stub falls back to the reference implementation, saying so once.

Exercises are found, not listed: a code cell holding ``### BEGIN SOLUTION`` defines the learner's
functions, and a later cell calls ``checks.check_<exercise>(<function>)``.
"""

import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from course_utils import checks
from tools.make_student import STUB, make_student_notebook

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.ipynb"))
CHECK_CALL = re.compile(r"^\s*checks\.(check_\w+)\((\w+)\)\s*$", re.MULTILINE)


def _exercises(nb) -> tuple[list[str], list[tuple[str, str]]]:
    """The solution cells' sources and the (check name, function name) pairs called on them."""
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    solutions = [s for s in cells if "### BEGIN SOLUTION" in s or STUB in s]
    calls = [m.groups() for s in cells for m in CHECK_CALL.finditer(s)]
    return solutions, calls


def _namespace(sources: list[str]) -> dict:
    namespace = {"torch": torch, "torchvision": torchvision, "nn": nn, "F": F, "np": np, "math": math, "checks": checks}
    for source in sources:
        exec(compile(source, "<exercise cell>", "exec"), namespace)
    return namespace


WITH_EXERCISES = [p for p in NOTEBOOKS if _exercises(nbformat.read(p, as_version=4))[1]]


def test_the_notebooks_have_exercises():
    assert len(WITH_EXERCISES) >= 1


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_the_solutions_pass_their_checks(path, capsys):
    solutions, calls = _exercises(nbformat.read(path, as_version=4))
    namespace = _namespace(solutions)
    checked = [(check, function) for check, function in calls if function in namespace]  # not the demo mistakes
    assert checked
    for check, function in checked:
        getattr(checks, check)(namespace[function])
        assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_every_exercise_function_is_marked_for_the_fallback(path):
    solutions, calls = _exercises(nbformat.read(path, as_version=4))
    namespace = _namespace(solutions)
    for check, function in calls:
        if function in namespace:
            assert hasattr(namespace[function], "learner_function"), f"{function} lacks @checks.exercise(...)"


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_the_student_stubs_are_reported_as_not_implemented(path, tmp_path, capsys):
    student = nbformat.read(make_student_notebook(path, tmp_path), as_version=4)
    solutions, calls = _exercises(student)
    assert solutions and all("### BEGIN SOLUTION" not in s and STUB in s for s in solutions)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in student.cells if c.cell_type == "code")
    namespace = _namespace(solutions)
    stubbed = [(check, function) for check, function in calls if function in namespace]
    assert stubbed
    for check, function in stubbed:
        getattr(checks, check)(namespace[function])  # no exception: "Run All" goes on
        out = capsys.readouterr().out
        assert out.startswith(checks.NOT_ATTEMPTED) and "not implemented yet" in out and out.count("\n") == 1
