"""Target handling shared by the explanation methods (captum's ``target`` argument).

A target is either one class index for the whole batch (an ``int`` or a 0-d integer tensor)
or one class index per sample (an integer ``Tensor[N]``). ``RegionScores`` and ``DetectionScores``
turn a segmenter and a detector into such classifiers (one score per class), so that the
classifier methods (Grad-CAM, HiResCAM ...) explain a region or a detection unchanged.
"""

from __future__ import annotations

from numbers import Integral

import torch
from torch import Tensor, nn

from ..detection.transform import resize_boxes
from ..validation import check_boxes, check_tensor


def check_target(target: object, n: int) -> Tensor:
    """Return ``target`` as an int64 ``Tensor[n]`` holding one class index per sample.

    Args:
        target (int or Tensor): one class index for every sample, or an integer ``Tensor[n]``.
        n (int): the number of samples in the batch.

    Raises:
        TypeError: ``target`` is not an int or an integer tensor.
        ValueError: ``target`` is a tensor whose length is not ``n``.
    """
    if isinstance(target, Tensor):
        if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
            raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
        if target.ndim == 0:
            return target.long().expand(n)
        if target.shape != (n,):
            raise ValueError(
                f"target must be an int or a Tensor[{n}] (one class per sample), got shape {tuple(target.shape)}"
            )
        return target.long()
    if isinstance(target, bool) or not isinstance(target, Integral):
        raise TypeError(f"target must be an int or a LongTensor of class indices, got {type(target).__name__}")
    return torch.full((n,), int(target), dtype=torch.long)


def select_target(output: object, target: object) -> Tensor:
    """Pick each sample's target score from the model's logits.

    Args:
        output (Tensor[N, K]): the model's output, one row of ``K`` class scores per sample.
        target (int or Tensor[N]): the class index (or indices), see :func:`check_target`.

    Returns:
        Tensor[N]: ``output[i, target[i]]`` for every sample ``i``.

    Raises:
        TypeError / ValueError: the output is not ``N x K`` or a target is not in ``[0, K)``.
    """
    if not isinstance(output, Tensor):
        raise TypeError(f"model output must be a Tensor of class scores, got {type(output).__name__}")
    if output.ndim != 2:
        raise ValueError(f"model output must have shape [N, num_classes], got {tuple(output.shape)}")
    num_samples, num_classes = output.shape
    index = check_target(target, num_samples).to(output.device)
    out_of_range = (index < 0) | (index >= num_classes)
    if bool(out_of_range.any()):
        i = int(out_of_range.nonzero()[0, 0])
        raise ValueError(
            f"target must be in [0, {num_classes}) (the model has {num_classes} outputs), "
            f"got {int(index[i])} for sample {i}"
        )
    return output.gather(1, index[:, None]).squeeze(1)


class RegionScores(nn.Module):
    """A segmenter seen as a classifier: class ``k``'s score is the sum of its logits over ``regions[:, k]``.

    pytorch-grad-cam's ``SemanticSegmentationTarget(k, mask)`` as a model, so that
    ``grad_cam(RegionScores(segmenter, regions), "segmenter." + layer, images, k)`` explains a region.

    Args:
        segmenter (nn.Module): ``[N, 3, H, W] -> logits [N, K, H, W]``.
        regions (Tensor[N, K, H, W]): 0/1 (or bool) weights; usually one-hot predicted classes.

    ``forward(images [N, 3, H, W]) -> Tensor[N, K]``.
    """

    def __init__(self, segmenter: nn.Module, regions: Tensor) -> None:
        super().__init__()
        if not isinstance(segmenter, nn.Module):
            raise TypeError(f"segmenter must be a torch.nn.Module, got {type(segmenter).__name__}")
        self.segmenter = segmenter
        self.regions = check_tensor(regions, "regions", ndim=4).float()

    def forward(self, images: Tensor) -> Tensor:
        logits = self.segmenter(images)
        if logits.shape != self.regions.shape:
            raise ValueError(
                f"regions must have the segmenter's output shape {tuple(logits.shape)}, got {tuple(self.regions.shape)}"
            )
        return (logits * self.regions.to(logits.device)).sum(dim=(2, 3))


class DetectionScores(nn.Module):
    """A two-stage detector seen as a classifier: the box head's class logits for one fixed box per image.

    For image ``i`` the detector's own layers run as in inference (``transform``, ``backbone``),
    then its box head scores ``boxes[i]`` instead of the RPN's proposals: RoIAlign of the box on
    the backbone's feature map, ``box_head``, ``box_predictor``. Giving a detection's box and
    ``target`` = its label, ``grad_cam(DetectionScores(detector, boxes), "detector.backbone", images,
    labels)`` explains that detection's class logit (softmax of the row = its re-scored class scores).

    Args:
        detector (nn.Module): a ``FasterRCNN`` of ``course_utils.detection`` (``transform``,
            ``backbone``, ``roi_heads``), in eval mode.
        boxes (Tensor[N, 4]): one xyxy box per image, in the input image's pixels.

    ``forward(images [N, 3, H, W]) -> Tensor[N, num_classes]`` (column 0: the background).
    """

    def __init__(self, detector: nn.Module, boxes: Tensor) -> None:
        super().__init__()
        missing = [part for part in ("transform", "backbone", "roi_heads") if not hasattr(detector, part)]
        if not isinstance(detector, nn.Module) or missing:
            raise TypeError(f"detector must be a two-stage detector (FasterRCNN); it lacks {missing or 'nn.Module'}")
        self.detector = detector
        self.boxes = check_boxes(boxes, "boxes")

    def forward(self, images: Tensor) -> Tensor:
        images = check_tensor(images, "images", ndim=4, floating=True)
        if len(images) != len(self.boxes):
            raise ValueError(f"boxes must hold one box per image: {len(self.boxes)} boxes for {len(images)} images")
        detector, heads = self.detector, self.detector.roi_heads
        batch, _ = detector.transform(list(images))
        feature = detector.backbone(batch.tensors)
        original = tuple(images.shape[-2:])
        boxes = [
            resize_boxes(box[None].to(feature.device), original, size)
            for box, size in zip(self.boxes, batch.image_sizes)
        ]
        class_logits, _ = heads.box_predictor(heads.box_head(heads.box_roi_pool(feature, boxes, batch.image_sizes)))
        return class_logits
