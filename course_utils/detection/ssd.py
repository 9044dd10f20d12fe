"""SSD (Single Shot MultiBox Detector) for the course's scenes: torchvision's ``SSD`` on a small multi-scale backbone.

SSD is the one detector of ``course_utils.detection`` taken from torchvision rather than rebuilt:
the course teaches it (default boxes at several scales, matching, hard-negative mining), trains it
and compares it with its own Faster R-CNN and YOLO, but does not re-implement it. ``build_ssd``
returns a ``torchvision.models.detection.SSD``; this module adds the course's backbone, default
boxes sized for its 16-48 px objects, and two helpers that show what the model computes inside::

    list of images [3, H_i, W_i]
      │ transform   resize to image_size × image_size, normalize (ImageNet mean and std)
      │ backbone    SSDBackbone: {"0": [N, w, s/8, s/8], "1": [N, 2w, s/16, s/16], ...}
      │ head        one 3x3 conv per feature map: class logits and box offsets of each default box
      ▼ default boxes  DefaultBoxGenerator: 2 + 2·len(aspect_ratios) boxes per location of each map
      │ training    match (IoU >= iou_thresh, and each object's best box), Smooth L1 on the matched
      │             boxes' offsets, cross-entropy on the matched boxes and the hardest negatives
      ▼ eval        softmax, per-class top-k and NMS -> list of {"boxes", "labels", "scores"}

``default_boxes(model)`` gives every default box (in the order of the head's predictions) and
their count per feature map; ``hard_negatives(model, images, targets)`` gives, per image, the
matched default boxes and the negatives that hard-negative mining keeps for the loss.

Labels follow torchvision's convention: ``num_classes`` counts the background, objects are
labelled 1 .. num_classes - 1. Input and output are torchvision's: its SSD checks its own input
(not the course's ``check_images`` / ``check_targets``; the helpers here do use those).

torchvision's detection code is imported lazily, inside ``build_ssd`` and the helpers only
(``import torchvision`` alone loads ``torchvision.models.detection``): importing this module, or
``course_utils.detection``, does not load it, so the course's own detectors stay visibly its own.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from numbers import Real
from typing import TYPE_CHECKING, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..training import eval_mode
from ..validation import check_positive_int, check_probability
from ._utils import check_images, check_targets
from .backbone import SmallBackbone
from .transform import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:  # only for type hints: torchvision's detection code is imported lazily
    from torchvision.models.detection.ssd import SSD

__all__ = [
    "SSDBackbone", "build_ssd", "default_scales", "default_boxes", "hard_negatives", "HardNegatives", "SSD_LOSS_NAMES",
]

SSD_LOSS_NAMES = ("bbox_regression", "classification")  # torchvision's keys, in its order
DEFAULT_ASPECT_RATIOS = (2.0,)


class SSDBackbone(nn.Module):
    """``SmallBackbone``'s five blocks (stride 8), then ``feature_maps - 1`` stride-2 blocks, each doubling the channels.

    [N, 3, H, W] -> ``OrderedDict`` ``{"0": [N, width, H/8, W/8], "1": [N, 2·width, H/16, W/16], ...}``
    (sizes rounded up). ``out_channels`` (what torchvision's SSD reads): ``[width, 2·width, ...]``;
    ``strides``: ``[8, 16, ...]``. Same layers as ``SmallBackbone(width, extra_blocks=feature_maps - 1)``,
    with every stage's output returned.
    """

    def __init__(self, width: int = 32, feature_maps: int = 2, in_channels: int = 3) -> None:
        super().__init__()
        width = check_positive_int(width, "width")
        feature_maps = check_positive_int(feature_maps, "feature_maps")
        layers = list(SmallBackbone(width, in_channels, extra_blocks=feature_maps - 1))
        body, extra = layers[:15], layers[15:]  # 3 layers (conv, BatchNorm, ReLU) per block
        self.stages = nn.ModuleList(
            [nn.Sequential(*body)] + [nn.Sequential(*extra[3 * k : 3 * k + 3]) for k in range(feature_maps - 1)]
        )
        self.out_channels = [width * 2**k for k in range(feature_maps)]
        self.strides = [8 * 2**k for k in range(feature_maps)]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        features: OrderedDict[str, Tensor] = OrderedDict()
        for k, stage in enumerate(self.stages):
            x = stage(x)
            features[str(k)] = x
        return features


def default_scales(feature_maps: int = 2) -> tuple[float, ...]:
    """The default ``scales`` of ``build_ssd``: ``feature_maps + 1`` sides, as fractions of the image, doubling
    like the strides: 1/8, 1/4, 1/2 ... A map of stride 8·2^k gets square boxes of side s_k and
    √(s_k · s_k+1) (16 and 23 px, then 32 and 45 px on a 128 px image: the 16-48 px objects)."""
    feature_maps = check_positive_int(feature_maps, "feature_maps")
    return tuple(0.125 * 2.0**k for k in range(feature_maps + 1))


def _check_numbers(value: object, name: str, *, positive: bool, allow_empty: bool = False) -> list[float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or (not value and not allow_empty):
        raise TypeError(f"{name} must be a {'' if allow_empty else 'non-empty '}list or tuple of numbers, got {value!r}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or (positive and v <= 0):
            raise ValueError(f"{name}[{i}] must be a finite number{' > 0' if positive else ''}, got {v!r}")
        out.append(float(v))
    return out


def _check_aspect_ratios(aspect_ratios: object, feature_maps: int) -> list[list[float]]:
    """One list for every map (numbers), or one list per map (a list of lists)."""
    if isinstance(aspect_ratios, Sequence) and not isinstance(aspect_ratios, (str, bytes)) and aspect_ratios and all(
        isinstance(r, Sequence) and not isinstance(r, (str, bytes)) for r in aspect_ratios
    ):
        if len(aspect_ratios) != feature_maps:
            raise ValueError(
                f"aspect_ratios has {len(aspect_ratios)} lists but there are {feature_maps} feature maps: "
                "give one list per feature map, or one list of numbers for all of them"
            )
        return [_check_numbers(r, f"aspect_ratios[{k}]", positive=True, allow_empty=True) for k, r in enumerate(aspect_ratios)]
    ratios = _check_numbers(aspect_ratios, "aspect_ratios", positive=True, allow_empty=True)
    return [list(ratios) for _ in range(feature_maps)]


def build_ssd(
    num_classes: int,
    width: int = 32,
    image_size: int = 128,
    *,
    feature_maps: int = 2,
    aspect_ratios: Sequence[float] | Sequence[Sequence[float]] = DEFAULT_ASPECT_RATIOS,
    scales: Sequence[float] | None = None,
    iou_thresh: float = 0.5,
    positive_fraction: float = 0.25,
    score_thresh: float = 0.01,
    nms_thresh: float = 0.45,
    detections_per_img: int = 100,
    topk_candidates: int = 100,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
) -> SSD:
    """torchvision's ``SSD`` on ``SSDBackbone(width, feature_maps)`` for ``image_size`` × ``image_size`` inputs.

    Args:
        num_classes: number of classes including the background (>= 2).
        width: channels of the first feature map (doubled at each further map).
        image_size: side to which every image is resized (SSD's fixed input size).
        feature_maps: number of feature maps, strides 8, 16, 32 ...
        aspect_ratios: ratios r (w/h = r and 1/r) added at every location, one list for all maps or one
            per map; a location has 2 + 2·len(ratios) default boxes.
        scales: ``feature_maps + 1`` box sides as fractions of the image (default ``default_scales``).
        iou_thresh: a default box is matched to an object at IoU >= this (each object also gets its best box).
        positive_fraction: hard-negative mining keeps (1 - f) / f negatives per matched box (3 for 0.25).
        score_thresh, nms_thresh, detections_per_img, topk_candidates (per class, before NMS): eval post-processing.
        image_mean, image_std: per-channel normalization (torchvision's ImageNet values).
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
    width = check_positive_int(width, "width")
    image_size = check_positive_int(image_size, "image_size")
    feature_maps = check_positive_int(feature_maps, "feature_maps")
    ratios = _check_aspect_ratios(aspect_ratios, feature_maps)
    if scales is None:
        scales = default_scales(feature_maps)
    scales = _check_numbers(scales, "scales", positive=True)
    if len(scales) != feature_maps + 1:
        raise ValueError(f"scales must have feature_maps + 1 = {feature_maps + 1} entries, got {len(scales)}")
    iou_thresh = check_probability(iou_thresh, "iou_thresh")
    positive_fraction = check_probability(positive_fraction, "positive_fraction")
    if positive_fraction == 0:
        raise ValueError("positive_fraction must be > 0 (it sets (1 - f) / f negatives per positive)")
    mean, std = _check_numbers(image_mean, "image_mean", positive=False), _check_numbers(image_std, "image_std", positive=True)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"image_mean and image_std need 3 values (RGB), got {len(mean)} and {len(std)}")

    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

    return SSD(
        SSDBackbone(width, feature_maps),
        DefaultBoxGenerator(ratios, scales=scales),
        (image_size, image_size),
        num_classes,
        image_mean=mean,
        image_std=std,
        score_thresh=check_probability(score_thresh, "score_thresh"),
        nms_thresh=check_probability(nms_thresh, "nms_thresh"),
        detections_per_img=check_positive_int(detections_per_img, "detections_per_img"),
        iou_thresh=iou_thresh,
        topk_candidates=check_positive_int(topk_candidates, "topk_candidates"),
        positive_fraction=positive_fraction,
    )


def _check_ssd(model: object) -> nn.Module:
    from torchvision.models.detection.ssd import SSD

    if not isinstance(model, SSD):
        raise TypeError(f"model must be a torchvision SSD (see build_ssd), got {type(model).__name__}")
    return model


def _input_size(model: nn.Module) -> tuple[int, int]:
    width, height = model.transform.fixed_size  # SSD's size is (width, height)
    return int(height), int(width)


def _features(model: nn.Module, tensors: Tensor) -> list[Tensor]:
    features = model.backbone(tensors)
    return [features] if isinstance(features, Tensor) else list(features.values())


@torch.no_grad()
def default_boxes(model: SSD, image_size: int | None = None) -> tuple[Tensor, list[int]]:
    """All default boxes of ``model`` on one image: ``(boxes, counts)``.

    ``boxes``: Tensor[A, 4] xyxy in the pixels of the model's input (``image_size`` × ``image_size``,
    default the size the model resizes every image to), in the order of the head's predictions:
    feature map by feature map, then row, column, and box at a location. ``counts``: the number of
    boxes of each feature map (h_k · w_k · boxes per location; ``sum(counts) == A``).
    """
    model = _check_ssd(model)
    height, width = _input_size(model) if image_size is None else (check_positive_int(image_size, "image_size"),) * 2
    from torchvision.models.detection.image_list import ImageList

    parameter = next(model.parameters())
    tensors = torch.zeros(1, 3, height, width, dtype=parameter.dtype, device=parameter.device)
    with eval_mode(model):
        features = _features(model, tensors)
    boxes = model.anchor_generator(ImageList(tensors, [(height, width)]), features)[0]
    per_location = model.anchor_generator.num_anchors_per_location()
    counts = [int(f.shape[-2] * f.shape[-1]) * n for f, n in zip(features, per_location)]
    return boxes, counts


class HardNegatives(NamedTuple):
    """The default boxes of one image that SSD's loss reads (torchvision's ``SSD.compute_loss``); all Tensor[A].

    ``matched``: int64, the index of the object each default box is matched to, -1 for none;
    ``positive``: bool, ``matched >= 0``: their class and box offsets are learned;
    ``negative``: bool, the hard negatives: of the unmatched boxes, the ``neg_to_pos_ratio · P``
    (P positives of this image) of highest classification loss, learned as background; the other
    negatives are not in the loss (none at all in an image without objects);
    ``loss``: float, each box's cross-entropy against its class (0, the background, if unmatched).
    """

    matched: Tensor
    positive: Tensor
    negative: Tensor
    loss: Tensor

    @property
    def num_positives(self) -> int:
        return int(self.positive.sum())

    @property
    def num_negatives(self) -> int:
        """``min(ceil(neg_to_pos_ratio · P), A - P)``: 3 per positive by default, at most every unmatched box."""
        return int(self.negative.sum())

    @property
    def num_anchors(self) -> int:
        return int(self.matched.numel())


@torch.no_grad()
def hard_negatives(
    model: SSD, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]]
) -> list[HardNegatives]:
    """Matching and hard-negative mining of ``model`` on a batch, as a training step does them: a ``HardNegatives`` per image.

    Images (float Tensor[3, H_i, W_i] in [0, 1]) and targets (``boxes`` xyxy Tensor[G, 4], ``labels``
    int64 [G] in [1, num_classes)) as the model takes them; they go through the model's transform
    (resize to its input size), and the default boxes are those of ``default_boxes(model)``, in the
    same order. The network runs in eval mode (nothing is updated), so the losses, and which
    negatives are hardest, can differ a little from a training step's (BatchNorm there uses the
    batch's statistics); ``matched``, ``positive`` and the number of negatives do not. Where
    ``ratio · P`` exceeds the unmatched boxes, torchvision's mask also takes positives (counted twice
    in its loss); ``negative`` here holds negatives only.
    """
    model = _check_ssd(model)
    from torchvision.ops import box_iou

    num_classes = int(model.head.classification_head.num_columns)
    images = check_images(images, len(model.transform.image_mean))
    targets = check_targets(targets, len(images), num_classes)
    with eval_mode(model):
        batch, targets = model.transform(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
        features = _features(model, batch.tensors)
        cls_logits = model.head(features)["cls_logits"]  # [N, A, num_classes]
    anchors = model.anchor_generator(batch, features)
    matched, cls_targets = [], []
    for target, anchors_in_image in zip(targets, anchors):
        if target["boxes"].numel() == 0:
            m = torch.full((anchors_in_image.shape[0],), -1, dtype=torch.int64, device=anchors_in_image.device)
        else:
            m = model.proposal_matcher(box_iou(target["boxes"], anchors_in_image))
        classes = torch.zeros_like(m)
        classes[m >= 0] = target["labels"][m[m >= 0]]
        matched.append(m)
        cls_targets.append(classes)
    cls_targets_t = torch.stack(cls_targets)
    loss = F.cross_entropy(cls_logits.flatten(0, 1), cls_targets_t.flatten(), reduction="none").view(cls_targets_t.shape)
    # compute_loss's mining, step by step: rank the boxes by loss (positives last), keep the first ratio · P
    positive = cls_targets_t > 0
    num_negative = model.neg_to_pos_ratio * positive.sum(1, keepdim=True)
    negative_loss = loss.clone()
    negative_loss[positive] = -float("inf")
    rank = negative_loss.sort(1, descending=True)[1].sort(1)[1]
    negative = (rank < num_negative) & ~positive
    return [HardNegatives(*fields) for fields in zip(matched, positive.unbind(0), negative.unbind(0), loss.unbind(0))]
