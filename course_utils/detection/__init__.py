"""Detection: the RoI operators and losses (``ops``) and the course's detectors built from them.

Faster R-CNN is split as torchvision's ``models.detection``: ``transform``, ``backbone``, ``rpn``,
``roi_heads`` (and ``_utils``, what the detectors share), assembled in ``faster_rcnn``. ``yolo`` is
the one-stage YOLOv1-style grid detector, ``retinanet`` the anchor-based one with the focal loss
(``ssd`` wraps torchvision's SSD); ``mask_rcnn`` adds a mask head to Faster R-CNN. ``to_torchvision``
gives the torchvision twin of a ``FasterRCNN``, a ``MaskRCNN`` or a ``RetinaNet``.
"""

from torch import nn

from . import faster_rcnn, mask_rcnn, retinanet
from .backbone import SmallBackbone
from .faster_rcnn import LOSS_NAMES, FasterRCNN
from .mask_rcnn import MASK_LOSS_NAMES, MaskRCNN, paste_masks
from .ops import roi_align, roi_pool, sigmoid_focal_loss, smooth_l1_loss
from .retinanet import FPNBackbone, RetinaNet
from .roi_heads import FastRCNNPredictor, RoIAlignPooler, RoIHeads, TwoMLPHead
from .rpn import RegionProposalNetwork, RPNHead
from .transform import DetectionTransform, ImageBatch
from .yolo import YOLO

__all__ = [
    "roi_align", "roi_pool", "sigmoid_focal_loss", "smooth_l1_loss", "FasterRCNN", "to_torchvision",
    "DetectionTransform", "ImageBatch", "SmallBackbone", "RPNHead", "RegionProposalNetwork", "RoIAlignPooler",
    "TwoMLPHead", "FastRCNNPredictor", "RoIHeads", "LOSS_NAMES", "YOLO",
    "RetinaNet", "FPNBackbone", "MaskRCNN", "MASK_LOSS_NAMES", "paste_masks",
]


def to_torchvision(model: FasterRCNN | MaskRCNN | RetinaNet) -> nn.Module:
    """torchvision's twin of a course ``FasterRCNN``, ``MaskRCNN`` or ``RetinaNet``: same settings, copied weights,
    same mode; eval-mode outputs equal (see ``faster_rcnn``, ``mask_rcnn``, ``retinanet``'s ``to_torchvision``)."""
    if isinstance(model, MaskRCNN):
        return mask_rcnn.to_torchvision(model)
    if isinstance(model, RetinaNet):
        return retinanet.to_torchvision(model)
    if isinstance(model, FasterRCNN):
        return faster_rcnn.to_torchvision(model)
    raise TypeError(f"model must be a course_utils FasterRCNN, MaskRCNN or RetinaNet, got {type(model).__name__}")
