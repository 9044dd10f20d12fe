"""Detection: the RoI operators and losses (``ops``) and the course's detectors built from them."""

from .faster_rcnn import FasterRCNN, to_torchvision
from .ops import roi_align, roi_pool, sigmoid_focal_loss, smooth_l1_loss

__all__ = ["roi_align", "roi_pool", "sigmoid_focal_loss", "smooth_l1_loss", "FasterRCNN", "to_torchvision"]
