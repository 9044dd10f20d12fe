"""Faster R-CNN, built from the course's parts: boxes, anchors, NMS, RoIAlign.

The pipeline, one module per stage (the same split and the same attribute names as
torchvision's ``FasterRCNN``, so that each piece can be read, replaced and compared)::

    list of images [3, H_i, W_i]
      │ transform     DetectionTransform: normalize, (optional) resize, pad to a multiple of 32
      ▼ batch         ImageBatch: tensors [N, 3, H, W], image_sizes [(h_i, w_i)]
      │ backbone      any nn.Module [N, 3, H, W] -> [N, C, H / s, W / s], with `out_channels`
      ▼ feature map   [N, C, h, w]
      │ rpn           RegionProposalNetwork: RPNHead + anchors + decode + top-k + NMS
      ▼ proposals     list of Tensor[P_i, 4], xyxy in the (resized) image
      │ roi_heads     RoIHeads: RoIAlign 7x7 -> TwoMLPHead -> FastRCNNPredictor -> postprocess
      ▼ detections    list of {"boxes", "labels", "scores"}
      │ transform.postprocess: boxes back to the original image sizes
      ▼

In training mode the model takes targets and returns its four losses instead:
``loss_classifier`` and ``loss_box_reg`` (the box head), ``loss_objectness`` and
``loss_rpn_box_reg`` (the RPN), each multiplied by its weight in ``loss_weights``.

Eval-mode outputs equal those of torchvision's ``FasterRCNN`` holding the same weights
(``to_torchvision`` builds it); the code below follows ``torchvision.models.detection``
(``transform.py``, ``rpn.py``, ``roi_heads.py``, ``poolers.py``, ``_utils.py``) step by step,
including the order of anchors and predictions, the ``>=`` / ``>`` of each threshold and the
random sampling of training examples (same calls to the random generator, in the same order).
"""

from __future__ import annotations

import copy
import math
from numbers import Integral, Real
from typing import Any, Mapping, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..anchors import (
    BELOW_LOW_THRESHOLD,
    BETWEEN_THRESHOLDS,
    decode_boxes,
    encode_boxes,
    generate_anchors,
    match_anchors,
)
from ..boxes import batched_nms, box_iou, nms
from ..validation import check_non_negative_number, check_positive_int, check_probability
from .ops import roi_align, smooth_l1_loss

__all__ = [
    "FasterRCNN",
    "to_torchvision",
    "ImageBatch",
    "DetectionTransform",
    "SmallBackbone",
    "RPNHead",
    "RegionProposalNetwork",
    "RoIAlignPooler",
    "TwoMLPHead",
    "FastRCNNPredictor",
    "RoIHeads",
    "LOSS_NAMES",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's defaults for its detectors
IMAGENET_STD = (0.229, 0.224, 0.225)
LOSS_NAMES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
RPN_MIN_SIZE = 1e-3  # proposals thinner than this (pixels) are dropped
BOX_MIN_SIZE = 1e-2  # detections thinner than this are dropped


# ---------------------------------------------------------------- small helpers


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp xyxy boxes (Tensor[..., 4]) into an image of ``size = (height, width)``."""
    height, width = size
    boxes_x = boxes[..., 0::2].clamp(min=0, max=width)
    boxes_y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((boxes_x, boxes_y), dim=boxes.dim()).reshape(boxes.shape)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices (Tensor[K] int64) of the boxes whose width and height are both ``>= min_size``."""
    widths, heights = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    return torch.where((widths >= min_size) & (heights >= min_size))[0]


def resize_boxes(boxes: Tensor, original_size: Sequence[int], new_size: Sequence[int]) -> Tensor:
    """Scale xyxy boxes (Tensor[N, 4]) from an image of ``original_size`` (h, w) to ``new_size``."""
    ratio_h, ratio_w = (
        torch.tensor(s, dtype=torch.float32, device=boxes.device)
        / torch.tensor(s_orig, dtype=torch.float32, device=boxes.device)
        for s, s_orig in zip(new_size, original_size)
    )
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=1)


def sample_positive_negative(
    labels: Sequence[Tensor], batch_size_per_image: int, positive_fraction: float
) -> tuple[list[Tensor], list[Tensor]]:
    """Pick a random, balanced subset of training examples in each image.

    ``labels`` holds, per image, ``>= 1`` for a positive, ``0`` for a negative and ``-1`` for an
    example to ignore. At most ``batch_size_per_image * positive_fraction`` positives are drawn,
    negatives fill the rest of ``batch_size_per_image``. Same draws as torchvision's
    ``BalancedPositiveNegativeSampler`` (``randperm`` of the positives, then of the negatives).

    Returns:
        (positive masks, negative masks): two lists of bool Tensor[P_i], one per image.
    """
    positive_masks, negative_masks = [], []
    for labels_in_image in labels:
        positive = torch.where(labels_in_image >= 1)[0]
        negative = torch.where(labels_in_image == 0)[0]
        num_pos = min(positive.numel(), int(batch_size_per_image * positive_fraction))
        num_neg = min(negative.numel(), batch_size_per_image - num_pos)
        chosen_pos = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
        chosen_neg = negative[torch.randperm(negative.numel(), device=negative.device)[:num_neg]]
        pos_mask = torch.zeros_like(labels_in_image, dtype=torch.bool)
        neg_mask = torch.zeros_like(labels_in_image, dtype=torch.bool)
        pos_mask[chosen_pos] = True
        neg_mask[chosen_neg] = True
        positive_masks.append(pos_mask)
        negative_masks.append(neg_mask)
    return positive_masks, negative_masks


def _check_sizes(value: object, name: str) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise TypeError(f"{name} must be a non-empty list or tuple of numbers, got {value!r}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name}[{i}] must be a finite number > 0, got {v!r}")
        out.append(float(v))
    return tuple(out)



def _check_sampling(fg_iou_thresh: object, bg_iou_thresh: object, batch_size_per_image: object, positive_fraction: object) -> tuple[float, float, int, float]:
    """The matching thresholds and sampling settings shared by the RPN and the RoI heads, checked."""
    fg, bg = check_probability(fg_iou_thresh, "fg_iou_thresh"), check_probability(bg_iou_thresh, "bg_iou_thresh")
    if bg > fg:
        raise ValueError(f"bg_iou_thresh ({bg_iou_thresh}) must be <= fg_iou_thresh ({fg_iou_thresh})")
    return fg, bg, check_positive_int(batch_size_per_image, "batch_size_per_image"), check_probability(positive_fraction, "positive_fraction")


# ---------------------------------------------------------------- transform


class ImageBatch(NamedTuple):
    """Images padded into one tensor, with the size of each before padding (torchvision's ``ImageList``).

    ``tensors``: Tensor[N, 3, H, W]; ``image_sizes``: list of N ``(h, w)`` (after any resize).
    """

    tensors: Tensor
    image_sizes: list[tuple[int, int]]


class DetectionTransform(nn.Module):
    """Normalize, optionally resize, and batch images; map detections back (``GeneralizedRCNNTransform``).

    1. ``(image - mean) / std`` per channel.
    2. Resize: none by default (``min_size=None``: each image keeps its size). With ``min_size``
       and ``max_size``, torchvision's rule: scale by ``min(min_size / min(h, w), max_size / max(h, w))``
       (bilinear); in training ``min_size`` may be a tuple and one is drawn at random per image.
       Target boxes are scaled with the image. A scale of exactly 1 leaves the pixels unchanged.
    3. Pad (zeros, bottom and right) to the largest height and width of the batch, rounded up to
       a multiple of ``size_divisible``, so that the backbone's strides divide the batch exactly.

    ``postprocess`` scales the predicted boxes from the resized sizes back to the original ones.
    """

    def __init__(
        self,
        min_size: int | Sequence[int] | None = None,
        max_size: int | None = None,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        size_divisible: int = 32,
    ) -> None:
        super().__init__()
        if (min_size is None) != (max_size is None):
            raise ValueError(
                "min_size and max_size go together: give both (torchvision's resize) or neither (no resize)"
            )
        if min_size is not None:
            if isinstance(min_size, Integral) and not isinstance(min_size, bool):
                min_size = (min_size,)
            if not isinstance(min_size, Sequence) or not min_size:
                raise TypeError(f"min_size must be an int or a non-empty tuple of ints, got {min_size!r}")
            min_size = tuple(check_positive_int(s, f"min_size[{i}]") for i, s in enumerate(min_size))
            max_size = check_positive_int(max_size, "max_size")
        self.min_size = min_size
        self.max_size = max_size
        self.image_mean = [float(m) for m in _check_finite_list(image_mean, "image_mean")]
        self.image_std = [float(s) for s in _check_sizes(image_std, "image_std")]
        if len(self.image_mean) != len(self.image_std):
            raise ValueError(
                f"image_mean and image_std must have the same length, got {len(self.image_mean)} and {len(self.image_std)}"
            )
        self.size_divisible = check_positive_int(size_divisible, "size_divisible")

    def normalize(self, image: Tensor) -> Tensor:
        """``(image - mean) / std`` for a Tensor[C, H, W]."""
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor] | None]:
        """Resize a Tensor[C, H, W] and its target's boxes and masks (torchvision's rule); identity without ``min_size``."""
        if self.min_size is None:
            return image, target
        h, w = image.shape[-2:]
        if self.training:  # torchvision's torch_choice: one draw from torch's generator
            size = self.min_size[int(torch.empty(1).uniform_(0.0, float(len(self.min_size))).item())]
        else:
            size = self.min_size[-1]
        scale = min(size / min(h, w), self.max_size / max(h, w))
        image = F.interpolate(
            image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
        )[0]
        if target is None:
            return image, target
        target = dict(target)
        target["boxes"] = resize_boxes(target["boxes"], (h, w), image.shape[-2:])
        if "masks" in target:
            masks = F.interpolate(target["masks"][:, None].float(), scale_factor=scale, recompute_scale_factor=True)
            target["masks"] = masks[:, 0].byte()
        return image, target

    def batch_images(self, images: Sequence[Tensor]) -> Tensor:
        """Zero-pad Tensors[C, H_i, W_i] into one Tensor[N, C, H, W] (H, W multiples of ``size_divisible``)."""
        stride = float(self.size_divisible)
        height = int(math.ceil(max(img.shape[1] for img in images) / stride) * stride)
        width = int(math.ceil(max(img.shape[2] for img in images) / stride) * stride)
        batch = images[0].new_full((len(images), images[0].shape[0], height, width), 0)
        for padded, img in zip(batch, images):
            padded[:, : img.shape[1], : img.shape[2]].copy_(img)
        return batch

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None
    ) -> tuple[ImageBatch, list[dict[str, Tensor]] | None]:
        """Images (Tensors[C, H_i, W_i]) -> ``(ImageBatch, targets with resized boxes)``."""
        out_images, out_targets = [], None if targets is None else []
        for i, image in enumerate(images):
            image, target = self.resize(self.normalize(image), None if targets is None else dict(targets[i]))
            out_images.append(image)
            if out_targets is not None:
                out_targets.append(target)
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in out_images]
        return ImageBatch(self.batch_images(out_images), sizes), out_targets

    def postprocess(
        self,
        detections: list[dict[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Scale each detection's boxes from its image's (resized) size back to its original size."""
        for det, size, original in zip(detections, image_sizes, original_sizes):
            det["boxes"] = resize_boxes(det["boxes"], size, original)
        return detections


def _check_finite_list(value: object, name: str) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise TypeError(f"{name} must be a non-empty list or tuple of numbers, got {value!r}")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v):
            raise ValueError(f"{name}[{i}] must be a finite number, got {v!r}")
    return tuple(float(v) for v in value)


# ---------------------------------------------------------------- backbone


class SmallBackbone(nn.Sequential):
    """Five conv(3x3)-BatchNorm-ReLU blocks, strides 2, 2, 2, 1, 1: [N, 3, H, W] -> [N, width, H/8, W/8].

    Channels ``width/2, width, width, width, width``; receptive field 47 pixels, enough for the
    course's 16-48 pixel objects. ``out_channels`` (= ``width``) is what the detector reads.
    """

    def __init__(self, width: int = 32, in_channels: int = 3) -> None:
        width = check_positive_int(width, "width")
        channels = [check_positive_int(in_channels, "in_channels"), max(width // 2, 1), width, width, width, width]
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip(channels[:-1], channels[1:], (2, 2, 2, 1, 1)):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)
        self.out_channels = width


# ---------------------------------------------------------------- RPN


class RPNHead(nn.Module):
    """The RPN's small conv net, run on every feature-map cell (torchvision's ``RPNHead``).

    3x3 conv + ReLU, then two 1x1 convs: an objectness logit and 4 box deltas per anchor.
    Weights ~ N(0, 0.01), biases 0, as torchvision initializes them.

    forward: feature Tensor[N, C, h, w] -> (objectness Tensor[N, A, h, w], deltas Tensor[N, 4A, h, w]).
    """

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        in_channels = check_positive_int(in_channels, "in_channels")
        num_anchors = check_positive_int(num_anchors, "num_anchors")
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1, stride=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1, stride=1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)

    def forward(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        t = F.relu(self.conv(feature))
        return self.cls_logits(t), self.bbox_pred(t)


class RegionProposalNetwork(nn.Module):
    """Proposes object boxes from one feature map (torchvision's ``RegionProposalNetwork``).

    Inference, per image:

    1. the head scores every anchor (``A = len(sizes) * len(aspect_ratios)`` per cell, from
       ``anchors.generate_anchors`` on the padded batch) and predicts its deltas; the deltas
       are decoded into boxes (``anchors.decode_boxes``, weights 1);
    2. the ``pre_nms_top_n`` best objectness logits are kept (``topk``), their sigmoid is the score;
    3. boxes are clipped to the image, those thinner than 1e-3 px dropped, then those scoring
       below ``score_thresh``;
    4. NMS at ``nms_thresh``; the ``post_nms_top_n`` best are the proposals.

    Training adds two losses. Each anchor is matched to a ground-truth box (IoU >= ``fg_iou_thresh``:
    positive; < ``bg_iou_thresh``: negative; in between: ignored; each box's best anchors are
    positive anyway); ``batch_size_per_image`` anchors per image are sampled (at most
    ``positive_fraction`` positives). ``loss_objectness``: binary cross-entropy over the sampled
    anchors; ``loss_rpn_box_reg``: smooth-L1 (beta 1/9) of the positives' deltas, summed and
    divided by the number of sampled anchors.

    ``pre_nms_top_n`` and ``post_nms_top_n`` are dicts ``{"training": ..., "testing": ...}``.
    """

    def __init__(
        self,
        sizes: Sequence[float],
        aspect_ratios: Sequence[float],
        head: nn.Module,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_top_n: Mapping[str, int],
        post_nms_top_n: Mapping[str, int],
        nms_thresh: float,
        score_thresh: float = 0.0,
    ) -> None:
        super().__init__()
        self.sizes = _check_sizes(sizes, "sizes")
        self.aspect_ratios = _check_sizes(aspect_ratios, "aspect_ratios")
        cell = generate_anchors(1, 1, self.sizes, self.aspect_ratios)  # ratio-major, then size
        flat = (cell[:, 2] <= cell[:, 0]) | (cell[:, 3] <= cell[:, 1])
        if bool(flat.any()):
            i = int(flat.nonzero()[0, 0])
            size, ratio = self.sizes[i % len(self.sizes)], self.aspect_ratios[i // len(self.sizes)]
            raise ValueError(
                f"anchor size {size} with aspect ratio {ratio} rounds to an anchor of zero width or height "
                f"({cell[i].tolist()}): use larger anchor sizes"
            )
        self.head = head
        self.fg_iou_thresh, self.bg_iou_thresh, self.batch_size_per_image, self.positive_fraction = _check_sampling(
            fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction
        )
        self._pre_nms_top_n = {
            k: check_positive_int(pre_nms_top_n[k], f"pre_nms_top_n[{k!r}]") for k in ("training", "testing")
        }
        self._post_nms_top_n = {
            k: check_positive_int(post_nms_top_n[k], f"post_nms_top_n[{k!r}]") for k in ("training", "testing")
        }
        self.nms_thresh = check_probability(nms_thresh, "nms_thresh")
        self.score_thresh = check_probability(score_thresh, "score_thresh")
        self.min_size = RPN_MIN_SIZE

    @property
    def num_anchors_per_location(self) -> int:
        return len(self.sizes) * len(self.aspect_ratios)

    def pre_nms_top_n(self) -> int:
        return self._pre_nms_top_n["training" if self.training else "testing"]

    def post_nms_top_n(self) -> int:
        return self._post_nms_top_n["training" if self.training else "testing"]

    def anchors(self, batch_shape: Sequence[int], feature: Tensor) -> Tensor:
        """Anchors of the padded batch ``(H, W)`` on ``feature`` [N, C, h, w]: Tensor[h * w * A, 4]."""
        anchors = generate_anchors(tuple(batch_shape), tuple(feature.shape[-2:]), self.sizes, self.aspect_ratios)
        return anchors.to(dtype=feature.dtype, device=feature.device)

    def filter_proposals(
        self, proposals: Tensor, objectness: Tensor, image_sizes: Sequence[tuple[int, int]]
    ) -> list[Tensor]:
        """Steps 2-4 above. proposals Tensor[N, P, 4], objectness logits Tensor[N, P] -> list of Tensor[K_i, 4]."""
        objectness = objectness.detach()
        k = min(self.pre_nms_top_n(), objectness.shape[1])
        _, top_idx = objectness.topk(k, dim=1)
        batch_idx = torch.arange(objectness.shape[0], device=objectness.device)[:, None]
        scores_all = torch.sigmoid(objectness[batch_idx, top_idx])
        proposals = proposals[batch_idx, top_idx]
        final = []
        for boxes, scores, size in zip(proposals, scores_all, image_sizes):
            boxes = clip_boxes_to_image(boxes, size)
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, scores = boxes[keep], scores[keep]
            keep = torch.where(scores >= self.score_thresh)[0]  # >=, as torchvision
            boxes, scores = boxes[keep], scores[keep]
            keep = nms(boxes, scores, self.nms_thresh)[: self.post_nms_top_n()]
            final.append(boxes[keep])
        return final

    def assign_targets_to_anchors(
        self, anchors: Tensor, targets: Sequence[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image: labels Tensor[P] (1 positive, 0 negative, -1 ignored, float) and regression targets Tensor[P, 4]."""
        labels, regression_targets = [], []
        for target in targets:
            gt_boxes = target["boxes"]
            if gt_boxes.numel() == 0:  # an image without objects: every anchor is background
                labels.append(torch.zeros(anchors.shape[0], dtype=torch.float32, device=anchors.device))
                regression_targets.append(torch.zeros_like(anchors))
                continue
            matched = match_anchors(
                box_iou(gt_boxes, anchors), self.fg_iou_thresh, self.bg_iou_thresh, allow_low_quality_matches=True
            )
            labels_in_image = (matched >= 0).to(torch.float32)
            labels_in_image[matched == BELOW_LOW_THRESHOLD] = 0.0
            labels_in_image[matched == BETWEEN_THRESHOLDS] = -1.0
            labels.append(labels_in_image)
            regression_targets.append(encode_boxes(gt_boxes[matched.clamp(min=0)], anchors))
        return labels, regression_targets

    def compute_loss(
        self, objectness: Tensor, deltas: Tensor, labels: list[Tensor], regression_targets: list[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """objectness Tensor[N, P], deltas Tensor[N * P, 4] -> (loss_objectness, loss_rpn_box_reg)."""
        pos_masks, neg_masks = sample_positive_negative(labels, self.batch_size_per_image, self.positive_fraction)
        sampled_pos = torch.where(torch.cat(pos_masks))[0]
        sampled_neg = torch.where(torch.cat(neg_masks))[0]
        sampled = torch.cat([sampled_pos, sampled_neg])
        labels_all = torch.cat(labels)
        targets_all = torch.cat(regression_targets)
        box_loss = (
            smooth_l1_loss(deltas[sampled_pos], targets_all[sampled_pos], beta=1 / 9, reduction="sum") / sampled.numel()
        )
        objectness_loss = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled], labels_all[sampled])
        return objectness_loss, box_loss

    def forward(
        self, images: ImageBatch, feature: Tensor, targets: Sequence[dict[str, Tensor]] | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """(ImageBatch, feature Tensor[N, C, h, w], targets) -> (proposals: list of Tensor[K_i, 4], losses)."""
        objectness, deltas = self.head(feature)
        n, a, h, w = objectness.shape
        # [N, A, h, w] -> [N, h * w * A]: ordered by cell, then anchor, as generate_anchors orders the anchors
        objectness = objectness.permute(0, 2, 3, 1).reshape(n, -1)
        deltas = deltas.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(-1, 4)  # [N * h * w * A, 4]
        anchors = self.anchors(images.tensors.shape[-2:], feature)
        # The proposals are not trained through: the deltas are detached before decoding.
        proposals = decode_boxes(deltas.detach(), anchors.repeat(n, 1)).view(n, -1, 4)
        boxes = self.filter_proposals(proposals, objectness, images.image_sizes)

        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("targets is required in training mode (the RPN's losses need the ground-truth boxes)")
            labels, regression_targets = self.assign_targets_to_anchors(anchors, targets)
            loss_objectness, loss_rpn_box_reg = self.compute_loss(objectness, deltas, labels, regression_targets)
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg}
        return boxes, losses


# ---------------------------------------------------------------- RoI heads


def infer_spatial_scale(feature_size: int, image_size: int) -> float:
    """The feature map's scale as torchvision's ``MultiScaleRoIAlign`` infers it: ``2 ** round(log2(feature / image))``.

    torchvision uses the feature map's height and the largest image height of the batch
    (before padding), and keeps the scale of its first call for every later one.
    """
    return 2 ** float(torch.tensor(float(feature_size) / float(image_size)).log2().round())


class RoIAlignPooler(nn.Module):
    """RoIAlign of each proposal into a fixed ``output_size`` grid (a one-level ``MultiScaleRoIAlign``).

    ``spatial_scale`` (image -> feature map) is inferred at every call from the feature map and
    the image sizes (``infer_spatial_scale``) unless given. ``aligned=False``, as torchvision.

    forward: (feature Tensor[N, C, h, w], proposals list of N Tensor[K_i, 4], image_sizes)
    -> Tensor[sum K_i, C, out_h, out_w].
    """

    def __init__(self, output_size: int = 7, sampling_ratio: int = 2, spatial_scale: float | None = None) -> None:
        super().__init__()
        self.output_size = (check_positive_int(output_size, "output_size"),) * 2
        if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, Integral):
            raise TypeError(f"sampling_ratio must be an int (<= 0: adaptive), got {type(sampling_ratio).__name__}")
        self.sampling_ratio = int(sampling_ratio)
        self.spatial_scale = None if spatial_scale is None else _check_sizes([spatial_scale], "spatial_scale")[0]

    def scale(self, feature: Tensor, image_sizes: Sequence[tuple[int, int]]) -> float:
        if self.spatial_scale is not None:
            return self.spatial_scale
        return infer_spatial_scale(feature.shape[-2], max(size[0] for size in image_sizes))

    def forward(self, feature: Tensor, proposals: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]]) -> Tensor:
        return roi_align(
            feature,
            list(proposals),
            self.output_size,
            spatial_scale=self.scale(feature, image_sizes),
            sampling_ratio=self.sampling_ratio,
        )


class TwoMLPHead(nn.Module):
    """Two fully connected layers with ReLU: Tensor[K, C, 7, 7] -> Tensor[K, representation_size] (fc6, fc7)."""

    def __init__(self, in_channels: int, representation_size: int) -> None:
        super().__init__()
        self.fc6 = nn.Linear(
            check_positive_int(in_channels, "in_channels"),
            check_positive_int(representation_size, "representation_size"),
        )
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(start_dim=1)))))


class FastRCNNPredictor(nn.Module):
    """Class logits and class-specific box deltas: Tensor[K, D] -> (Tensor[K, num_classes], Tensor[K, 4 * num_classes])."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(
            check_positive_int(in_channels, "in_channels"), check_positive_int(num_classes, "num_classes")
        )
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)


class RoIHeads(nn.Module):
    """Classifies each proposal and refines its box (torchvision's ``RoIHeads``, boxes only).

    Inference: RoIAlign -> box head -> predictor; then, per image, softmax over classes, decode
    each class's deltas (weights ``bbox_reg_weights``) on the proposal, clip to the image, drop
    the background column, keep scores ``> score_thresh``, drop boxes thinner than 1e-2 px, NMS
    per class at ``nms_thresh``, keep the ``detections_per_img`` best.

    Training: the ground-truth boxes are appended to the proposals; each proposal is matched
    (IoU >= ``fg_iou_thresh``: that box's class, < ``bg_iou_thresh``: background);
    ``batch_size_per_image`` are sampled (at most ``positive_fraction`` positives).
    ``loss_classifier``: cross-entropy; ``loss_box_reg``: smooth-L1 (beta 1/9) of the
    positives' deltas for their true class, summed and divided by the number of sampled RoIs.
    """

    def __init__(
        self,
        box_roi_pool: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        bbox_reg_weights: tuple[float, float, float, float] | None,
        score_thresh: float,
        nms_thresh: float,
        detections_per_img: int,
    ) -> None:
        super().__init__()
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.fg_iou_thresh, self.bg_iou_thresh, self.batch_size_per_image, self.positive_fraction = _check_sampling(
            fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction
        )
        weights = (
            (10.0, 10.0, 5.0, 5.0) if bbox_reg_weights is None else _check_sizes(bbox_reg_weights, "bbox_reg_weights")
        )
        if len(weights) != 4:
            raise ValueError(f"bbox_reg_weights must be 4 numbers (wx, wy, ww, wh), got {bbox_reg_weights!r}")
        self.bbox_reg_weights = tuple(weights)
        self.score_thresh = check_probability(score_thresh, "score_thresh")
        self.nms_thresh = check_probability(nms_thresh, "nms_thresh")
        self.detections_per_img = check_positive_int(detections_per_img, "detections_per_img")

    def select_training_samples(
        self, proposals: Sequence[Tensor], targets: Sequence[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Append the ground truth, match, sample.

        Returns:
            per image: the sampled proposals Tensor[S_i, 4], their labels (int64 [S_i], 0 =
            background) and regression targets Tensor[S_i, 4].
        """
        dtype = proposals[0].dtype
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        proposals = [torch.cat((p, gt)) for p, gt in zip(proposals, gt_boxes)]
        labels, matched_idxs = [], []
        for props, gt, target in zip(proposals, gt_boxes, targets):
            if gt.numel() == 0:  # background image
                matched_idxs.append(torch.zeros(props.shape[0], dtype=torch.int64, device=props.device))
                labels.append(torch.zeros(props.shape[0], dtype=torch.int64, device=props.device))
                continue
            matched = match_anchors(box_iou(gt, props), self.fg_iou_thresh, self.bg_iou_thresh)
            clamped = matched.clamp(min=0)
            labels_in_image = target["labels"][clamped].to(torch.int64)
            labels_in_image[matched == BELOW_LOW_THRESHOLD] = 0
            labels_in_image[matched == BETWEEN_THRESHOLDS] = -1  # ignored by the sampler
            matched_idxs.append(clamped)
            labels.append(labels_in_image)
        pos_masks, neg_masks = sample_positive_negative(labels, self.batch_size_per_image, self.positive_fraction)
        out_props, out_labels, out_targets = [], [], []
        for props, lab, idx, gt, pos, neg in zip(proposals, labels, matched_idxs, gt_boxes, pos_masks, neg_masks):
            sampled = torch.where(pos | neg)[0]
            props, lab, idx = props[sampled], lab[sampled], idx[sampled]
            out_props.append(props)
            out_labels.append(lab)
            # Background images have no box to regress to: their rows are never used by the loss.
            out_targets.append(
                encode_boxes(gt[idx], props, self.bbox_reg_weights) if gt.numel() else torch.zeros_like(props)
            )
        return out_props, out_labels, out_targets

    def fastrcnn_loss(
        self, class_logits: Tensor, box_regression: Tensor, labels: list[Tensor], regression_targets: list[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """class_logits [K, C], box_regression [K, 4C] -> (loss_classifier, loss_box_reg)."""
        labels_all = torch.cat(labels)
        targets_all = torch.cat(regression_targets)
        classification_loss = F.cross_entropy(class_logits, labels_all)
        positive = torch.where(labels_all > 0)[0]
        box_regression = box_regression.reshape(class_logits.shape[0], -1, 4)
        box_loss = smooth_l1_loss(
            box_regression[positive, labels_all[positive]], targets_all[positive], beta=1 / 9, reduction="sum"
        )
        return classification_loss, box_loss / labels_all.numel()

    def postprocess_detections(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: Sequence[Tensor],
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Scores, boxes and labels per image (see the class docstring), as torchvision's ``postprocess_detections``."""
        num_classes = class_logits.shape[-1]
        counts = [p.shape[0] for p in proposals]
        pred_boxes = decode_boxes(box_regression, torch.cat(list(proposals)), self.bbox_reg_weights).reshape(
            sum(counts), num_classes, 4
        )
        pred_scores = F.softmax(class_logits, -1)
        results = []
        for boxes, scores, size in zip(pred_boxes.split(counts, 0), pred_scores.split(counts, 0), image_sizes):
            boxes = clip_boxes_to_image(boxes, size)
            labels = torch.arange(num_classes, device=class_logits.device).view(1, -1).expand_as(scores)
            # drop the background column; every (proposal, class) pair becomes one candidate
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]  # >, as torchvision
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = remove_small_boxes(boxes, BOX_MIN_SIZE)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            results.append({"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]})
        return results

    def forward(
        self,
        feature: Tensor,
        proposals: Sequence[Tensor],
        image_sizes: Sequence[tuple[int, int]],
        targets: Sequence[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """(feature [N, C, h, w], proposals, image sizes, targets) -> (detections (eval) or [], losses (training) or {})."""
        if self.training:
            if targets is None:
                raise ValueError("targets is required in training mode (the box head's losses need the ground truth)")
            proposals, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(feature, proposals, image_sizes))
        class_logits, box_regression = self.box_predictor(box_features)
        if self.training:
            loss_classifier, loss_box_reg = self.fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        return self.postprocess_detections(class_logits, box_regression, proposals, image_sizes), {}


# ---------------------------------------------------------------- the detector


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
        loss_weights: ``{loss name: weight >= 0}`` for any of ``LOSS_NAMES``; missing ones are 1.
    """

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
        self.loss_weights = _check_loss_weights(loss_weights)

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

    def _check_images(self, images: object) -> list[Tensor]:
        if isinstance(images, Tensor):
            if images.ndim != 4:
                raise ValueError(
                    "images must be a list of Tensor[3, H, W] (or one Tensor[N, 3, H, W]), "
                    f"got a tensor of shape {tuple(images.shape)}"
                )
            images = list(images.unbind(0))
        if not isinstance(images, (list, tuple)):
            raise TypeError(f"images must be a list of Tensor[3, H, W], got {type(images).__name__}")
        if not images:
            raise ValueError("images is empty: give at least one Tensor[3, H, W]")
        channels = len(self.transform.image_mean)
        for i, image in enumerate(images):
            if not isinstance(image, Tensor):
                raise TypeError(f"images[{i}] must be a torch.Tensor, got {type(image).__name__}")
            if image.ndim != 3:
                raise ValueError(
                    f"images[{i}] must have shape [{channels}, H, W], got {tuple(image.shape)} ({image.ndim} dimensions)"
                )
            if image.shape[0] != channels:
                raise ValueError(
                    f"images[{i}] must have {channels} channels (shape [{channels}, H, W]), got shape {tuple(image.shape)}"
                )
            if image.shape[1] == 0 or image.shape[2] == 0:
                raise ValueError(f"images[{i}] is empty: shape {tuple(image.shape)}")
            if not image.is_floating_point():
                raise TypeError(f"images[{i}] must be a float tensor with values in [0, 1], got dtype {image.dtype}")
            if not bool(torch.isfinite(image).all()):
                raise ValueError(f"images[{i}] contains NaN or infinite values")
        return list(images)

    def _check_targets(self, targets: object, num_images: int) -> list[dict[str, Tensor]]:
        if not isinstance(targets, (list, tuple)):
            raise TypeError(f"targets must be a list of dicts with 'boxes' and 'labels', got {type(targets).__name__}")
        if len(targets) != num_images:
            raise ValueError(
                f"targets has {len(targets)} entries but there are {num_images} images: give one dict per image"
            )
        checked = []
        for i, target in enumerate(targets):
            if not isinstance(target, Mapping):
                raise TypeError(f"targets[{i}] must be a dict with 'boxes' and 'labels', got {type(target).__name__}")
            for key in ("boxes", "labels"):
                if key not in target:
                    raise ValueError(f"targets[{i}] has no {key!r} entry")
                if not isinstance(target[key], Tensor):
                    raise TypeError(f"targets[{i}][{key!r}] must be a torch.Tensor, got {type(target[key]).__name__}")
            boxes, labels = target["boxes"], target["labels"]
            if boxes.ndim != 2 or boxes.shape[1] != 4:
                raise ValueError(f"targets[{i}]['boxes'] must have shape [G, 4], got {tuple(boxes.shape)}")
            if not boxes.is_floating_point():
                raise TypeError(f"targets[{i}]['boxes'] must be a float tensor, got dtype {boxes.dtype}")
            if not bool(torch.isfinite(boxes).all()):
                raise ValueError(f"targets[{i}]['boxes'] contains NaN or infinite values")
            degenerate = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
            if bool(degenerate.any()):
                j = int(degenerate.nonzero()[0, 0])
                raise ValueError(
                    f"targets[{i}]['boxes'][{j}] = {boxes[j].tolist()} is degenerate: "
                    "boxes need x2 > x1 and y2 > y1 (positive width and height)"
                )
            if labels.ndim != 1 or labels.shape[0] != boxes.shape[0]:
                raise ValueError(
                    f"targets[{i}]['labels'] must have shape [{boxes.shape[0]}] (one per box), got {tuple(labels.shape)}"
                )
            if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
                raise TypeError(f"targets[{i}]['labels'] must hold integer class indices, got dtype {labels.dtype}")
            bad = (labels < 1) | (labels >= self.num_classes)
            if bool(bad.any()):
                j = int(bad.nonzero()[0, 0])
                raise ValueError(
                    f"targets[{i}]['labels'][{j}] = {int(labels[j])} is out of range: "
                    f"labels must be in [1, {self.num_classes}) (0 is the background)"
                )
            checked.append({**target, "labels": labels.to(torch.int64)})
        return checked

    def forward(
        self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]] | None = None
    ) -> list[dict[str, Tensor]] | dict[str, Tensor]:
        """Detections (eval mode) or the weighted losses (training mode); see the class docstring."""
        images = self._check_images(images)
        if self.training and targets is None:
            raise ValueError("targets is required in training mode: one dict with 'boxes' and 'labels' per image")
        if targets is not None:
            targets = self._check_targets(targets, len(images))
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
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)


def _check_loss_weights(loss_weights: Mapping[str, float] | None) -> dict[str, float]:
    weights = dict.fromkeys(LOSS_NAMES, 1.0)
    if loss_weights is None:
        return weights
    if not isinstance(loss_weights, Mapping):
        raise TypeError(f"loss_weights must be a dict {{loss name: weight}}, got {type(loss_weights).__name__}")
    for name, weight in loss_weights.items():
        if name not in weights:
            raise ValueError(f"loss_weights has an unknown loss {name!r}; the losses are {', '.join(LOSS_NAMES)}")
        weights[name] = check_non_negative_number(weight, f"loss_weights[{name!r}]")
    return weights


# ---------------------------------------------------------------- torchvision's twin


def to_torchvision(model: FasterRCNN) -> nn.Module:
    """torchvision's ``FasterRCNN`` with the settings and (copied) weights of ``model``, in the same mode.

    The backbone is deep-copied; the RPN head, box head and predictor are torchvision's
    ``RPNHead``, ``TwoMLPHead`` and ``FastRCNNPredictor`` loaded with ``model``'s weights. Without
    resizing (``min_size=None``) torchvision's transform gets its ``resize`` step skipped (at a
    scale of exactly 1 it is the identity anyway). Note: torchvision's ``MultiScaleRoIAlign``
    infers its spatial scale at its first call and keeps it; the course's infers it at every
    call (same rule), so the two differ only if later batches would give another scale.
    """
    if not isinstance(model, FasterRCNN):
        raise TypeError(f"model must be a course_utils FasterRCNN, got {type(model).__name__}")
    from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor as TVPredictor
    from torchvision.models.detection.faster_rcnn import TwoMLPHead as TVTwoMLPHead
    from torchvision.models.detection.rpn import RPNHead as TVRPNHead
    from torchvision.models.detection.transform import GeneralizedRCNNTransform
    from torchvision.ops import MultiScaleRoIAlign

    rpn, heads, transform = model.rpn, model.roi_heads, model.transform
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

    tv = TorchvisionFasterRCNN(
        copy.deepcopy(model.backbone),
        num_classes=None,
        min_size=transform.min_size if transform.min_size is not None else 1,
        max_size=transform.max_size if transform.max_size is not None else 1,
        image_mean=list(transform.image_mean),
        image_std=list(transform.image_std),
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
        size_divisible=transform.size_divisible,
    )
    if transform.min_size is None:

        class _KeepSizeTransform(GeneralizedRCNNTransform):
            """torchvision's transform without its resize step (the course's ``min_size=None``)."""

            def resize(self, image: Tensor, target: Any = None) -> tuple[Tensor, Any]:
                return image, target

        tv.transform = _KeepSizeTransform(
            1, 1, list(transform.image_mean), list(transform.image_std), size_divisible=transform.size_divisible
        )
    parameter = next(model.parameters(), None)
    if parameter is not None:
        tv.to(parameter.device)
    return tv.train(model.training)
