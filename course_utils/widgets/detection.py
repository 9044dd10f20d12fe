"""Faster R-CNN explorer: what the RPN proposes and what the detector keeps, as its settings change.

Pure functions compute what is shown; ``detection_explorer`` is a thin dashboard over them.

* ``detect``: the course's ``FasterRCNN`` on one image with its test-time post-processing
  (number of RPN proposals, box score threshold, box NMS IoU) changed for that call only.
* ``proposals``: the RPN's boxes for one image, before the box head.
* ``map50``: mAP@0.5 over a list of scenes under given settings.
* ``detection_summary``: objects found, missed, extra boxes and the image's AP@0.5.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from torch import Tensor

from ..boxes import box_iou
from ..data import SHAPES
from ..detection import FasterRCNN
from ..metrics import coco_evaluate, match_detections
from ..validation import check_positive_int, check_probability, check_tensor
from ..viz import draw_boxes, show_image
from ._base import dashboard, labels_inside

Detections = dict[str, Tensor]  # boxes [K, 4] xyxy, labels [K] int64, scores [K]
Scene = tuple[Tensor, Mapping[str, Tensor]]  # image [3, H, W] and its target (boxes, labels)
CLASS_NAMES = ("background", *SHAPES)
PROPOSAL_CHOICES = (1, 5, 10, 25, 50, 100, 300)  # the explorer's numbers of RPN proposals
EXPLORER_SCENES = 30  # the default explorer shows the first scenes of the zoo detector's test set


def _check_model(model: object) -> FasterRCNN:
    if not isinstance(model, FasterRCNN):
        raise TypeError(f"model must be a course_utils.detection.FasterRCNN, got {type(model).__name__}")
    return model


def _check_image(image: object) -> Tensor:
    image = check_tensor(image, "image", ndim=3, floating=True)
    if image.shape[0] != 3:
        raise ValueError(f"image must have shape [3, H, W], got {tuple(image.shape)}")
    return image


@contextlib.contextmanager
def _settings(model: FasterRCNN, rpn_proposals: int, score_threshold: float, nms_threshold: float) -> Iterator[FasterRCNN]:
    """``model`` in eval mode with these test-time settings; its settings and every module's mode come back on exit."""
    rpn, heads = model.rpn, model.roi_heads
    modes = {module: module.training for module in model.modules()}
    saved = rpn._post_nms_top_n["testing"], heads.score_thresh, heads.nms_thresh
    try:
        rpn._post_nms_top_n["testing"], heads.score_thresh, heads.nms_thresh = rpn_proposals, score_threshold, nms_threshold
        yield model.eval()
    finally:
        rpn._post_nms_top_n["testing"], heads.score_thresh, heads.nms_thresh = saved
        for module, training in modes.items():
            module.training = training


def _checked_settings(
    model: object, score_threshold: object, nms_threshold: object, rpn_proposals: object
) -> tuple[FasterRCNN, float, float, int]:
    return (
        _check_model(model),
        check_probability(score_threshold, "score_threshold"),
        check_probability(nms_threshold, "nms_threshold"),
        check_positive_int(rpn_proposals, "rpn_proposals"),
    )


def detect(
    model: FasterRCNN, image: Tensor, score_threshold: float = 0.05, nms_threshold: float = 0.5, rpn_proposals: int = 100
) -> Detections:
    """``model``'s detections on one image with these settings (restored afterwards, even on an error).

    Args:
        model (FasterRCNN): the course's detector (run in eval mode, without gradients).
        image (Tensor[3, H, W]): float, values in [0, 1].
        score_threshold (float): keep detections scoring ``> score_threshold`` (in [0, 1]).
        nms_threshold (float): per-class NMS suppresses at IoU ``> nms_threshold`` (in [0, 1]).
        rpn_proposals (int): number of RPN proposals after NMS (>= 1) that the box head sees.

    Returns:
        dict: ``boxes`` (Tensor[K, 4] xyxy), ``labels`` (int64 [K]), ``scores`` (Tensor[K], decreasing).
    """
    model, score_threshold, nms_threshold, rpn_proposals = _checked_settings(model, score_threshold, nms_threshold, rpn_proposals)
    image = _check_image(image)
    with torch.no_grad(), _settings(model, rpn_proposals, score_threshold, nms_threshold):
        return model([image])[0]


def proposals(model: FasterRCNN, image: Tensor, rpn_proposals: int = 100) -> Tensor:
    """The RPN's best ``rpn_proposals`` boxes (after its NMS) for one image [3, H, W]: Tensor[K, 4] in the image's pixels."""
    model = _check_model(model)
    image = _check_image(image)
    rpn_proposals = check_positive_int(rpn_proposals, "rpn_proposals")
    heads = model.roi_heads
    with torch.no_grad(), _settings(model, rpn_proposals, heads.score_thresh, heads.nms_thresh):
        batch, _ = model.transform([image])
        boxes, _ = model.rpn(batch, model.backbone(batch.tensors))
        original = [(int(image.shape[1]), int(image.shape[2]))]
        return model.transform.postprocess([{"boxes": boxes[0]}], batch.image_sizes, original)[0]["boxes"]


def map50(
    model: FasterRCNN, scenes: Sequence[Scene], score_threshold: float = 0.05, nms_threshold: float = 0.5, rpn_proposals: int = 100
) -> float:
    """COCO mAP@0.5 of ``model`` over ``scenes`` (one batch) with these settings."""
    model, score_threshold, nms_threshold, rpn_proposals = _checked_settings(model, score_threshold, nms_threshold, rpn_proposals)
    with torch.no_grad(), _settings(model, rpn_proposals, score_threshold, nms_threshold):
        preds = model([_check_image(image) for image, _ in scenes])
    return coco_evaluate(preds, [target for _, target in scenes])["map_50"]


def detection_summary(detections: Mapping[str, Tensor], target: Mapping[str, Tensor], iou_threshold: float = 0.5) -> dict[str, float]:
    """What the detector got right and wrong on one image.

    Returns:
        dict: ``detections`` (boxes kept), ``found`` (objects matched by a detection of their class
        at IoU >= ``iou_threshold``, greedily by score), ``missed`` (objects not found), ``extra``
        (detections that match no object) and ``ap``, the image's COCO mAP@0.5 (-1 without objects).
    """
    found = sum(
        int(match_detections([detections], [target], int(label), iou_threshold)[1].sum()) for label in torch.unique(detections["labels"])
    )
    return {
        "detections": len(detections["boxes"]),
        "found": found,
        "missed": len(target["boxes"]) - found,
        "extra": len(detections["boxes"]) - found,
        "ap": coco_evaluate([detections], [target])["map_50"],
    }


def detection_figure(
    model: FasterRCNN,
    image: Tensor,
    target: Mapping[str, Tensor],
    score_threshold: float = 0.05,
    nms_threshold: float = 0.5,
    rpn_proposals: int = 100,
    class_names: Sequence[str] = CLASS_NAMES,
) -> plt.Figure:
    """Left: the RPN's proposals (thin, translucent) over the ground truth. Right: the detections
    (class colour, score) over the ground truth (white, dotted). Titles: counts and the image's AP@0.5."""
    detections = detect(model, image, score_threshold, nms_threshold, rpn_proposals)
    boxes = proposals(model, image, rpn_proposals)
    summary = detection_summary(detections, target)
    covered = int((box_iou(boxes, target["boxes"]).amax(0) >= 0.5).sum()) if len(boxes) else 0
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4.8))
    show_image(image, left)
    draw_boxes(None, boxes, ax=left, color="gold", linewidth=0.8)
    for patch in left.patches:
        patch.set_alpha(0.45)
    draw_boxes(None, target["boxes"], ax=left, color="white", linestyle=":")
    left.set_title(f"RPN: {len(boxes)} proposals (at most {rpn_proposals})\n"
                   f"objects with a proposal at IoU ≥ 0.5: {covered}/{len(target['boxes'])}", fontsize=9)
    show_image(image, right)
    draw_boxes(None, target["boxes"], ax=right, color="white", linestyle=":")
    draw_boxes(None, detections["boxes"], detections["labels"], detections["scores"], class_names, ax=right)
    right.set_title(f"{summary['detections']} detections (score > {score_threshold:.2f}, NMS at IoU > {nms_threshold:.2f})\n"
                    f"found {summary['found']}/{len(target['boxes'])}, extra {summary['extra']}, AP@0.5 {summary['ap']:.2f}",
                    fontsize=9)  # fmt: skip
    for ax in (left, right):
        labels_inside(ax)
    fig.tight_layout()
    return fig


@functools.lru_cache(maxsize=1)
def _zoo_detector() -> FasterRCNN:
    """The zoo's ``faster_rcnn`` (loaded once)."""
    from .. import zoo  # imported here: loading weights is only needed by the live widget

    return zoo.load("faster_rcnn")


@functools.lru_cache(maxsize=1)
def _zoo_scenes(count: int = EXPLORER_SCENES) -> list[Scene]:
    """The first ``count`` scenes of the zoo detector's test set."""
    from .. import zoo

    test_set = zoo.load_test_set("faster_rcnn")
    return [test_set[i] for i in range(count)]


def detection_explorer(model: FasterRCNN | None = None, scenes: Sequence[Scene] | None = None) -> W.VBox:
    """Scene, score threshold, NMS IoU and number of RPN proposals → proposals, detections, AP.

    Defaults: the zoo's ``faster_rcnn`` on the first 30 scenes of its test set. The suptitle gives
    the mAP@0.5 over all the scenes at the current settings (computed once per setting).
    """
    model = _check_model(_zoo_detector() if model is None else model)
    scenes = list(_zoo_scenes() if scenes is None else scenes)
    if not scenes:
        raise ValueError("scenes is empty: give at least one (image, target) pair")
    slider = functools.partial(W.FloatSlider, min=0.0, max=1.0, step=0.05, continuous_update=False)
    controls = {
        "index": W.IntSlider(value=0, min=0, max=len(scenes) - 1, description="scene", continuous_update=False),
        "score_threshold": slider(value=0.05, description="min score"),
        "nms_threshold": slider(value=0.5, description="NMS IoU"),
        "rpn_proposals": W.SelectionSlider(options=PROPOSAL_CHOICES, value=100, description="proposals", continuous_update=False),
    }

    @functools.lru_cache(maxsize=None)
    def overall(score_threshold: float, nms_threshold: float, rpn_proposals: int) -> float:
        return map50(model, scenes, score_threshold, nms_threshold, rpn_proposals)

    def render(index: int, score_threshold: float, nms_threshold: float, rpn_proposals: int) -> plt.Figure:
        image, target = scenes[index]
        fig = detection_figure(model, image, target, score_threshold, nms_threshold, rpn_proposals)
        value = overall(score_threshold, nms_threshold, rpn_proposals)
        fig.suptitle(f"mAP@0.5 over the {len(scenes)} scenes at these settings: {value:.3f}", fontsize=10)
        fig.tight_layout()
        return fig

    return dashboard(render, controls, "Faster R-CNN: proposals and detections")
