"""tools/grade.py: what `make grade` writes for solution notebooks, student versions, a planted
bug, and submissions that are broken, loop, crash or lost their check cell.

The end-to-end tests execute real course notebooks in real kernels, as an instructor would.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from tools.grade import Exercise, _check_outcome, course_exercises, find_submissions, grade, main, match_course_notebook, write_reports
from tools.make_student import make_student_notebook

COURSE = Path(__file__).resolve().parents[1] / "notebooks"
EXERCISES = course_exercises(COURSE)
WITH_EXERCISES = sorted(name for name, found in EXERCISES.items() if found)
IOU = Exercise("check_iou", "iou")


def copy_course(names: list[str], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(COURSE / name, folder / name)) for name in names]


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- the pieces, without a kernel


def test_the_course_exercises_are_found_without_the_demo_checks():
    assert EXERCISES["01_boxes_and_iou.ipynb"] == [IOU, Exercise("check_pairwise_iou", "pairwise_iou")]
    assert [e.function for e in EXERCISES["00_welcome_and_setup.ipynb"]] == ["mask_to_box"]
    assert sum(map(len, EXERCISES.values())) >= 14 and len(WITH_EXERCISES) >= 8
    assert all("mistakes" not in e.function for found in EXERCISES.values() for e in found)


def test_submissions_are_found_per_student(tmp_path):
    (tmp_path / "alice" / "week1").mkdir(parents=True)
    (tmp_path / "bob" / ".ipynb_checkpoints").mkdir(parents=True)
    for path in ["01_a.ipynb", "alice/00_b.ipynb", "alice/week1/03_c.ipynb", "bob/12_d.ipynb", "bob/.ipynb_checkpoints/12_d-checkpoint.ipynb", "bob/notes.txt"]:
        (tmp_path / path).write_text("{}")
    found = [(student, str(path.relative_to(tmp_path))) for student, path in find_submissions(tmp_path)]
    assert found == [(tmp_path.name, "01_a.ipynb"), ("alice", "alice/00_b.ipynb"), ("alice", "alice/week1/03_c.ipynb"), ("bob", "bob/12_d.ipynb")]


@pytest.mark.parametrize(
    "name, expected",
    [("01_boxes_and_iou.ipynb", "01_boxes_and_iou.ipynb"), ("alice_01.ipynb", "01_boxes_and_iou.ipynb"),
     ("03_nms_and_map (1).ipynb", "03_nms_and_map.ipynb"), ("homework.ipynb", None), ("99_extra.ipynb", None), ("2001_x.ipynb", None)],
)  # fmt: skip
def test_a_submission_is_matched_to_its_course_notebook_by_number(name, expected):
    assert match_course_notebook(Path(name), list(EXERCISES)) == expected


def executed_cell(*outputs, execution_count=1):
    return new_code_cell("checks.check_iou(iou)", execution_count=execution_count, outputs=list(outputs))


@pytest.mark.parametrize(
    "cell, status, message",
    [
        (executed_cell(new_output("stream", name="stdout", text="✅ iou: all 21 cases pass\n")), "pass", "iou: all 21 cases pass"),
        (executed_cell(new_output("stream", name="stdout", text="⏳ iou is not implemented yet: ...\n")), "not attempted", "iou is not implemented yet: ..."),
        (executed_cell(new_output("error", ename="CheckFailed", evalue="iou is wrong on case: x", traceback=[])), "fail", "iou is wrong on case: x"),
        (executed_cell(new_output("error", ename="NameError", evalue="name 'iou' is not defined", traceback=[])), "fail",
         "the check cell raised NameError: name 'iou' is not defined"),
        (executed_cell(execution_count=None), "error", "the check cell never ran: the notebook ran past its time limit"),
        (executed_cell(), "fail", "the check cell ran but printed no verdict"),
        (None, "error", "the check cell `checks.check_iou(iou)` is missing"),
    ],
    ids=["pass", "not-attempted", "check-failed", "other-error", "never-ran", "no-verdict", "missing"],
)
def test_each_kind_of_check_output_gets_its_status(cell, status, message):
    got_status, got_message = _check_outcome(cell, IOU, "the notebook ran past its time limit of 5 s (stopped in cell 3)")
    assert got_status == status and got_message.startswith(message)


def test_the_reports_hold_one_row_per_exercise_and_a_total_per_student(tmp_path):
    from tools.grade import Row

    rows = [Row("ann", "01.ipynb", "iou", "pass", "ok"), Row("ann", "01.ipynb", "pairwise_iou", "fail", "wrong | here\nline 2"),
            Row("ben", "00.ipynb", "mask_to_box", "not attempted", "stub")]  # fmt: skip
    csv_path, md_path = write_reports(rows, tmp_path)
    assert [tuple(r.values()) for r in read_csv(csv_path)] == [tuple(vars(r).values()) for r in rows]
    markdown = md_path.read_text()
    assert "| ann | 1 | 1 | 0 | 0 | 1 / 2 |" in markdown and "| ben | 0 | 0 | 1 | 0 | 0 / 1 |" in markdown
    assert "wrong \\| here<br>line 2" in markdown  # a message cannot break the table


def test_main_refuses_what_is_not_a_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--timeout", "0"])
    assert "must be" in capsys.readouterr().err


# --------------------------------------------------------------------------- end to end, in real kernels


@pytest.mark.slow
def test_the_solution_notebooks_grade_all_pass_and_stay_untouched(tmp_path):
    copies = copy_course(WITH_EXERCISES, tmp_path / "instructor")
    before = {path: path.read_bytes() for path in copies}
    assert main([str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "grades.csv")
    assert len(rows) == sum(len(EXERCISES[name]) for name in WITH_EXERCISES)
    assert {(r["status"], r["student"]) for r in rows} == {("pass", "instructor")}, [r for r in rows if r["status"] != "pass"]
    assert all(path.read_bytes() == content for path, content in before.items())  # grading never writes a submission
    assert f"| instructor | {len(rows)} | 0 | 0 | 0 | {len(rows)} / {len(rows)} |" in (tmp_path / "grades.md").read_text()


@pytest.mark.slow
def test_the_student_versions_run_to_the_end_and_grade_not_attempted(tmp_path):
    from tools.grade import grade_notebook

    folder = tmp_path / "student"
    for name in WITH_EXERCISES:
        path = make_student_notebook(COURSE / name, folder)
        graded, executed = grade_notebook(path, EXERCISES[name])
        assert [status for _, status, _ in graded] == ["not attempted"] * len(EXERCISES[name]), (name, graded)
        errors = [(i, o.ename, o.evalue) for i, c in enumerate(executed.cells) if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{name}: the student version stops at {errors[0]}"
        assert all(c.execution_count for c in executed.cells if c.cell_type == "code" and c.source.strip()), name
        fallback = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
        for exercise in EXERCISES[name]:  # each fallback is announced at most once
            assert fallback.count(f"ℹ️ {exercise.function} is not implemented yet: the course's reference") <= 1


@pytest.mark.slow
def test_a_planted_bug_and_broken_submissions_each_get_a_clear_row(tmp_path):
    """alice: one bug in 01's iou; bob: a file that is not a notebook and a 00 whose check cell was
    deleted; carol: a 00 that loops forever and one whose kernel dies."""
    (alice,) = copy_course(["01_boxes_and_iou.ipynb"], tmp_path / "alice")
    nb = nbformat.read(alice, as_version=4)
    (cell,) = [c for c in nb.cells if c.source.startswith('@checks.exercise("iou")')]
    assert "max(0.0, min(box_a[2], box_b[2]) - max(box_a[0], box_b[0]))" in cell.source
    cell.source = cell.source.replace("max(0.0, min(box_a[2], box_b[2]) - max(box_a[0], box_b[0]))", "min(box_a[2], box_b[2]) - max(box_a[0], box_b[0])")
    nbformat.write(nb, alice)

    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "01_boxes_and_iou.ipynb").write_text('{"cells": [ this is not json')
    deleted = nbformat.read(COURSE / "00_welcome_and_setup.ipynb", as_version=4)
    deleted.cells = [c for c in deleted.cells if "checks.check_mask_to_box(mask_to_box)" not in c.source]
    nbformat.write(deleted, tmp_path / "bob" / "00_welcome_and_setup.ipynb")

    (tmp_path / "carol").mkdir()
    for name, source in [("00_loops.ipynb", "while True:\n    pass"), ("00_crashes.ipynb", "import os\nos._exit(1)")]:
        broken = nbformat.read(COURSE / "00_welcome_and_setup.ipynb", as_version=4)
        broken.cells.insert(2, new_code_cell(source))
        nbformat.write(broken, tmp_path / "carol" / name)

    assert main([str(tmp_path), "--timeout", "40"]) == 0
    rows = {(r["student"], r["notebook"], r["exercise"]): (r["status"], r["message"]) for r in read_csv(tmp_path / "grades.csv")}
    assert rows[("alice", "alice/01_boxes_and_iou.ipynb", "iou")][0] == "fail"
    assert "iou is wrong on case" in rows[("alice", "alice/01_boxes_and_iou.ipynb", "iou")][1]
    assert rows[("alice", "alice/01_boxes_and_iou.ipynb", "pairwise_iou")][0] == "pass"  # exactly the planted exercise fails
    assert rows[("bob", "bob/01_boxes_and_iou.ipynb", "iou")] [0] == "error"
    assert rows[("bob", "bob/01_boxes_and_iou.ipynb", "iou")][1].startswith("not a readable notebook")
    assert rows[("bob", "bob/00_welcome_and_setup.ipynb", "mask_to_box")] == (
        "error", "the check cell `checks.check_mask_to_box(mask_to_box)` is missing from the notebook (deleted?)")
    assert rows[("carol", "carol/00_loops.ipynb", "mask_to_box")][0] == "error"
    assert "ran past its time limit of 40 s (stopped in cell 2)" in rows[("carol", "carol/00_loops.ipynb", "mask_to_box")][1]
    assert rows[("carol", "carol/00_crashes.ipynb", "mask_to_box")][0] == "error"
    assert "the kernel died in cell 2" in rows[("carol", "carol/00_crashes.ipynb", "mask_to_box")][1]
    assert len(rows) == 7
    summary = (tmp_path / "grades.md").read_text()
    assert "| alice | 1 | 1 | 0 | 0 | 1 / 2 |" in summary and "| bob | 0 | 0 | 0 | 3 | 0 / 3 |" in summary
