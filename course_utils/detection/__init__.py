"""Detection: the RoI operators and losses (``ops``); the course's detectors will live beside them."""

from .ops import roi_align, roi_pool, sigmoid_focal_loss, smooth_l1_loss

__all__ = ["roi_align", "roi_pool", "sigmoid_focal_loss", "smooth_l1_loss"]
