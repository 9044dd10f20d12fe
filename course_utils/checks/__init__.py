"""Exercise checks: run a learner's function against the reference and say precisely what differs.

Each ``check_<exercise>(student_fn)`` runs fixed cases (the edge cases that teach something) and
seeded random cases. It prints one line when everything passes, and otherwise raises
:class:`CheckFailed` naming the first failing case, the learner's answer, the expected answer and
a hint. One submodule per notebook; every check is re-exported here.
"""

from ._core import Case, CheckFailed, run_cases
from .welcome import check_mask_to_box

__all__ = ["Case", "CheckFailed", "run_cases", "check_mask_to_box"]
from .boxes import check_iou, check_pairwise_iou

__all__ += ["check_iou", "check_pairwise_iou"]
from .anchors import check_decode, check_encode, check_match

__all__ += ["check_encode", "check_decode", "check_match"]
from .nms_map import check_average_precision, check_nms

__all__ += ["check_nms", "check_average_precision"]
from .cam import check_gradcam, check_gradcam_weights

__all__ += ["check_gradcam_weights", "check_gradcam"]
from .attribution import check_occlusion, check_saliency

__all__ += ["check_saliency", "check_occlusion"]
from .evaluation import check_pointing_game

__all__ += ["check_pointing_game"]
from .feature_visualization import check_dream_step

__all__ += ["check_dream_step"]
