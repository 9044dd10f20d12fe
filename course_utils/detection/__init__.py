"""Detection: the RoI operators and losses (``ops``) and the course's detectors built from them.

Faster R-CNN is split as torchvision's ``models.detection``: ``transform``, ``backbone``, ``rpn``,
``roi_heads`` (and ``_utils``, what the detectors share), assembled in ``faster_rcnn``. ``yolo`` is
the one-stage YOLOv1-style grid detector.
"""

from .backbone import SmallBackbone
from .faster_rcnn import LOSS_NAMES, FasterRCNN, to_torchvision
from .ops import roi_align, roi_pool, sigmoid_focal_loss, smooth_l1_loss
from .roi_heads import FastRCNNPredictor, RoIAlignPooler, RoIHeads, TwoMLPHead
from .rpn import RegionProposalNetwork, RPNHead
from .transform import DetectionTransform, ImageBatch
from .yolo import YOLO

__all__ = [
    "roi_align", "roi_pool", "sigmoid_focal_loss", "smooth_l1_loss", "FasterRCNN", "to_torchvision",
    "DetectionTransform", "ImageBatch", "SmallBackbone", "RPNHead", "RegionProposalNetwork", "RoIAlignPooler",
    "TwoMLPHead", "FastRCNNPredictor", "RoIHeads", "LOSS_NAMES", "YOLO",
]
