"""Exercise checks: run a learner's function against the reference and say precisely what differs.

Each ``check_<exercise>(student_fn)`` runs fixed cases (the edge cases that teach something) and
seeded random cases. It prints one line when everything passes, one line when the function is
still a stub, and otherwise raises :class:`CheckFailed` naming the first failing case, the
learner's answer, the expected answer and a hint. ``@checks.exercise(name)`` on the learner's
function lets the rest of a notebook run on the reference while the function is a stub.
One submodule per notebook; every check is re-exported here; :mod:`.mistakes` holds the classic
wrong answers that the notebooks show the checks catching.
"""

from . import mistakes
from ._core import NOT_ATTEMPTED, PASSED, Case, CheckFailed, exercise, run_cases
from .welcome import check_mask_to_box  # 00
from .boxes import check_iou, check_pairwise_iou  # 01
from .anchors import check_decode, check_encode, check_match  # 02
from .nms_map import check_average_precision, check_nms  # 03
from .two_stage import check_fastrcnn_loss, check_filter_proposals, check_roi_pool  # 04
from .one_stage import check_focal_loss, check_yolo_decode, check_yolo_target  # 05
from .segmentation import check_bilinear_kernel, check_confusion_matrix, check_dice  # 06
from .instance import check_mask_iou  # 07
from .attribution import check_occlusion, check_saliency  # 08
from .cam import check_gradcam, check_gradcam_weights  # 09
from .feature_visualization import check_dream_step  # 10
from .evaluation import check_pointing_game  # 12

__all__ = [
    "Case", "CheckFailed", "run_cases", "exercise", "PASSED", "NOT_ATTEMPTED", "mistakes",
    "check_mask_to_box",
    "check_iou", "check_pairwise_iou",
    "check_encode", "check_decode", "check_match",
    "check_nms", "check_average_precision",
    "check_roi_pool", "check_filter_proposals", "check_fastrcnn_loss",
    "check_yolo_target", "check_yolo_decode", "check_focal_loss",
    "check_confusion_matrix", "check_dice", "check_bilinear_kernel",
    "check_mask_iou",
    "check_saliency", "check_occlusion",
    "check_gradcam_weights", "check_gradcam",
    "check_dream_step",
    "check_pointing_game",
]  # fmt: skip
