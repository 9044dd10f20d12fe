"""Exercise checks: run a learner's function against the reference and say precisely what differs.

Each ``check_<exercise>(student_fn)`` runs fixed cases (the edge cases that teach something) and
seeded random cases. It prints one line when everything passes, and otherwise raises
:class:`CheckFailed` naming the first failing case, the learner's answer, the expected answer and
a hint. One submodule per notebook; every check is re-exported here.
"""

from ._core import Case, CheckFailed, run_cases
from .welcome import check_mask_to_box

__all__ = ["Case", "CheckFailed", "run_cases", "check_mask_to_box"]
