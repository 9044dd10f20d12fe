"""Write student versions of the notebooks: solutions replaced by a stub, nothing else of the run kept.

    python tools/make_student.py notebooks student

Every region between a line ``### BEGIN SOLUTION`` and a line ``### END SOLUTION`` becomes
``raise NotImplementedError("your code here")`` at the same indentation. A student version keeps
no outputs, execution counts or execution metadata, no saved widget state, and no nbval markers
(``# NBVAL_…`` comment lines, ``nbval-…`` tags). The solution notebooks are not touched.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION\s*$")
END = re.compile(r"^[ \t]*### END SOLUTION\s*$")
NBVAL_MARKER = re.compile(r"^[ \t]*# NBVAL_\w+[ \t]*$")
STUB = 'raise NotImplementedError("your code here")'


def strip_solutions(source: str) -> str:
    """Replace each solution region of a cell's source by the stub; raise on unbalanced markers."""
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), 1):
        begin = BEGIN.match(line)
        if begin:
            if inside:
                raise ValueError(f"line {number}: BEGIN SOLUTION inside another solution region")
            inside = True
            out.append(f"{begin['indent']}{STUB}")
        elif END.match(line):
            if not inside:
                raise ValueError(f"line {number}: END SOLUTION without BEGIN SOLUTION")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("BEGIN SOLUTION is never closed by END SOLUTION")
    return "\n".join(out)


def strip_nbval_markers(source: str) -> str:
    """Drop the lines that only hold an nbval marker such as ``# NBVAL_CHECK_OUTPUT``."""
    return "\n".join(line for line in source.splitlines() if not NBVAL_MARKER.match(line))


def make_student_notebook(path: Path, out_dir: Path) -> Path:
    """Write the student version of one notebook into ``out_dir``; returns its path."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)  # saved widget state
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # timestamps of the instructor's run
        tags = [tag for tag in cell.metadata.get("tags", []) if not tag.startswith("nbval")]
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
        if cell.cell_type == "code":
            try:
                cell.source = strip_nbval_markers(strip_solutions(cell.source))
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
            cell.outputs = []
            cell.execution_count = None
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / path.name
    nbformat.write(nb, target)
    return target


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    source, out_dir = Path(argv[0]), Path(argv[1])
    notebooks = sorted(source.glob("[0-9]*.ipynb"))
    if not notebooks:
        print(f"no notebooks in {source}")
        return 1
    for path in notebooks:
        print(f"wrote {make_student_notebook(path, out_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
