"""tools/make_student.py and tools/execute_notebooks.py on small notebooks built in tmp_path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tools.execute_notebooks import execute
from tools.execute_notebooks import main as execute_main
from tools.make_student import STUB, make_student_notebook, strip_solutions
from tools.make_student import main as student_main

# --------------------------------------------------------------------------- strip_solutions


def test_strip_solutions_keeps_the_indentation_and_the_code_around():
    source = textwrap.dedent(
        """\
        def iou(a, b):
            \"\"\"Docstring stays.\"\"\"
            ### BEGIN SOLUTION
            inter = overlap(a, b)
            return inter / union(a, b)
            ### END SOLUTION

        print("after")"""
    )
    assert strip_solutions(source) == textwrap.dedent(
        f"""\
        def iou(a, b):
            \"\"\"Docstring stays.\"\"\"
            {STUB}

        print("after")"""
    )


def test_strip_solutions_handles_several_regions_and_indentation_levels():
    source = "\n".join([
        "### BEGIN SOLUTION",
        "answer = 42",
        "### END SOLUTION",
        "class A:",
        "    def f(self):",
        "        ### BEGIN SOLUTION   ",
        "        return 1",
        "        ### END SOLUTION",
        "\tdef g(self):",
        "\t\t### BEGIN SOLUTION",
        "\t\treturn 2",
        "\t\t### END SOLUTION",
        "tail = True",
    ])
    assert strip_solutions(source).splitlines() == [
        STUB, "class A:", "    def f(self):", f"        {STUB}", "\tdef g(self):", f"\t\t{STUB}", "tail = True",
    ]


def test_stripped_code_compiles_and_raises_not_implemented():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n"
    namespace: dict = {}
    exec(compile(strip_solutions(source), "<cell>", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="your code here"):
        namespace["f"](1)


def test_source_without_markers_is_unchanged():
    source = "x = 1\n# a comment about ### BEGIN SOLUTION in prose\ny = 2"
    assert strip_solutions(source) == source
    assert strip_solutions("") == ""


@pytest.mark.parametrize(
    "source, message",
    [
        ("x = 1\n### END SOLUTION", "line 2: END SOLUTION without BEGIN"),
        ("### BEGIN SOLUTION\nx = 1", "never closed"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n### END SOLUTION", "line 2: BEGIN SOLUTION inside"),
        ("### BEGIN SOLUTION\n### END SOLUTION\n### END SOLUTION", "line 3: END SOLUTION without BEGIN"),
    ],
)
def test_unbalanced_markers_raise(source, message):
    with pytest.raises(ValueError, match=message):
        strip_solutions(source)


# --------------------------------------------------------------------------- make_student_notebook


def solution_notebook() -> nbformat.NotebookNode:
    solved = new_code_cell("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION\nadd(1, 2)",
                           execution_count=3, outputs=[new_output("execute_result", {"text/plain": "3"}, execution_count=3)])
    plain = new_code_cell("print('hi')", execution_count=4, outputs=[new_output("stream", name="stdout", text="hi\n")])
    prose = new_markdown_cell("### BEGIN SOLUTION\nMarkdown is left alone.\n### END SOLUTION")
    return new_notebook(cells=[new_markdown_cell("# Title"), solved, plain, prose])


def test_make_student_notebook_strips_solutions_and_clears_outputs(tmp_path):
    source_dir = tmp_path / "notebooks"
    source_dir.mkdir()
    path = source_dir / "01_add.ipynb"
    nbformat.write(solution_notebook(), path)
    original = path.read_bytes()

    written = make_student_notebook(path, tmp_path / "student" / "nested")
    assert written == tmp_path / "student" / "nested" / "01_add.ipynb"
    assert path.read_bytes() == original  # the solution notebook is not touched

    nb = nbformat.read(written, as_version=4)
    nbformat.validate(nb)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code", "markdown"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert code[0].source == f"def add(a, b):\n    {STUB}\nadd(1, 2)"
    assert "return a + b" not in written.read_text()
    assert code[1].source == "print('hi')"
    assert nb.cells[3].source == solution_notebook().cells[3].source


def test_make_student_notebook_keeps_no_trace_of_the_instructors_run(tmp_path):
    nb = solution_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}}}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells[1].source = "# NBVAL_CHECK_OUTPUT\n" + nb.cells[1].source
    nb.cells[1].metadata["execution"] = {"iopub.status.busy": "2026-11-26T02:51:10Z"}
    nb.cells[2].metadata["tags"] = ["nbval-ignore-output", "keep-me"]
    nb.cells[2].source = "print('hi')  # NBVAL_IGNORE_OUTPUT stays: not a marker line"
    path = tmp_path / "03_run.ipynb"
    nbformat.write(nb, path)

    student = nbformat.read(make_student_notebook(path, tmp_path / "out"), as_version=4)
    assert "widgets" not in student.metadata and student.metadata["kernelspec"]["name"] == "python3"
    assert student.cells[1].source == f"def add(a, b):\n    {STUB}\nadd(1, 2)"
    assert "execution" not in student.cells[1].metadata
    assert student.cells[2].metadata["tags"] == ["keep-me"]
    assert student.cells[2].source.endswith("not a marker line")
    assert "NBVAL_CHECK_OUTPUT" not in (tmp_path / "out" / "03_run.ipynb").read_text()


def test_make_student_notebook_names_the_notebook_on_bad_markers(tmp_path):
    nb = new_notebook(cells=[new_code_cell("### BEGIN SOLUTION\nx = 1")])
    path = tmp_path / "02_bad.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ValueError, match="02_bad.ipynb: BEGIN SOLUTION is never closed"):
        make_student_notebook(path, tmp_path / "out")
    assert not (tmp_path / "out" / "02_bad.ipynb").exists()


def test_make_student_main(tmp_path, capsys):
    assert student_main([]) == 2
    assert student_main([str(tmp_path), str(tmp_path / "out")]) == 1  # no notebooks
    for name in ("00_a.ipynb", "01_b.ipynb", "scratch.ipynb"):
        nbformat.write(solution_notebook(), tmp_path / name)
    assert student_main([str(tmp_path), str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00_a.ipynb", "01_b.ipynb"]  # numbered only
    assert "wrote" in capsys.readouterr().out


# --------------------------------------------------------------------------- execute_notebooks


def write_notebook(path: Path, *sources: str) -> Path:
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources]), path)
    return path


def test_execute_runs_a_notebook_in_its_folder_and_saves_outputs(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    path = write_notebook(folder / "00_ok.ipynb", "x = 20 + 22", "print(x)", "import os; print(os.getcwd())")
    seconds, peak_mib, status = execute(path)
    assert status == "ok"
    assert seconds > 0
    assert peak_mib > 1  # the kernel's resident high-water mark (a Python kernel needs tens of MiB)
    nb = nbformat.read(path, as_version=4)
    assert [c.execution_count for c in nb.cells] == [1, 2, 3]
    assert nb.cells[1].outputs[0].text == "42\n"
    assert Path(nb.cells[2].outputs[0].text.strip()).resolve() == folder.resolve()


def test_a_failing_notebook_is_reported_as_failed(tmp_path, capsys):
    ok = write_notebook(tmp_path / "00_ok.ipynb", "pass")
    bad = write_notebook(tmp_path / "01_bad.ipynb", "y = 1", "1 / 0", "print('never')")
    assert execute_main([str(ok), str(bad)]) == 1
    table = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line.split("|")[-2].strip() for line in table.splitlines() if line.startswith("| 0")}
    assert rows["00_ok.ipynb"] == "ok"
    assert rows["01_bad.ipynb"].startswith("FAILED") and "ZeroDivisionError" in rows["01_bad.ipynb"]
    nb = nbformat.read(bad, as_version=4)
    assert nb.cells[1].outputs[0].output_type == "error"  # saved with the error, for the instructor to read
    assert nb.cells[2].outputs == [] and nb.cells[2].execution_count is None  # stopped at the failing cell


def test_execute_main_without_arguments_prints_usage(capsys):
    assert execute_main([]) == 2
    assert "execute_notebooks.py" in capsys.readouterr().out
