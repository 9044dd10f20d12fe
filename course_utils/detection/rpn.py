"""The region proposal network: a conv head scores and refines anchors, then top-k, clipping and NMS
give each image's proposals; in training, its objectness and box losses (torchvision's ``rpn.py``)."""

from __future__ import annotations

from typing import Mapping, Sequence

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
from ..boxes import box_iou, nms
from ..validation import check_positive_int, check_probability
from ._utils import _check_sampling, _check_sizes, clip_boxes_to_image, remove_small_boxes, sample_positive_negative
from .ops import smooth_l1_loss
from .transform import ImageBatch

__all__ = ["RPNHead", "RegionProposalNetwork", "RPN_MIN_SIZE"]

RPN_MIN_SIZE = 1e-3  # proposals thinner than this (pixels) are dropped


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
