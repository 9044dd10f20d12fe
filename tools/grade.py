"""Grade submitted student notebooks: run each headless, read what every exercise's check said.

    python tools/grade.py SUBMISSIONS [--course notebooks] [--timeout 600]

``SUBMISSIONS`` is a folder of notebooks (one student: the folder's name) or one sub-folder per
student. A submission is matched to a course notebook by its number (``01_…``, or a name such as
``alice_01.ipynb``). Each runs in a fresh kernel, in a temporary folder, with ``--timeout``
seconds for the whole notebook; the file itself is never written. The exercises are those of the
course's solution notebooks: a check cell ``checks.check_<name>(<function>)`` after the solution
cell that defines ``<function>``. For each, the check cell's output gives the status:

- ``pass``: the check printed its ✅ line;
- ``not attempted``: the function is still the stub (the check's ⏳ line);
- ``fail``: the check raised ``CheckFailed`` (its message is kept), or the cell raised another error;
- ``error``: the check never ran — the cell is missing, the notebook timed out, its kernel died
  or the file is not a notebook.

Writes ``grades.csv`` and ``grades.md`` into ``SUBMISSIONS``: a row per student × notebook ×
exercise, and a total per student. Exits 0 once the report is written, whatever the grades.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from course_utils.checks import NOT_ATTEMPTED, PASSED

COURSE = Path(__file__).resolve().parents[1] / "notebooks"
CHECK_CALL = re.compile(r"^[ \t]*checks\.(check_\w+)\((\w+)\)[ \t]*$", re.MULTILINE)
NUMBER = re.compile(r"(?<!\d)(\d\d)(?!\d)")
STATUSES = ("pass", "fail", "not attempted", "error")


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: its check cell calls ``check`` on the learner's ``function``."""

    check: str
    function: str

    @property
    def call(self) -> str:
        return f"checks.{self.check}({self.function})"


@dataclass(frozen=True)
class Row:
    student: str
    notebook: str
    exercise: str
    status: str
    message: str


def course_exercises(course: Path = COURSE) -> dict[str, list[Exercise]]:
    """The exercises of every numbered solution notebook in ``course``, by notebook file name."""
    exercises = {}
    for path in sorted(course.glob("[0-9][0-9]_*.ipynb")):
        sources = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        defined = {m for s in sources if "### BEGIN SOLUTION" in s for m in re.findall(r"^def (\w+)\(", s, re.MULTILINE)}
        found = [Exercise(*m.groups()) for s in sources for m in CHECK_CALL.finditer(s)]
        exercises[path.name] = [e for e in found if e.function in defined]  # not the demo checks of a mistake
    return exercises


def find_submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, notebook) pairs: notebooks in ``folder`` belong to the folder's student, those in a
    sub-folder to that sub-folder's student. Jupyter's checkpoint copies are skipped."""
    found = [(folder.name, p) for p in sorted(folder.glob("*.ipynb"))]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found += [(sub.name, p) for p in sorted(sub.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts]
    return found


def match_course_notebook(path: Path, course_names: list[str]) -> str | None:
    """The course notebook a submission is a version of, by the two-digit number in its name."""
    number = NUMBER.search(path.name)
    matches = [name for name in course_names if number and name.startswith(number.group(1) + "_")]
    return matches[0] if matches else None


def _check_outcome(cell: nbformat.NotebookNode | None, exercise: Exercise, stopped: str) -> tuple[str, str]:
    """(status, message) of one exercise from its executed check cell."""
    if cell is None:
        return "error", f"the check cell `{exercise.call}` is missing from the notebook (deleted?)"
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            if output.ename == "CheckFailed":
                return "fail", output.evalue
            return "fail", f"the check cell raised {output.ename}: {output.evalue}"
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")
    for line in text.splitlines():
        if line.startswith(PASSED):
            return "pass", line.removeprefix(PASSED).strip()
        if line.startswith(NOT_ATTEMPTED):
            return "not attempted", line.removeprefix(NOT_ATTEMPTED).strip()
    if cell.get("execution_count") is None:
        return "error", f"the check cell never ran: {stopped}" if stopped else "the check cell never ran"
    return "fail", "the check cell ran but printed no verdict (was the check call changed?)"


def grade_notebook(path: Path, exercises: list[Exercise], timeout: float = 600) -> tuple[list[tuple[str, str, str]], nbformat.NotebookNode | None]:
    """Execute one submission (in memory, in a temporary folder) and grade its exercises.

    Returns ``[(exercise, status, message)]`` and the executed notebook (``None`` if unreadable).
    """
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # any unreadable file gets a row, not a crash of the grader
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        reason = f"not a readable notebook: {type(exc).__name__}: {first_line}"
        return [(e.function, "error", reason) for e in exercises] or [("(notebook)", "error", reason)], None
    for cell in nb.cells:  # only this run's outputs count, never those saved in the file
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    deadline = time.monotonic() + timeout
    current = {"index": -1}
    stopped = ""
    with tempfile.TemporaryDirectory(prefix="grade-") as workdir:
        client = NotebookClient(
            nb,
            kernel_name="python3",
            allow_errors=True,  # a failing cell does not keep the later exercises from being graded
            timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
            interrupt_on_timeout=False,
            on_cell_start=lambda cell, cell_index: current.update(index=cell_index),
            resources={"metadata": {"path": workdir}},
        )
        try:
            client.execute()
        except CellTimeoutError:
            stopped = f"the notebook ran past its time limit of {timeout:g} s (stopped in cell {current['index']})"
        except DeadKernelError:
            stopped = f"the kernel died in cell {current['index']} (a crash, or out of memory)"
        except Exception as exc:  # the kernel would not start, a message could not be read, ...
            stopped = f"the notebook could not be run: {type(exc).__name__}: {exc}"
    rows = []
    for exercise in exercises:
        cells = [c for c in nb.cells if c.cell_type == "code" and any(m.groups() == (exercise.check, exercise.function) for m in CHECK_CALL.finditer(c.source))]
        rows.append((exercise.function, *_check_outcome(cells[0] if cells else None, exercise, stopped)))
    return rows, nb


def grade(folder: Path, course: Path = COURSE, timeout: float = 600) -> list[Row]:
    """Grade every submission in ``folder``; one :class:`Row` per student × notebook × exercise."""
    exercises = course_exercises(course)
    rows = []
    for student, path in find_submissions(folder):
        name = match_course_notebook(path, list(exercises))
        shown = str(path.relative_to(folder))
        if name is None:
            rows.append(Row(student, shown, "(notebook)", "error", "not a course notebook: its name should hold the course notebook's number, e.g. 01_…"))
            continue
        print(f"grading {shown} ({name}) ...", flush=True)
        graded, _ = grade_notebook(path, exercises[name], timeout)
        rows += [Row(student, shown, exercise, status, message) for exercise, status, message in graded]
    return rows


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def write_reports(rows: list[Row], folder: Path) -> tuple[Path, Path]:
    """Write ``grades.csv`` (one row per student × notebook × exercise) and ``grades.md`` (tables and totals)."""
    csv_path, md_path = folder / "grades.csv", folder / "grades.md"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "notebook", "exercise", "status", "message"])
        writer.writerows([r.student, r.notebook, r.exercise, r.status, r.message] for r in rows)
    by_student: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_student[row.student].append(row)
    lines = ["# Grades", "", "| student | pass | fail | not attempted | error | total |", "| --- | --- | --- | --- | --- | --- |"]
    for student, student_rows in by_student.items():
        counts = [sum(r.status == s for r in student_rows) for s in STATUSES]
        lines.append(f"| {_markdown_cell(student)} | {' | '.join(map(str, counts))} | {counts[0]} / {len(student_rows)} |")
    for student, student_rows in by_student.items():
        lines += ["", f"## {student}", "", "| notebook | exercise | status | message |", "| --- | --- | --- | --- |"]
        lines += [f"| {_markdown_cell(r.notebook)} | {r.exercise} | {r.status} | {_markdown_cell(r.message)} |" for r in student_rows]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, md_path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", type=Path, help="a folder of notebooks, or one sub-folder per student")
    parser.add_argument("--course", type=Path, default=COURSE, help="the solution notebooks (default: notebooks/)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for each whole notebook (default 600)")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        parser.error(f"SUBMISSIONS must be a folder, got {args.submissions}")
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout:g}")
    rows = grade(args.submissions, args.course, args.timeout)
    csv_path, md_path = write_reports(rows, args.submissions)
    print(f"wrote {csv_path} and {md_path}: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
