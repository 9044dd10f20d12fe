"""Mask R-CNN: Faster R-CNN plus a small fully convolutional mask head on RoIAlign features.

The box pipeline is ``FasterRCNN``'s (faster_rcnn.py); the RoI heads gain a third branch::

    feature map [N, C, h, w] + boxes
      │ mask_roi_pool   RoIAlignPooler 14x14 (roi_heads.py)
      ▼                 Tensor[K, C, 14, 14]
      │ mask_head       MaskRCNNHeads: 3x3 convs + ReLU, 14x14 kept
      │ mask_predictor  MaskRCNNPredictor: 2x2 transposed conv (-> 28x28) + ReLU, 1x1 conv
      ▼                 mask logits Tensor[K, num_classes, 28, 28]: one mask per class

* training: the mask branch runs on the positive sampled RoIs; each RoI's target is its matched
  ground-truth mask cropped and resized to 28x28 by RoIAlign (``project_masks_on_boxes``), and
  ``loss_mask`` is the binary cross-entropy of the logits of the RoI's true class only
  (``mask_loss``): the classes do not compete for a pixel, the box head already chose the class.
* eval: the mask branch runs on the final detections; each keeps the sigmoid of its predicted
  class's mask (``select_class_masks``), and ``paste_masks`` resizes that 28x28 mask into its
  box in the original image: ``masks`` float Tensor[K, 1, H, W] in [0, 1].

Eval-mode outputs equal torchvision's ``MaskRCNN`` holding the same weights (``to_torchvision``):
the steps follow torchvision's ``roi_heads.py`` (``maskrcnn_loss``, ``project_masks_on_boxes``,
``maskrcnn_inference``, ``paste_masks_in_image``) and ``mask_rcnn.py`` (the heads) in order.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..validation import check_positive_int
from . import faster_rcnn
from ._utils import match_device_and_mode
from .faster_rcnn import FasterRCNN
from .ops import roi_align
from .roi_heads import RoIAlignPooler, RoIHeads

__all__ = [
    "MASK_LOSS_NAMES", "MaskRCNNHeads", "MaskRCNNPredictor", "MaskRoIHeads", "MaskRCNN", "project_masks_on_boxes",
    "mask_loss", "select_class_masks", "expand_boxes", "paste_masks", "check_mask_targets", "to_torchvision",
]

MASK_LOSS_NAMES = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")


def _kaiming(module: nn.Module) -> None:
    """torchvision's initialisation of the mask layers: Kaiming normal (fan out, ReLU) weights, zero biases."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)


class MaskRCNNHeads(nn.Module):
    """3x3 convolutions (padding 1) each followed by ReLU: Tensor[K, C, S, S] -> Tensor[K, layers[-1], S, S]."""

    def __init__(self, in_channels: int, layers: Sequence[int]) -> None:
        super().__init__()
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
            raise TypeError(f"mask_layers must be a non-empty list of channel counts, got {layers!r}")
        widths = [check_positive_int(in_channels, "in_channels")]
        widths += [check_positive_int(w, f"mask_layers[{i}]") for i, w in enumerate(layers)]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths, widths[1:]))
        self.out_channels = widths[-1]
        _kaiming(self)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        return x


class MaskRCNNPredictor(nn.Module):
    """Upsample x2 and predict one mask per class: Tensor[K, C, S, S] -> logits Tensor[K, num_classes, 2S, 2S]."""

    def __init__(self, in_channels: int, dim_reduced: int, num_classes: int) -> None:
        super().__init__()
        self.conv5_mask = nn.ConvTranspose2d(
            check_positive_int(in_channels, "in_channels"), check_positive_int(dim_reduced, "mask_dim_reduced"), 2, 2
        )
        self.mask_fcn_logits = nn.Conv2d(dim_reduced, check_positive_int(num_classes, "num_classes"), 1)
        _kaiming(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.mask_fcn_logits(F.relu(self.conv5_mask(x)))


def project_masks_on_boxes(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, size: int) -> Tensor:
    """Each box's matched ground-truth mask, cropped to the box and resized to ``size x size`` by RoIAlign.

    gt_masks: Tensor[G, H, W] (0/1); boxes: Tensor[K, 4] xyxy in the same pixels; matched_idxs:
    int64 [K] in [0, G) -> float Tensor[K, size, size] in [0, 1] (torchvision's: scale 1, adaptive sampling).
    """
    if boxes.shape[0] == 0:
        return boxes.new_zeros((0, size, size))
    rois = torch.cat([matched_idxs.to(boxes)[:, None], boxes], dim=1)
    return roi_align(gt_masks[:, None].to(rois), rois, (size, size), 1.0)[:, 0]


def mask_loss(
    mask_logits: Tensor,
    proposals: Sequence[Tensor],
    gt_masks: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    matched_idxs: Sequence[Tensor],
) -> Tensor:
    """Binary cross-entropy (mean over RoIs and pixels) of each RoI's mask logits for its true class.

    mask_logits: Tensor[K, num_classes, M, M] for the positive RoIs of all images; per image the
    positive proposals Tensor[K_i, 4], the ground-truth masks [G_i, H, W] and labels [G_i], and
    the matched ground-truth index of each proposal [K_i]. No positive RoI: a zero that keeps
    the graph (``mask_logits.sum() * 0``), as torchvision.
    """
    size = mask_logits.shape[-1]
    labels = torch.cat([lab[idx] for lab, idx in zip(gt_labels, matched_idxs)])
    targets = torch.cat(
        [project_masks_on_boxes(m, p, i, size) for m, p, i in zip(gt_masks, proposals, matched_idxs)]
    )
    if targets.numel() == 0:
        return mask_logits.sum() * 0
    picked = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(picked, targets)


def select_class_masks(mask_logits: Tensor, labels: Sequence[Tensor]) -> list[Tensor]:
    """Per image, the sigmoid of each detection's mask for its predicted class: list of Tensor[K_i, 1, M, M].

    mask_logits: Tensor[sum K_i, num_classes, M, M]; labels: per image int64 [K_i].
    """
    probs = mask_logits.sigmoid()
    all_labels = torch.cat(list(labels))
    probs = probs[torch.arange(probs.shape[0], device=all_labels.device), all_labels][:, None]
    return list(probs.split([len(lab) for lab in labels], dim=0))


def expand_boxes(boxes: Tensor, scale: float) -> Tensor:
    """xyxy boxes Tensor[K, 4] scaled by ``scale`` about their centres."""
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack((x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half), dim=1)


def _paste_one(mask: Tensor, box: Sequence[int], height: int, width: int) -> Tensor:
    """One M x M mask resized (bilinear) to its integer box ``(x1, y1, x2, y2)``, inclusive, cut to the image."""
    x1, y1, x2, y2 = box
    w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
    resized = F.interpolate(mask[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    image_mask = mask.new_zeros((height, width))
    x0, x_end, y0, y_end = max(x1, 0), min(x2 + 1, width), max(y1, 0), min(y2 + 1, height)
    if x_end > x0 and y_end > y0:
        image_mask[y0:y_end, x0:x_end] = resized[y0 - y1 : y_end - y1, x0 - x1 : x_end - x1]
    return image_mask


def paste_masks(masks: Tensor, boxes: Tensor, image_size: Sequence[int], padding: int = 1) -> Tensor:
    """Paste fixed-size masks (e.g. 28x28) into their boxes of an image of ``image_size = (H, W)``.

    masks: float Tensor[K, M, M] or Tensor[K, 1, M, M]; boxes: Tensor[K, 4] xyxy in the image's
    pixels -> Tensor[K, H, W] or Tensor[K, 1, H, W] (same rank as ``masks``), zero outside each box.

    As torchvision's ``paste_masks_in_image``: each mask gets a border of ``padding`` zero pixels
    and its box grows by the same factor ``(M + 2 padding) / M`` (so that the mask's edge can fade
    to zero inside the box), the box is truncated to integer pixels, and the mask is resized
    (bilinear) to the box's ``x2 - x1 + 1`` by ``y2 - y1 + 1`` pixels.
    """
    if not isinstance(masks, Tensor) or masks.ndim not in (3, 4) or (masks.ndim == 4 and masks.shape[1] != 1):
        raise ValueError(
            "masks must be a Tensor[K, M, M] or Tensor[K, 1, M, M], got "
            f"{tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__}"
        )
    if not masks.is_floating_point():
        raise TypeError(f"masks must be a float tensor (mask probabilities), got dtype {masks.dtype}")
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"boxes must be a Tensor[K, 4] (xyxy), got {tuple(boxes.shape) if isinstance(boxes, Tensor) else boxes!r}"
        )
    if boxes.shape[0] != masks.shape[0]:
        raise ValueError(f"masks and boxes must have the same length, got {masks.shape[0]} and {boxes.shape[0]}")
    if isinstance(image_size, (str, bytes)) or not isinstance(image_size, Sequence) or len(image_size) != 2:
        raise TypeError(f"image_size must be a pair (height, width), got {image_size!r}")
    height, width = (check_positive_int(s, f"image_size[{i}]") for i, s in enumerate(image_size))
    padding = check_positive_int(padding, "padding", allow_zero=True)
    flat = masks.reshape(masks.shape[0], masks.shape[-2], masks.shape[-1])
    scale = float(flat.shape[-1] + 2 * padding) / flat.shape[-1]
    padded = F.pad(flat, (padding,) * 4)
    int_boxes = expand_boxes(boxes, scale).to(torch.int64).tolist()  # truncated toward zero, as torchvision
    pasted = [_paste_one(m, b, height, width) for m, b in zip(padded, int_boxes)]
    out = torch.stack(pasted) if pasted else masks.new_zeros((0, height, width))
    return out[:, None] if masks.ndim == 4 else out


def check_mask_targets(targets: Sequence[dict[str, Tensor]], images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
    """Each target's ``masks``: a uint8 or bool Tensor[G, H, W] of 0/1, one mask per box, the size of its image."""
    for i, (target, image) in enumerate(zip(targets, images)):
        if "masks" not in target:
            raise ValueError(f"targets[{i}] has no 'masks' entry (Mask R-CNN trains on one mask per box)")
        masks = target["masks"]
        if not isinstance(masks, Tensor):
            raise TypeError(f"targets[{i}]['masks'] must be a torch.Tensor, got {type(masks).__name__}")
        expected = (target["boxes"].shape[0], *image.shape[-2:])
        if tuple(masks.shape) != expected:
            raise ValueError(
                f"targets[{i}]['masks'] must have shape [G, H, W] = {list(expected)} "
                f"(one mask per box, the size of images[{i}]), got {tuple(masks.shape)}"
            )
        if masks.dtype not in (torch.uint8, torch.bool):
            raise TypeError(f"targets[{i}]['masks'] must be a uint8 or bool tensor of 0/1, got dtype {masks.dtype}")
        if masks.dtype == torch.uint8 and bool((masks > 1).any()):
            raise ValueError(f"targets[{i}]['masks'] must hold only 0 and 1, got values up to {int(masks.max())}")
    return list(targets)


class MaskRoIHeads(RoIHeads):
    """``RoIHeads`` (box classification and regression) plus the mask branch (see the module docstring).

    Built from box heads whose modules and settings it takes over; ``forward`` returns detections
    with ``masks`` Tensor[K, 1, M, M] (eval; M = 2 x the pooler's output size, not yet pasted) or the
    losses ``loss_classifier``, ``loss_box_reg``, ``loss_mask`` (training).
    """

    def __init__(self, box_heads: RoIHeads, mask_roi_pool: nn.Module, mask_head: nn.Module, mask_predictor: nn.Module) -> None:
        h = box_heads
        super().__init__(
            h.box_roi_pool, h.box_head, h.box_predictor, h.fg_iou_thresh, h.bg_iou_thresh, h.batch_size_per_image,
            h.positive_fraction, h.bbox_reg_weights, h.score_thresh, h.nms_thresh, h.detections_per_img,
        )
        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor

    def mask_logits(self, feature: Tensor, boxes: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]]) -> Tensor:
        """Tensor[sum K_i, num_classes, M, M]: the mask branch on the boxes of each image."""
        return self.mask_predictor(self.mask_head(self.mask_roi_pool(feature, boxes, image_sizes)))

    def forward(
        self,
        feature: Tensor,
        proposals: Sequence[Tensor],
        image_sizes: Sequence[tuple[int, int]],
        targets: Sequence[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """(feature, proposals, image sizes, targets) -> (detections with masks (eval) or [], losses (training) or {})."""
        if not self.training:
            detections, _ = super().forward(feature, proposals, image_sizes)
            logits = self.mask_logits(feature, [d["boxes"] for d in detections], image_sizes)
            for det, probs in zip(detections, select_class_masks(logits, [d["labels"] for d in detections])):
                det["masks"] = probs
            return detections, {}
        if targets is None:
            raise ValueError("targets is required in training mode (the losses need the ground truth)")
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        class_logits, box_regression = self.box_predictor(self.box_head(self.box_roi_pool(feature, proposals, image_sizes)))
        loss_classifier, loss_box_reg = self.fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        positive = [torch.where(lab > 0)[0] for lab in labels]
        mask_proposals = [p[pos] for p, pos in zip(proposals, positive)]
        positive_idxs = [idx[pos] for idx, pos in zip(matched_idxs, positive)]
        logits = self.mask_logits(feature, mask_proposals, image_sizes)
        loss = mask_loss(
            logits, mask_proposals, [t["masks"] for t in targets], [t["labels"] for t in targets], positive_idxs
        )
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg, "loss_mask": loss}


class MaskRCNN(FasterRCNN):
    """The course's Mask R-CNN: ``FasterRCNN`` whose ``roi_heads`` also predict a mask per detection.

    Input and output as torchvision's ``MaskRCNN``:

    * eval: ``model(images)`` -> one dict per image with ``boxes``, ``labels``, ``scores`` (as
      ``FasterRCNN``) and ``masks``: float Tensor[K, 1, H, W] in [0, 1], the probability that
      each pixel of the image belongs to the detected object (threshold at 0.5 for a binary mask);
    * training: ``model(images, targets)``, each target also with ``masks`` (uint8 or bool
      Tensor[G, H, W], one 0/1 mask per box) -> the five losses of ``MASK_LOSS_NAMES`` (weighted).

    Args: those of ``FasterRCNN``, and
        mask_roi_output_size: RoIAlign grid of the mask branch (14: masks of 28 x 28).
        mask_roi_sampling_ratio: RoIAlign samples per bin side of the mask branch.
        mask_layers: widths of the 3x3 convs of ``MaskRCNNHeads`` (torchvision: four of 256).
        mask_dim_reduced: channels of the transposed conv of ``MaskRCNNPredictor``.
    """

    loss_names = MASK_LOSS_NAMES

    def __init__(
        self,
        backbone: nn.Module | None = None,
        num_classes: int | None = None,
        *,
        mask_roi_output_size: int = 14,
        mask_roi_sampling_ratio: int = 2,
        mask_layers: Sequence[int] = (32, 32, 32, 32),
        mask_dim_reduced: int = 32,
        **kwargs: object,
    ) -> None:
        super().__init__(backbone, num_classes, **kwargs)
        channels = self.rpn.head.conv.in_channels
        mask_head = MaskRCNNHeads(channels, mask_layers)
        self.roi_heads = MaskRoIHeads(
            self.roi_heads,
            RoIAlignPooler(mask_roi_output_size, mask_roi_sampling_ratio),
            mask_head,
            MaskRCNNPredictor(mask_head.out_channels, mask_dim_reduced, self.num_classes),
        )

    def check_targets(self, targets: object, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        """The box targets (``FasterRCNN.check_targets``) and their ``masks`` (``check_mask_targets``)."""
        return check_mask_targets(super().check_targets(targets, images), images)

    def postprocess(
        self,
        detections: list[dict[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Boxes back to the original sizes, then each mask pasted into its box there (``paste_masks``)."""
        detections = super().postprocess(detections, image_sizes, original_sizes)
        for det, size in zip(detections, original_sizes):
            det["masks"] = paste_masks(det["masks"], det["boxes"], size)
        return detections


def to_torchvision(model: MaskRCNN) -> nn.Module:
    """torchvision's ``MaskRCNN`` with the settings and (copied) weights of ``model``, in the same mode.

    The box part is built as ``faster_rcnn.to_torchvision``'s; the mask branch is torchvision's
    ``MultiScaleRoIAlign``, ``MaskRCNNHeads`` and ``MaskRCNNPredictor`` loaded with ``model``'s weights.
    """
    if not isinstance(model, MaskRCNN):
        raise TypeError(f"model must be a course_utils MaskRCNN, got {type(model).__name__}")
    from torchvision.models.detection import MaskRCNN as TorchvisionMaskRCNN
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads as TVMaskRCNNHeads
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor as TVMaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    heads = model.roi_heads
    if not isinstance(heads.mask_head, MaskRCNNHeads) or not isinstance(heads.mask_predictor, MaskRCNNPredictor):
        raise TypeError("to_torchvision needs the course's MaskRCNNHeads and MaskRCNNPredictor (torchvision has twins of those)")
    pool = heads.mask_roi_pool
    if not isinstance(pool, RoIAlignPooler) or pool.spatial_scale is not None:
        raise ValueError(
            "to_torchvision needs an RoIAlignPooler that infers its spatial scale, as torchvision's MultiScaleRoIAlign does"
        )
    convs = heads.mask_head.convs
    mask_head = TVMaskRCNNHeads(convs[0].in_channels, [c.out_channels for c in convs], 1)
    mask_head.load_state_dict(
        {f"{i}.0.{kind}": getattr(conv, kind) for i, conv in enumerate(convs) for kind in ("weight", "bias")}
    )
    predictor = heads.mask_predictor
    mask_predictor = TVMaskRCNNPredictor(
        predictor.conv5_mask.in_channels, predictor.conv5_mask.out_channels, predictor.mask_fcn_logits.out_channels
    )
    mask_predictor.load_state_dict(predictor.state_dict())
    settings = faster_rcnn.torchvision_settings(model)
    tv = TorchvisionMaskRCNN(
        copy.deepcopy(model.backbone),
        num_classes=None,
        mask_roi_pool=MultiScaleRoIAlign(["0"], output_size=list(pool.output_size), sampling_ratio=pool.sampling_ratio),
        mask_head=mask_head,
        mask_predictor=mask_predictor,
        **settings,
    )
    tv.transform = faster_rcnn.to_torchvision_transform(model.transform)  # replaces the one the constructor built
    return match_device_and_mode(tv, model)
