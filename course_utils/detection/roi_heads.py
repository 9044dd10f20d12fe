"""The second stage: RoIAlign of each proposal, a two-layer box head and a predictor of class scores and
box deltas, then per-class NMS; in training, the classification and box losses (torchvision's
``roi_heads.py``, with the pooler of ``poolers.py`` and the heads of ``faster_rcnn.py``)."""

from __future__ import annotations

from numbers import Integral
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..anchors import BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS, decode_boxes, encode_boxes, match_anchors
from ..boxes import batched_nms, box_iou
from ..validation import check_positive_int, check_probability
from ._utils import _check_sampling, _check_sizes, clip_boxes_to_image, remove_small_boxes, sample_positive_negative
from .ops import roi_align, smooth_l1_loss

__all__ = [
    "infer_spatial_scale",
    "RoIAlignPooler",
    "TwoMLPHead",
    "FastRCNNPredictor",
    "RoIHeads",
    "BOX_MIN_SIZE",
]

BOX_MIN_SIZE = 1e-2  # detections thinner than this are dropped


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
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """Append the ground truth, match, sample.

        Returns:
            per image (torchvision's order): the sampled proposals Tensor[S_i, 4], the index of
            the ground-truth box each is matched to (int64 [S_i]; 0 for background RoIs, whose
            index is unused), their labels (int64 [S_i], 0 = background) and regression targets
            Tensor[S_i, 4].
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
        out_props, out_idxs, out_labels, out_targets = [], [], [], []
        for props, lab, idx, gt, pos, neg in zip(proposals, labels, matched_idxs, gt_boxes, pos_masks, neg_masks):
            sampled = torch.where(pos | neg)[0]
            props, lab, idx = props[sampled], lab[sampled], idx[sampled]
            out_props.append(props)
            out_idxs.append(idx)
            out_labels.append(lab)
            # Background images have no box to regress to: their rows are never used by the loss.
            out_targets.append(
                encode_boxes(gt[idx], props, self.bbox_reg_weights) if gt.numel() else torch.zeros_like(props)
            )
        return out_props, out_idxs, out_labels, out_targets

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
            proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(feature, proposals, image_sizes))
        class_logits, box_regression = self.box_predictor(box_features)
        if self.training:
            loss_classifier, loss_box_reg = self.fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        return self.postprocess_detections(class_logits, box_regression, proposals, image_sizes), {}
