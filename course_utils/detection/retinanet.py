"""RetinaNet, built from the course's parts: anchors on a small feature pyramid, two dense subnets, the focal loss.

The pipeline (torchvision's ``RetinaNet``, with the same attribute names)::

    list of images [3, H_i, W_i]
      │ transform     DetectionTransform: normalize, (optional) resize, pad to a multiple of 32
      │ backbone      FPNBackbone: [N, 3, H, W] -> {"0": [N, C, H/8, W/8], "1": [N, C, H/16, W/16]}
      │ head          RetinaNetHead, run on every level with the same weights:
      │                 classification_head: 4 × (conv 3x3 [+ GroupNorm] + ReLU), conv -> A·K logits per position
      │                 regression_head:     4 × (conv 3x3 [+ GroupNorm] + ReLU), conv -> A·4 deltas per position
      │ anchors       generate_anchors per level (A = sizes × ratios per position), in the order of the head
      ▼ detections    per level: sigmoid scores > score_thresh, top-k candidates, decode, clip;
                      then batched NMS over the levels, the detections_per_img best

Every (anchor, class) pair is an independent binary classifier: no softmax, no background column
(the channel of label 0 exists, as in torchvision, and is only ever trained as negative). In
training each anchor is matched to an object (IoU >= ``fg_iou_thresh``, or the object's best
anchor), background (< ``bg_iou_thresh``) or ignored (in between). ``classification``: the
focal loss summed over the anchors that are not ignored, divided by the number of matched
anchors; ``bbox_regression``: L1 of the matched anchors' deltas, divided by the same number;
both averaged over the images (torchvision's keys and normalization).

Eval-mode outputs equal those of torchvision's ``RetinaNet`` holding the same weights
(``to_torchvision``); the classification bias starts at ``-log((1 - π) / π)`` so that every
anchor first predicts probability π = 0.01 for every class.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..anchors import BETWEEN_THRESHOLDS, decode_boxes, encode_boxes, generate_anchors, match_anchors
from ..boxes import batched_nms, box_iou
from ..training import eval_mode
from ..validation import check_non_negative_number, check_positive_int, check_probability
from ._utils import _check_sizes, check_images, check_targets, clip_boxes_to_image, match_device_and_mode
from .ops import sigmoid_focal_loss
from .ssd import SSDBackbone
from .transform import IMAGENET_MEAN, IMAGENET_STD, DetectionTransform, to_torchvision_transform

__all__ = ["FPNBackbone", "RetinaNetHead", "RetinaNet", "AnchorAssignment", "assign_anchors", "to_torchvision",
           "RETINANET_LOSS_NAMES", "DEFAULT_ANCHOR_SIZES"]  # fmt: skip

RETINANET_LOSS_NAMES = ("classification", "bbox_regression")  # torchvision's keys, in its order
# three scales per octave (× 2^0, 2^(1/3), 2^(2/3)) at stride 8 and 16: 16-51 px, the scenes' 16-48 px objects
DEFAULT_ANCHOR_SIZES = tuple(tuple(base * 2 ** (k / 3) for k in range(3)) for base in (16, 32))
HEAD_CONVS = 4  # conv layers of each subnet (torchvision's, fixed)


class FPNBackbone(nn.Module):
    """A small feature pyramid: ``SSDBackbone``'s stages (strides 8, 16, ...) merged top-down.

    Each stage's map goes through a 1x1 "lateral" conv to ``width`` channels; from the coarsest up,
    each level adds the nearest-upsampled level above it, then a 3x3 conv smooths it (torchvision's
    ``FeaturePyramidNetwork``). [N, 3, H, W] -> ``OrderedDict`` ``{"0": [N, width, H/8, W/8],
    "1": [N, width, H/16, W/16], ...}``; every level has the same ``out_channels`` (= ``width``),
    as a head shared by the levels needs. ``strides``: ``[8, 16, ...]``.
    """

    def __init__(self, width: int = 32, levels: int = 2, in_channels: int = 3) -> None:
        super().__init__()
        self.body = SSDBackbone(width, levels, in_channels)
        width = self.body.out_channels[0]  # checked by SSDBackbone
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in self.body.out_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in self.body.out_channels)
        self.out_channels = width
        self.strides = list(self.body.strides)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        stages = list(self.body(x).values())
        merged = self.lateral[-1](stages[-1])
        outputs = [self.smooth[-1](merged)]
        for k in range(len(stages) - 2, -1, -1):
            lateral = self.lateral[k](stages[k])
            merged = lateral + F.interpolate(merged, size=lateral.shape[-2:], mode="nearest")
            outputs.insert(0, self.smooth[k](merged))
        return OrderedDict((str(k), feature) for k, feature in enumerate(outputs))


def _conv_tower(channels: int, norm_groups: int | None) -> nn.Sequential:
    """``HEAD_CONVS`` × (conv 3x3 [+ GroupNorm] + ReLU), laid out as torchvision's ``Conv2dNormActivation``s;
    conv weights ~ N(0, 0.01), biases 0 (the convs have no bias when a GroupNorm follows)."""
    blocks = []
    for _ in range(HEAD_CONVS):
        conv = nn.Conv2d(channels, channels, 3, padding=1, bias=norm_groups is None)
        nn.init.normal_(conv.weight, std=0.01)
        if conv.bias is not None:
            nn.init.constant_(conv.bias, 0)
        norm = [] if norm_groups is None else [nn.GroupNorm(norm_groups, channels)]
        blocks.append(nn.Sequential(conv, *norm, nn.ReLU(inplace=True)))
    return nn.Sequential(*blocks)


def _per_anchor(output: Tensor, values: int) -> Tensor:
    """[N, A · values, h, w] -> [N, h · w · A, values]: ordered by position, then anchor, as the anchors."""
    n, _, h, w = output.shape
    return output.view(n, -1, values, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, values)


class RetinaNetClassificationHead(nn.Module):
    """The classification subnet: a conv tower, then a 3x3 conv giving ``num_anchors × num_classes`` logits per position.

    The last conv's bias is ``-log((1 - π) / π)``: every anchor starts at probability π for every class.
    forward: list of level features [N, C, h_l, w_l] -> logits Tensor[N, Σ h_l·w_l·A, num_classes].
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, prior_probability: float = 0.01,
                 norm_groups: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.conv = _conv_tower(in_channels, norm_groups)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, 3, padding=1)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability))
        self.num_classes, self.num_anchors = num_classes, num_anchors

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return torch.cat([_per_anchor(self.cls_logits(self.conv(f)), self.num_classes) for f in features], dim=1)


class RetinaNetRegressionHead(nn.Module):
    """The box subnet: a conv tower, then a 3x3 conv giving 4 deltas (dx, dy, dw, dh) per anchor.

    forward: list of level features [N, C, h_l, w_l] -> deltas Tensor[N, Σ h_l·w_l·A, 4].
    """

    def __init__(self, in_channels: int, num_anchors: int, norm_groups: int | None = None) -> None:
        super().__init__()
        self.conv = _conv_tower(in_channels, norm_groups)
        self.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1)
        nn.init.normal_(self.bbox_reg.weight, std=0.01)
        nn.init.zeros_(self.bbox_reg.bias)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return torch.cat([_per_anchor(self.bbox_reg(self.conv(f)), 4) for f in features], dim=1)


class RetinaNetHead(nn.Module):
    """Both subnets (torchvision's ``RetinaNetHead``): features -> ``{"cls_logits": [N, P, K], "bbox_regression": [N, P, 4]}``."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, prior_probability: float = 0.01,
                 norm_groups: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.classification_head = RetinaNetClassificationHead(
            in_channels, num_anchors, num_classes, prior_probability, norm_groups
        )
        self.regression_head = RetinaNetRegressionHead(in_channels, num_anchors, norm_groups)

    def forward(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        return {"cls_logits": self.classification_head(features), "bbox_regression": self.regression_head(features)}


def _check_anchor_sizes(anchor_sizes: object) -> tuple[tuple[float, ...], ...]:
    if isinstance(anchor_sizes, (str, bytes)) or not isinstance(anchor_sizes, Sequence) or not anchor_sizes:
        raise TypeError(f"anchor_sizes must be a non-empty tuple of size tuples, one per pyramid level, got {anchor_sizes!r}")
    sizes = tuple(_check_sizes(level, f"anchor_sizes[{i}]") for i, level in enumerate(anchor_sizes))
    if len({len(level) for level in sizes}) > 1:
        raise ValueError(
            f"every level needs the same number of anchor sizes (the head is shared), got {[len(s) for s in sizes]}"
        )
    return sizes


def _check_norm_groups(norm_groups: object, channels: int) -> int | None:
    if norm_groups is None:
        return None
    groups = check_positive_int(norm_groups, "norm_groups")
    if channels % groups:
        raise ValueError(f"norm_groups ({groups}) must divide the backbone's out_channels ({channels})")
    return groups


class RetinaNet(nn.Module):
    """The course's RetinaNet: ``transform``, ``backbone``, ``head`` and the anchors (see the module docstring).

    Input and output as torchvision's ``RetinaNet``: ``model(images)`` in eval mode -> one dict per
    image (``boxes`` xyxy, ``labels`` int64, ``scores`` decreasing); ``model(images, targets)`` in
    training mode -> ``{"classification", "bbox_regression"}``.

    Args (names as torchvision's; defaults sized for the course's 128x128 scenes):
        num_classes: number of classes including the background label 0 (>= 2).
        backbone: nn.Module [N, 3, H, W] -> an ``OrderedDict`` of one map per anchor level (or one
            Tensor), all with ``out_channels`` channels (default ``FPNBackbone()``: 32, strides 8 and 16).
        anchor_sizes: one tuple of sizes per level (default 16·2^(k/3) and 32·2^(k/3), k = 0, 1, 2).
        aspect_ratios: height / width ratios, the same on every level: A = sizes × ratios per position.
        norm_groups: GroupNorm groups in the head's towers (default 8), or None for torchvision's
            default head without normalization (it trains much more slowly from scratch).
        prior_probability: π of the classification bias init.
        focal_alpha, focal_gamma: the focal loss's alpha (None: no weighting) and gamma;
            ``focal_gamma=0, focal_alpha=None`` is plain binary cross-entropy.
        score_thresh, topk_candidates: per level, candidates scoring ``> score_thresh``, at most
            ``topk_candidates`` of them, go on to NMS (``nms_thresh``), of which ``detections_per_img`` are kept.
        fg_iou_thresh, bg_iou_thresh: the anchors' matching thresholds.
        min_size, max_size, image_mean, image_std, size_divisible: see ``DetectionTransform``.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: nn.Module | None = None,
        *,
        anchor_sizes: Sequence[Sequence[float]] = DEFAULT_ANCHOR_SIZES,
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        norm_groups: int | None = 8,
        prior_probability: float = 0.01,
        focal_alpha: float | None = 0.25,
        focal_gamma: float = 2.0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.4,
        topk_candidates: int = 1000,
        min_size: int | Sequence[int] | None = None,
        max_size: int | None = None,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        size_divisible: int = 32,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, Integral):
            raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (the background and at least one class), got {num_classes}")
        self.num_classes = int(num_classes)
        backbone = FPNBackbone() if backbone is None else backbone
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be a torch.nn.Module, got {type(backbone).__name__}")
        channels = check_positive_int(getattr(backbone, "out_channels", None), "backbone.out_channels")
        self.anchor_sizes = _check_anchor_sizes(anchor_sizes)
        self.aspect_ratios = _check_sizes(aspect_ratios, "aspect_ratios")
        self.norm_groups = _check_norm_groups(norm_groups, channels)
        prior_probability = check_probability(prior_probability, "prior_probability")
        if not 0 < prior_probability < 1:
            raise ValueError(f"prior_probability must be strictly between 0 and 1, got {prior_probability}")
        self.focal_alpha = None if focal_alpha is None else check_probability(focal_alpha, "focal_alpha")
        self.focal_gamma = check_non_negative_number(focal_gamma, "focal_gamma")
        self.score_thresh = check_probability(score_thresh, "score_thresh")
        self.nms_thresh = check_probability(nms_thresh, "nms_thresh")
        self.detections_per_img = check_positive_int(detections_per_img, "detections_per_img")
        self.topk_candidates = check_positive_int(topk_candidates, "topk_candidates")
        self.fg_iou_thresh = check_probability(fg_iou_thresh, "fg_iou_thresh")
        self.bg_iou_thresh = check_probability(bg_iou_thresh, "bg_iou_thresh")
        if self.bg_iou_thresh > self.fg_iou_thresh:
            raise ValueError(f"bg_iou_thresh ({bg_iou_thresh}) must be <= fg_iou_thresh ({fg_iou_thresh})")

        self.transform = DetectionTransform(min_size, max_size, image_mean, image_std, size_divisible)
        self.backbone = backbone
        self.head = RetinaNetHead(channels, self.num_anchors_per_location, self.num_classes, prior_probability,
                                  self.norm_groups)  # fmt: skip

    @property
    def num_anchors_per_location(self) -> int:
        return len(self.anchor_sizes[0]) * len(self.aspect_ratios)

    def features(self, tensors: Tensor) -> list[Tensor]:
        """The backbone's maps for a padded batch [N, 3, H, W], one per anchor level."""
        features = self.backbone(tensors)
        if isinstance(features, Tensor):
            features = [features]
        elif isinstance(features, Mapping):
            features = list(features.values())
        else:
            raise TypeError(f"the backbone must return a Tensor or an OrderedDict of feature maps, got {type(features).__name__}")
        if len(features) != len(self.anchor_sizes):
            raise ValueError(
                f"the backbone returned {len(features)} feature maps but anchor_sizes has {len(self.anchor_sizes)} levels"
            )
        return features

    def anchors(self, batch_shape: Sequence[int], features: Sequence[Tensor]) -> list[Tensor]:
        """The anchors of each level for a padded batch ``(H, W)``: list of Tensor[h_l · w_l · A, 4], in the head's order."""
        return [
            generate_anchors(tuple(batch_shape), tuple(f.shape[-2:]), sizes, self.aspect_ratios).to(f.device, f.dtype)
            for f, sizes in zip(features, self.anchor_sizes)
        ]

    def match(self, anchors: Tensor, targets: Sequence[Mapping[str, Tensor]]) -> list[Tensor]:
        """Per image: int64 Tensor[P], each anchor's object index, -1 background or -2 ignored (``anchors.match_anchors``)."""
        matched = []
        for target in targets:
            if target["boxes"].numel() == 0:
                matched.append(torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device))
            else:
                iou = box_iou(target["boxes"], anchors)
                matched.append(match_anchors(iou, self.fg_iou_thresh, self.bg_iou_thresh, allow_low_quality_matches=True))
        return matched

    def compute_loss(self, targets: Sequence[Mapping[str, Tensor]], head_outputs: Mapping[str, Tensor],
                     anchors: Tensor) -> dict[str, Tensor]:  # fmt: skip
        """The two losses (see the module docstring); ``anchors`` Tensor[P, 4], the same for every image."""
        classification, regression = [], []
        alpha = -1.0 if self.focal_alpha is None else self.focal_alpha  # -1: no weighting (torchvision's convention)
        for target, logits, deltas, matched in zip(targets, head_outputs["cls_logits"], head_outputs["bbox_regression"],
                                                   self.match(anchors, targets)):  # fmt: skip
            foreground = torch.where(matched >= 0)[0]
            num_foreground = max(1, foreground.numel())
            valid = matched != BETWEEN_THRESHOLDS
            one_hot = _one_hot_targets(logits, matched, target["labels"])
            loss = sigmoid_focal_loss(logits[valid], one_hot[valid], alpha, self.focal_gamma, reduction="sum")
            classification.append(loss / num_foreground)
            box_targets = encode_boxes(target["boxes"][matched[foreground]], anchors[foreground])
            regression.append(F.l1_loss(deltas[foreground], box_targets, reduction="sum") / num_foreground)
        return {"classification": sum(classification) / len(targets), "bbox_regression": sum(regression) / len(targets)}

    def postprocess_detections(self, head_outputs: Mapping[str, list[Tensor]], anchors: Sequence[Tensor],
                               image_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:  # fmt: skip
        """Per image: per level, scores > score_thresh, top-k, decode and clip; batched NMS over the levels."""
        detections = []
        for index, size in enumerate(image_sizes):
            boxes_all, scores_all, labels_all = [], [], []
            for logits, deltas, level_anchors in zip(head_outputs["cls_logits"], head_outputs["bbox_regression"], anchors):
                scores = torch.sigmoid(logits[index]).flatten()  # (anchor, class) pairs, class fastest
                candidates = torch.where(scores > self.score_thresh)[0]
                scores, order = scores[candidates].topk(min(self.topk_candidates, candidates.numel()))
                candidates = candidates[order]
                anchor_index = torch.div(candidates, self.num_classes, rounding_mode="floor")
                boxes = decode_boxes(deltas[index][anchor_index], level_anchors[anchor_index])
                boxes_all.append(clip_boxes_to_image(boxes, size))
                scores_all.append(scores)
                labels_all.append(candidates % self.num_classes)
            boxes, scores, labels = torch.cat(boxes_all), torch.cat(scores_all), torch.cat(labels_all)
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            detections.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return detections

    def forward(
        self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]] | None = None
    ) -> list[dict[str, Tensor]] | dict[str, Tensor]:
        """Detections (eval mode) or the two losses (training mode); see the class docstring."""
        images = check_images(images, len(self.transform.image_mean))
        if self.training and targets is None:
            raise ValueError("targets is required in training mode: one dict with 'boxes' and 'labels' per image")
        if targets is not None:
            targets = check_targets(targets, len(images), self.num_classes)
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, targets = self.transform(images, targets)
        features = self.features(batch.tensors)
        head_outputs = self.head(features)
        anchors = self.anchors(batch.tensors.shape[-2:], features)
        if self.training:
            return self.compute_loss(targets, head_outputs, torch.cat(anchors))
        counts = [len(a) for a in anchors]
        per_level = {key: list(value.split(counts, dim=1)) for key, value in head_outputs.items()}
        detections = self.postprocess_detections(per_level, anchors, batch.image_sizes)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)


def _one_hot_targets(logits: Tensor, matched: Tensor, labels: Tensor) -> Tensor:
    """[P, K] zeros with a 1 at (anchor, its object's label) for every matched anchor."""
    one_hot = torch.zeros_like(logits)
    foreground = matched >= 0
    one_hot[foreground, labels[matched[foreground]]] = 1.0
    return one_hot


class AnchorAssignment(NamedTuple):
    """What RetinaNet's classification loss sees on a batch (``assign_anchors``).

    ``matched``: int64 [N, P], each anchor's object index, -1 background, -2 ignored;
    ``cls_logits``: [N, P, K] the model's logits; ``cls_targets``: [N, P, K] 0/1, a 1 at each matched
    anchor's label. P = every anchor of every level.
    """

    matched: Tensor
    cls_logits: Tensor
    cls_targets: Tensor

    def fraction(self, kind: str) -> float:
        """The fraction of anchors that are ``"positive"``, ``"ignored"`` or ``"background"``."""
        masks = {"positive": self.matched >= 0, "ignored": self.matched == BETWEEN_THRESHOLDS, "background": self.matched == -1}
        if kind not in masks:
            raise ValueError(f"kind must be one of {', '.join(masks)}, got {kind!r}")
        return float(masks[kind].float().mean())


def assign_anchors(model: RetinaNet, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]]) -> AnchorAssignment:
    """Match every anchor of ``model`` on ``images`` to ``targets`` as its loss does, with the model's
    logits (eval mode, no gradients; every module's mode is restored)."""
    if not isinstance(model, RetinaNet):
        raise TypeError(f"model must be a course_utils RetinaNet, got {type(model).__name__}")
    images = check_images(images, len(model.transform.image_mean))
    targets = check_targets(targets, len(images), model.num_classes)
    with eval_mode(model), torch.no_grad():
        batch, targets = model.transform(images, targets)
        features = model.features(batch.tensors)
        logits = model.head(features)["cls_logits"]
        anchors = torch.cat(model.anchors(batch.tensors.shape[-2:], features))
    matched = model.match(anchors, targets)
    cls_targets = torch.stack([_one_hot_targets(lg, m, t["labels"]) for lg, m, t in zip(logits, matched, targets)])
    return AnchorAssignment(torch.stack(matched), logits, cls_targets)


# ---------------------------------------------------------------- torchvision's twin


def to_torchvision(model: RetinaNet) -> nn.Module:
    """torchvision's ``RetinaNet`` with the settings and (copied) weights of ``model``, in the same mode.

    The backbone is deep-copied; the head is torchvision's ``RetinaNetHead`` (with
    ``GroupNorm(norm_groups)`` layers when the course's has them) loaded with ``model``'s weights;
    the transform is ``to_torchvision_transform(model.transform)``. torchvision's losses are its
    focal loss with alpha 0.25, gamma 2: only eval mode is compared.
    """
    if not isinstance(model, RetinaNet):
        raise TypeError(f"model must be a course_utils RetinaNet, got {type(model).__name__}")
    from functools import partial

    from torchvision.models.detection import RetinaNet as TorchvisionRetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.retinanet import RetinaNetHead as TVRetinaNetHead

    norm = None if model.norm_groups is None else partial(nn.GroupNorm, model.norm_groups)
    channels = model.head.classification_head.cls_logits.in_channels
    head = TVRetinaNetHead(channels, model.num_anchors_per_location, model.num_classes, norm_layer=norm)
    head.load_state_dict(model.head.state_dict())
    tv = TorchvisionRetinaNet(
        copy.deepcopy(model.backbone),
        model.num_classes,
        anchor_generator=AnchorGenerator(model.anchor_sizes, (model.aspect_ratios,) * len(model.anchor_sizes)),
        head=head,
        score_thresh=model.score_thresh,
        nms_thresh=model.nms_thresh,
        detections_per_img=model.detections_per_img,
        fg_iou_thresh=model.fg_iou_thresh,
        bg_iou_thresh=model.bg_iou_thresh,
        topk_candidates=model.topk_candidates,
    )
    tv.transform = to_torchvision_transform(model.transform)  # replaces the one the constructor built
    return match_device_and_mode(tv, model)
