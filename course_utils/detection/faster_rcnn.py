"""Faster R-CNN, built from the course's parts: boxes, anchors, NMS, RoIAlign.

The pipeline, one submodule per stage (the same split and the same attribute names as
torchvision's ``FasterRCNN``, so that each piece can be read, replaced and compared), each
stage's code in its own file of ``course_utils.detection``, as in ``torchvision.models.detection``::

    list of images [3, H_i, W_i]
      │ transform     DetectionTransform (transform.py): normalize, (optional) resize, pad to a multiple of 32
      ▼ batch         ImageBatch (transform.py): tensors [N, 3, H, W], image_sizes [(h_i, w_i)]
      │ backbone      any nn.Module [N, 3, H, W] -> [N, C, H / s, W / s], with `out_channels`
      │               (default SmallBackbone, backbone.py)
      ▼ feature map   [N, C, h, w]
      │ rpn           RegionProposalNetwork (rpn.py): RPNHead + anchors + decode + top-k + NMS
      ▼ proposals     list of Tensor[P_i, 4], xyxy in the (resized) image
      │ roi_heads     RoIHeads (roi_heads.py): RoIAlignPooler 7x7 -> TwoMLPHead -> FastRCNNPredictor -> postprocess
      ▼ detections    list of {"boxes", "labels", "scores"}
      │ transform.postprocess (transform.py): boxes back to the original image sizes
      ▼

The helpers the RPN and the RoI heads share (clipping, small-box removal, the sampler of
training examples) are in ``_utils.py``; this module assembles the stages into ``FasterRCNN``.

In training mode the model takes targets and returns its four losses instead:
``loss_classifier`` and ``loss_box_reg`` (the box head), ``loss_objectness`` and
``loss_rpn_box_reg`` (the RPN), each multiplied by its weight in ``loss_weights``.

Eval-mode outputs equal those of torchvision's ``FasterRCNN`` holding the same weights
(``to_torchvision`` builds it); the modules follow ``torchvision.models.detection``
(``transform.py``, ``rpn.py``, ``roi_heads.py``, ``poolers.py``, ``_utils.py``) step by step,
including the order of anchors and predictions, the ``>=`` / ``>`` of each threshold and the
random sampling of training examples (same calls to the random generator, in the same order).
"""

from __future__ import annotations

import copy
from numbers import Integral
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..validation import check_non_negative_number, check_positive_int
from ._utils import _check_sizes, check_images, check_targets, match_device_and_mode
from .backbone import SmallBackbone
from .roi_heads import FastRCNNPredictor, RoIAlignPooler, RoIHeads, TwoMLPHead
from .rpn import RegionProposalNetwork, RPNHead
from .transform import IMAGENET_MEAN, IMAGENET_STD, DetectionTransform, to_torchvision_transform

__all__ = ["FasterRCNN", "to_torchvision", "torchvision_settings", "LOSS_NAMES"]

LOSS_NAMES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")


class FasterRCNN(nn.Module):
    """The course's Faster R-CNN: ``transform``, ``backbone``, ``rpn``, ``roi_heads`` (see the module docstring).

    Input and output as torchvision's ``FasterRCNN``:

    * eval: ``model(images)`` with images a list of float Tensor[3, H_i, W_i] in [0, 1] (sizes may
      differ; a Tensor[N, 3, H, W] is taken as N images) -> one dict per image: ``boxes``
      (Tensor[K, 4] xyxy in the image's pixels), ``labels`` (int64 [K], 1 ... num_classes - 1),
      ``scores`` (Tensor[K], decreasing);
    * training: ``model(images, targets)`` with one dict per image, ``boxes`` (float Tensor[G, 4],
      x2 > x1, y2 > y1; G may be 0) and ``labels`` (int64 [G] in [1, num_classes)) -> a dict of the
      four losses, each multiplied by its weight (``loss_weights``, default 1 each), so that
      ``sum(losses.values())`` (what ``training.fit(model, loader, None, ...)`` minimizes) is the
      weighted total.

    Args (names as torchvision's; defaults sized for the course's 128x128 scenes):
        backbone: nn.Module [N, 3, H, W] -> Tensor[N, C, h, w] with an ``out_channels`` attribute
            (default ``SmallBackbone()``: 32 channels, stride 8).
        num_classes: number of classes including the background (>= 2).
        min_size, max_size: torchvision's resize; ``None`` (default): images keep their size.
        image_mean, image_std: per-channel normalization (torchvision's ImageNet values).
        anchor_sizes, aspect_ratios: anchors per cell = len(sizes) * len(ratios), ratio = h / w.
        rpn_*: see ``RegionProposalNetwork``; box_*: see ``RoIHeads``.
        representation_size: width of the two FC layers of the box head.
        loss_weights: ``{loss name: weight >= 0}`` for any of ``loss_names``; missing ones are 1.
    """

    loss_names: tuple[str, ...] = LOSS_NAMES  # in torchvision's order (MaskRCNN adds loss_mask)

    def __init__(
        self,
        backbone: nn.Module | None = None,
        num_classes: int | None = None,
        *,
        min_size: int | Sequence[int] | None = None,
        max_size: int | None = None,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        size_divisible: int = 32,
        anchor_sizes: Sequence[float] = (16, 32, 48),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        rpn_pre_nms_top_n_train: int = 600,
        rpn_pre_nms_top_n_test: int = 300,
        rpn_post_nms_top_n_train: int = 200,
        rpn_post_nms_top_n_test: int = 100,
        rpn_nms_thresh: float = 0.7,
        rpn_fg_iou_thresh: float = 0.7,
        rpn_bg_iou_thresh: float = 0.3,
        rpn_batch_size_per_image: int = 64,
        rpn_positive_fraction: float = 0.5,
        rpn_score_thresh: float = 0.0,
        box_roi_output_size: int = 7,
        box_roi_sampling_ratio: int = 2,
        representation_size: int = 128,
        box_score_thresh: float = 0.01,
        box_nms_thresh: float = 0.5,
        box_detections_per_img: int = 100,
        box_fg_iou_thresh: float = 0.5,
        box_bg_iou_thresh: float = 0.5,
        box_batch_size_per_image: int = 64,
        box_positive_fraction: float = 0.25,
        bbox_reg_weights: tuple[float, float, float, float] | None = None,
        loss_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        if num_classes is None:
            raise TypeError(
                "num_classes is required: the number of classes including the background, e.g. 6 for the 5 shapes"
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, Integral):
            raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (the background and at least one class), got {num_classes}")
        self.num_classes = int(num_classes)
        if backbone is None:
            backbone = SmallBackbone()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be a torch.nn.Module, got {type(backbone).__name__}")
        if not hasattr(backbone, "out_channels"):
            raise ValueError("backbone must have an out_channels attribute: the number of channels of its feature map")
        channels = check_positive_int(backbone.out_channels, "backbone.out_channels")
        self.loss_weights = _check_loss_weights(loss_weights, self.loss_names)

        self.transform = DetectionTransform(min_size, max_size, image_mean, image_std, size_divisible)
        self.backbone = backbone
        rpn_head = RPNHead(
            channels,
            len(_check_sizes(anchor_sizes, "anchor_sizes")) * len(_check_sizes(aspect_ratios, "aspect_ratios")),
        )
        self.rpn = RegionProposalNetwork(
            anchor_sizes,
            aspect_ratios,
            rpn_head,
            rpn_fg_iou_thresh,
            rpn_bg_iou_thresh,
            rpn_batch_size_per_image,
            rpn_positive_fraction,
            {"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
            {"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
            rpn_nms_thresh,
            rpn_score_thresh,
        )
        pooler = RoIAlignPooler(box_roi_output_size, box_roi_sampling_ratio)
        self.roi_heads = RoIHeads(
            pooler,
            TwoMLPHead(channels * box_roi_output_size**2, representation_size),
            FastRCNNPredictor(representation_size, self.num_classes),
            box_fg_iou_thresh,
            box_bg_iou_thresh,
            box_batch_size_per_image,
            box_positive_fraction,
            bbox_reg_weights,
            box_score_thresh,
            box_nms_thresh,
            box_detections_per_img,
        )

    def forward(
        self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]] | None = None
    ) -> list[dict[str, Tensor]] | dict[str, Tensor]:
        """Detections (eval mode) or the weighted losses (training mode); see the class docstring."""
        images = check_images(images, len(self.transform.image_mean))
        if self.training and targets is None:
            raise ValueError("targets is required in training mode: one dict with 'boxes' and 'labels' per image")
        if targets is not None:
            targets = self.check_targets(targets, images)
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, targets = self.transform(images, targets)
        feature = self.backbone(batch.tensors)
        if not isinstance(feature, Tensor) or feature.ndim != 4:
            raise TypeError(
                f"the backbone must return one feature map Tensor[N, C, h, w], got {type(feature).__name__}"
            )
        proposals, rpn_losses = self.rpn(batch, feature, targets)
        detections, roi_losses = self.roi_heads(feature, proposals, batch.image_sizes, targets)
        if self.training:
            losses = {**roi_losses, **rpn_losses}  # torchvision's order
            return {name: loss * self.loss_weights[name] for name, loss in losses.items()}
        return self.postprocess(detections, batch.image_sizes, original_sizes)

    def check_targets(self, targets: object, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        """The training targets checked (``_utils.check_targets``): one dict with ``boxes`` and ``labels`` per image."""
        return check_targets(targets, len(images), self.num_classes)

    def postprocess(
        self,
        detections: list[dict[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """The detections mapped back to the original image sizes (``DetectionTransform.postprocess``)."""
        return self.transform.postprocess(detections, image_sizes, original_sizes)


def _check_loss_weights(loss_weights: Mapping[str, float] | None, names: Sequence[str]) -> dict[str, float]:
    weights = dict.fromkeys(names, 1.0)
    if loss_weights is None:
        return weights
    if not isinstance(loss_weights, Mapping):
        raise TypeError(f"loss_weights must be a dict {{loss name: weight}}, got {type(loss_weights).__name__}")
    for name, weight in loss_weights.items():
        if name not in weights:
            raise ValueError(f"loss_weights has an unknown loss {name!r}; the losses are {', '.join(names)}")
        weights[name] = check_non_negative_number(weight, f"loss_weights[{name!r}]")
    return weights


# ---------------------------------------------------------------- torchvision's twin


def to_torchvision(model: FasterRCNN) -> nn.Module:
    """torchvision's ``FasterRCNN`` with the settings and (copied) weights of ``model``, in the same mode.

    The backbone is deep-copied; the RPN head, box head and predictor are torchvision's
    ``RPNHead``, ``TwoMLPHead`` and ``FastRCNNPredictor`` loaded with ``model``'s weights
    (``torchvision_settings``); the transform is ``to_torchvision_transform(model.transform)``.
    Note: torchvision's ``MultiScaleRoIAlign`` infers its spatial scale at its first call and
    keeps it; the course's infers it at every call (same rule), so the two differ only if later
    batches would give another scale.
    """
    if not isinstance(model, FasterRCNN):
        raise TypeError(f"model must be a course_utils FasterRCNN, got {type(model).__name__}")
    from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN

    tv = TorchvisionFasterRCNN(copy.deepcopy(model.backbone), num_classes=None, **torchvision_settings(model))
    tv.transform = to_torchvision_transform(model.transform)  # replaces the one the constructor built
    return match_device_and_mode(tv, model)


def torchvision_settings(model: FasterRCNN) -> dict[str, object]:
    """The keyword arguments of torchvision's ``FasterRCNN`` (and ``MaskRCNN``) that rebuild ``model``'s
    anchors, RPN and box heads: settings, and torchvision's modules loaded with ``model``'s weights."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor as TVPredictor
    from torchvision.models.detection.faster_rcnn import TwoMLPHead as TVTwoMLPHead
    from torchvision.models.detection.rpn import RPNHead as TVRPNHead
    from torchvision.ops import MultiScaleRoIAlign

    rpn, heads = model.rpn, model.roi_heads
    if (
        not isinstance(rpn.head, RPNHead)
        or not isinstance(heads.box_head, TwoMLPHead)
        or not isinstance(heads.box_predictor, FastRCNNPredictor)
    ):
        raise TypeError(
            "to_torchvision needs the course's RPNHead, TwoMLPHead and FastRCNNPredictor (torchvision has twins of those)"
        )
    if not isinstance(heads.box_roi_pool, RoIAlignPooler) or heads.box_roi_pool.spatial_scale is not None:
        raise ValueError(
            "to_torchvision needs an RoIAlignPooler that infers its spatial scale, as torchvision's MultiScaleRoIAlign does"
        )
    channels = rpn.head.conv.in_channels

    rpn_head = TVRPNHead(channels, rpn.num_anchors_per_location)
    head_state = rpn.head.state_dict()
    rpn_head.load_state_dict(
        {
            "conv.0.0.weight": head_state["conv.weight"],
            "conv.0.0.bias": head_state["conv.bias"],
            **{k: v for k, v in head_state.items() if not k.startswith("conv.")},
        }
    )
    box_head = TVTwoMLPHead(heads.box_head.fc6.in_features, heads.box_head.fc6.out_features)
    box_head.load_state_dict(heads.box_head.state_dict())
    predictor = TVPredictor(heads.box_predictor.cls_score.in_features, heads.box_predictor.cls_score.out_features)
    predictor.load_state_dict(heads.box_predictor.state_dict())
    pooler = heads.box_roi_pool
    return dict(
        rpn_anchor_generator=AnchorGenerator((tuple(rpn.sizes),), (tuple(rpn.aspect_ratios),)),
        rpn_head=rpn_head,
        rpn_pre_nms_top_n_train=rpn._pre_nms_top_n["training"],
        rpn_pre_nms_top_n_test=rpn._pre_nms_top_n["testing"],
        rpn_post_nms_top_n_train=rpn._post_nms_top_n["training"],
        rpn_post_nms_top_n_test=rpn._post_nms_top_n["testing"],
        rpn_nms_thresh=rpn.nms_thresh,
        rpn_fg_iou_thresh=rpn.fg_iou_thresh,
        rpn_bg_iou_thresh=rpn.bg_iou_thresh,
        rpn_batch_size_per_image=rpn.batch_size_per_image,
        rpn_positive_fraction=rpn.positive_fraction,
        rpn_score_thresh=rpn.score_thresh,
        box_roi_pool=MultiScaleRoIAlign(
            ["0"], output_size=list(pooler.output_size), sampling_ratio=pooler.sampling_ratio
        ),
        box_head=box_head,
        box_predictor=predictor,
        box_score_thresh=heads.score_thresh,
        box_nms_thresh=heads.nms_thresh,
        box_detections_per_img=heads.detections_per_img,
        box_fg_iou_thresh=heads.fg_iou_thresh,
        box_bg_iou_thresh=heads.bg_iou_thresh,
        box_batch_size_per_image=heads.batch_size_per_image,
        box_positive_fraction=heads.positive_fraction,
        bbox_reg_weights=heads.bbox_reg_weights,
    )
