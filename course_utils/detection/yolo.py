"""YOLO, version 1 style: one pass, an S×S grid, B boxes and one class distribution per cell.

The pipeline::

    list of images [3, H_i, W_i]
      │ resize to image_size × image_size (aspect ratio not kept, as YOLOv1), normalize
      │ backbone            [N, 3, s, s] -> [N, C, h, w], pooled to the grid: [N, C, S, S]
      │ head                3x3 conv + ReLU, 1x1 conv -> [N, B * 5 + K, S, S]
      ▼ per cell            B × (x, y, √w, √h, confidence), all in [0, 1] (sigmoid); K class logits
      │ decode_predictions  boxes in pixels; score = confidence × class probability
      ▼ post-processing     score > score_thresh, per-class NMS, detections_per_img best
        list of {"boxes", "labels", "scores"} in each image's own pixels

A cell is **responsible** for an object when the object's centre falls in it; of its B boxes, the
one whose prediction overlaps the object most (IoU) learns it. One cell holds one object: when two
centres share a cell, the larger object is kept (the grid's known weakness). The loss (summed over
the batch, divided by the number of images), as in the YOLOv1 paper:

* ``loss_box``: λ_coord × squared error of x, y, √w, √h of the responsible boxes;
* ``loss_objectness``: squared error of their confidence against their (detached) IoU with the object;
* ``loss_noobj``: λ_noobj × squared confidence of every other box;
* ``loss_classifier``: squared error of the class probabilities of the cells holding an object.

Labels follow torchvision's convention: ``num_classes`` counts the background, objects are
labelled 1 .. num_classes - 1.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..boxes import batched_nms
from ..validation import check_non_negative_number, check_positive_int, check_probability
from ._utils import check_images, check_targets, clip_boxes_to_image, remove_small_boxes
from .backbone import SmallBackbone
from .transform import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["YOLO", "YOLOTargets", "encode_targets", "decode_predictions", "yolo_loss", "YOLO_LOSS_NAMES"]

YOLO_LOSS_NAMES = ("loss_box", "loss_objectness", "loss_noobj", "loss_classifier")
MIN_BOX_SIZE = 1e-2  # detections thinner than this (pixels) are dropped


class YOLOTargets(NamedTuple):
    """Which cell and box learn which object, for a batch of ``M`` kept objects.

    ``image``, ``row``, ``col`` (int64 [M]): the responsible cell; ``xywh`` (Tensor[M, 4]): the
    object's centre offset in its cell (x, y in [0, 1)) and √(width / image), √(height / image);
    ``label`` (int64 [M]): class index in 0 .. K - 1; ``box`` (Tensor[M, 4]): its xyxy box in pixels.
    """

    image: Tensor
    row: Tensor
    col: Tensor
    xywh: Tensor
    label: Tensor
    box: Tensor


def encode_targets(targets: Sequence[dict[str, Tensor]], grid_size: int, image_size: int) -> YOLOTargets:
    """Assign each object to the cell holding its centre; of two objects in one cell, the larger
    (ties: the first) is kept. Boxes are xyxy pixels of the ``image_size`` × ``image_size`` input;
    labels are 1-based (``label`` in the result is 0-based). Vectorized over all objects."""
    cell = image_size / grid_size
    boxes = torch.cat([t["boxes"] for t in targets]).float() if targets else torch.zeros(0, 4)
    labels = torch.cat([t["labels"] for t in targets]).long() if targets else torch.zeros(0, dtype=torch.int64)
    image = torch.cat([torch.full((len(t["boxes"]),), i, dtype=torch.int64) for i, t in enumerate(targets)]) if targets else labels
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
    col, row = (centre / cell).floor().long().clamp(0, grid_size - 1).unbind(1)
    # one object per cell: sort by area (largest first, stable), then by cell (stable); keep each cell's first
    by_area = torch.sort(size.prod(1), descending=True, stable=True).indices
    key = (image * grid_size + row) * grid_size + col
    order = by_area[torch.sort(key[by_area], stable=True).indices]
    first = torch.ones(len(order), dtype=torch.bool)
    first[1:] = key[order][1:] != key[order][:-1]
    keep = torch.sort(order[first]).values  # back in input order
    offset = centre[keep] / cell - torch.stack([col[keep], row[keep]], 1)
    root_size = (size[keep] / image_size).sqrt()
    return YOLOTargets(image[keep], row[keep], col[keep], torch.cat([offset, root_size], 1), labels[keep] - 1, boxes[keep])


def _cell_boxes(xywh: Tensor, row: Tensor, col: Tensor, grid_size: int, image_size: int) -> Tensor:
    """(x, y, √w, √h) of boxes in cells (row, col) -> xyxy pixels. xywh [..., 4], row/col broadcastable to [...]."""
    cell = image_size / grid_size
    cx = (col + xywh[..., 0]) * cell
    cy = (row + xywh[..., 1]) * cell
    w, h = xywh[..., 2] ** 2 * image_size, xywh[..., 3] ** 2 * image_size
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def _paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of ``a[..., 4]`` and ``b[..., 4]`` element by element (xyxy); 0 where the union is empty."""
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1) + (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def yolo_loss(
    boxes: Tensor, class_logits: Tensor, targets: YOLOTargets, image_size: int, lambda_coord: float = 5.0, lambda_noobj: float = 0.5
) -> dict[str, Tensor]:
    """The YOLOv1 loss of a batch (see the module docstring).

    Args:
        boxes: Tensor[N, S, S, B, 5], each (x, y, √w, √h, confidence) in [0, 1].
        class_logits: Tensor[N, S, S, K].
        targets: from ``encode_targets`` for the same grid and image size.

    Returns:
        dict with ``loss_box``, ``loss_objectness``, ``loss_noobj``, ``loss_classifier`` (scalars).
    """
    n, grid_size = boxes.shape[0], boxes.shape[1]
    cell_preds = boxes[targets.image, targets.row, targets.col]  # [M, B, 5]
    predicted = _cell_boxes(cell_preds[..., :4].detach(), targets.row[:, None], targets.col[:, None], grid_size, image_size)
    ious = _paired_iou(predicted, targets.box[:, None, :])  # [M, B]
    best = ious.argmax(dim=1)  # the responsible box of each object (ties: the first)
    responsible = cell_preds[torch.arange(len(best)), best]  # [M, 5]
    loss_box = lambda_coord * ((responsible[:, :4] - targets.xywh) ** 2).sum()
    loss_objectness = ((responsible[:, 4] - ious[torch.arange(len(best)), best]) ** 2).sum()
    noobj = torch.ones(boxes.shape[:4], dtype=torch.bool, device=boxes.device)
    noobj[targets.image, targets.row, targets.col, best] = False
    loss_noobj = lambda_noobj * (boxes[..., 4][noobj] ** 2).sum()
    probabilities = F.softmax(class_logits[targets.image, targets.row, targets.col], dim=-1)  # [M, K]
    one_hot = F.one_hot(targets.label, class_logits.shape[-1]).to(probabilities.dtype)
    loss_classifier = ((probabilities - one_hot) ** 2).sum()
    return {
        "loss_box": loss_box / n,
        "loss_objectness": loss_objectness / n,
        "loss_noobj": loss_noobj / n,
        "loss_classifier": loss_classifier / n,
    }


def decode_predictions(boxes: Tensor, class_logits: Tensor, image_size: int) -> tuple[Tensor, Tensor]:
    """Every (cell, box, class) candidate of each image.

    Args:
        boxes: Tensor[N, S, S, B, 5]; class_logits: Tensor[N, S, S, K].

    Returns:
        xyxy pixel boxes Tensor[N, S·S·B, 4] and scores Tensor[N, S·S·B, K] (confidence × class
        probability), ordered by row, column, then box.
    """
    n, grid_size, _, b, _ = boxes.shape
    rows = torch.arange(grid_size, device=boxes.device, dtype=boxes.dtype).view(1, -1, 1, 1)
    cols = torch.arange(grid_size, device=boxes.device, dtype=boxes.dtype).view(1, 1, -1, 1)
    xyxy = _cell_boxes(boxes[..., :4], rows, cols, grid_size, image_size)  # [N, S, S, B, 4]
    scores = boxes[..., 4:5] * F.softmax(class_logits, dim=-1)[:, :, :, None, :]  # [N, S, S, B, K]
    return xyxy.reshape(n, -1, 4), scores.reshape(n, grid_size * grid_size * b, -1)


class YOLOHead(nn.Module):
    """3x3 conv + ReLU, then a 1x1 conv to ``B * 5 + K`` maps: [N, C, S, S] -> [N, B * 5 + K, S, S]."""

    def __init__(self, in_channels: int, boxes_per_cell: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.predict = nn.Conv2d(in_channels, boxes_per_cell * 5 + num_classes, 1)

    def forward(self, feature: Tensor) -> Tensor:
        return self.predict(F.relu(self.conv(feature)))


class YOLO(nn.Module):
    """The course's YOLOv1-style detector; inputs and outputs as torchvision's detection models.

    * eval: ``model(images)`` with images a list of float Tensor[3, H_i, W_i] in [0, 1] ->
      list of {"boxes" Tensor[D, 4] xyxy in the image's pixels, "labels" int64 [D], "scores" [D]};
    * training: ``model(images, targets)`` -> the four losses of ``yolo_loss``.

    Args:
        num_classes: classes including the background (labels 1 .. num_classes - 1).
        backbone: any module [N, 3, s, s] -> [N, C, h, w] with ``out_channels``, its map average-pooled to
            S × S; default ``SmallBackbone(32, extra_blocks=1)`` (stride 16: 8 × 8 on 128 px).
        image_size: every image is resized to ``image_size`` × ``image_size``; a multiple of ``grid_size``.
        grid_size: S, cells per side. boxes_per_cell: B >= 1.
        lambda_coord, lambda_noobj: the loss weights of the paper (5 and 0.5).
        score_thresh, nms_thresh, detections_per_img: post-processing, as torchvision's box_* settings.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: nn.Module | None = None,
        image_size: int = 128,
        grid_size: int = 8,
        boxes_per_cell: int = 2,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int(num_classes, "num_classes")
        if self.num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
        self.image_size = check_positive_int(image_size, "image_size")
        self.grid_size = check_positive_int(grid_size, "grid_size")
        if self.image_size % self.grid_size:
            raise ValueError(f"grid_size {grid_size} must divide image_size {image_size} (cells of whole pixels)")
        self.boxes_per_cell = check_positive_int(boxes_per_cell, "boxes_per_cell")
        self.lambda_coord = check_non_negative_number(lambda_coord, "lambda_coord")
        self.lambda_noobj = check_non_negative_number(lambda_noobj, "lambda_noobj")
        self.score_thresh = check_probability(score_thresh, "score_thresh")
        self.nms_thresh = check_probability(nms_thresh, "nms_thresh")
        self.detections_per_img = check_positive_int(detections_per_img, "detections_per_img")
        self.backbone = SmallBackbone(32, extra_blocks=1) if backbone is None else backbone
        channels = check_positive_int(getattr(self.backbone, "out_channels", None), "backbone.out_channels")
        self.head = YOLOHead(channels, self.boxes_per_cell, self.num_classes - 1)
        self.register_buffer("image_mean", torch.tensor([float(m) for m in image_mean]).view(-1, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor([float(s) for s in image_std]).view(-1, 1, 1), persistent=False)

    def predict(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        """Normalized batch [N, 3, s, s] -> boxes Tensor[N, S, S, B, 5] in [0, 1], class logits Tensor[N, S, S, K]."""
        feature = F.adaptive_avg_pool2d(self.backbone(batch), self.grid_size)
        out = self.head(feature).permute(0, 2, 3, 1)  # [N, S, S, B * 5 + K]
        n, s = out.shape[0], self.grid_size
        boxes = torch.sigmoid(out[..., : 5 * self.boxes_per_cell]).reshape(n, s, s, self.boxes_per_cell, 5)
        return boxes, out[..., 5 * self.boxes_per_cell :]

    def _resize(self, images: list[Tensor]) -> Tensor:
        size = (self.image_size, self.image_size)
        resized = [F.interpolate(im[None], size=size, mode="bilinear", align_corners=False)[0] for im in images]
        return (torch.stack(resized) - self.image_mean) / self.image_std

    def forward(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]] | None = None):
        images = check_images(images, len(self.image_mean))
        scales = [(self.image_size / im.shape[2], self.image_size / im.shape[1]) for im in images]  # (x, y)
        if self.training:
            if targets is None:
                raise ValueError("targets is required in training mode (the losses need the ground truth)")
            targets = check_targets(targets, len(images), self.num_classes)
            resized = [
                {**t, "boxes": t["boxes"] * torch.tensor([sx, sy, sx, sy], dtype=t["boxes"].dtype, device=t["boxes"].device)}
                for t, (sx, sy) in zip(targets, scales)
            ]
            boxes, class_logits = self.predict(self._resize(images))
            encoded = encode_targets(resized, self.grid_size, self.image_size)
            return yolo_loss(boxes, class_logits, encoded, self.image_size, self.lambda_coord, self.lambda_noobj)
        boxes, class_logits = self.predict(self._resize(images))
        candidates, scores = decode_predictions(boxes, class_logits, self.image_size)
        return [self._postprocess(c, s, im, scale) for c, s, im, scale in zip(candidates, scores, images, scales)]

    def _postprocess(self, boxes: Tensor, scores: Tensor, image: Tensor, scale: tuple[float, float]) -> dict[str, Tensor]:
        """One image's candidates (boxes [P, 4], scores [P, K]) -> its detections in its own pixels."""
        k = scores.shape[1]
        labels = torch.arange(1, k + 1, device=scores.device).expand_as(scores).reshape(-1)
        boxes, scores = boxes[:, None, :].expand(-1, k, -1).reshape(-1, 4), scores.reshape(-1)
        keep = torch.where(scores > self.score_thresh)[0]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        sx, sy = scale
        boxes = clip_boxes_to_image(boxes / torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype, device=boxes.device),
                                    (image.shape[1], image.shape[2]))
        keep = remove_small_boxes(boxes, MIN_BOX_SIZE)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
        return {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}

