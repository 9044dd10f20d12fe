"""NMS and mAP: a simulated detector, greedy NMS traced step by step, PR curves and their AP.

Pure functions compute what is shown; ``nms_explorer`` and ``pr_curve_explorer`` are thin
dashboards over them.

* ``simulate_detections``: realistic raw detector output made from the ground truth (no
  trained detector needed): jittered duplicates, false positives, misses, confused labels.
* ``filter_detections``: the usual post-processing, a score threshold then (batched) NMS.
* ``nms_steps``: greedy NMS as a list of rounds (who is kept, whom it suppresses).
* ``draw_pr_curve`` and ``pr_curve_figure``: one class's precision-recall curve (computed by
  ``metrics.match_detections`` and ``metrics.pr_curve``), its envelope and how AP reads it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from torch import Tensor

from ..boxes import batched_nms, box_convert, box_iou, nms
from ..data import SHAPES, SyntheticScenes, make_scene
from ..metrics import average_precision, match_detections, pr_curve, precision_envelope
from ..validation import (
    check_boxes,
    check_detections,
    check_finite,
    check_labelled_boxes,
    check_per_image_pairs,
    check_positive_int,
    check_positive_number,
    check_probability,
    check_same_length,
    check_tensor,
)
from ..viz import draw_boxes, show_image
from ._base import dashboard, labels_inside

Detections = dict[str, Tensor]  # boxes [N, 4] xyxy, scores [N], labels [N] (int64)
AP_METHODS = ("voc11", "all_points", "coco101")
CLASS_NAMES = ("background", *SHAPES)
# Crowded scenes (2 to 6 objects, neighbours overlapping up to IoU 0.5): NMS has real work there.
SCENE_OPTIONS = {"num_objects": (2, 6), "max_overlap": 0.5}


# ---------------------------------------------------------------------------------------------
# A simulated detector
# ---------------------------------------------------------------------------------------------
def simulate_detections(
    target: Mapping[str, Tensor],
    seed: int,
    *,
    image_size: int = 128,
    num_classes: int = len(SHAPES),
    miss_rate: float = 0.1,
    max_duplicates: int = 5,
    jitter: float = 0.2,
    wrong_label_rate: float = 0.1,
    false_positives: float = 1.0,
) -> Detections:
    """Raw output of an imaginary detector, made from the ground truth: what NMS and mAP work on.

    Each object is missed with probability ``miss_rate``; otherwise it gets 1 to
    ``max_duplicates`` boxes. Each duplicate has a sloppiness ``s`` uniform in [0, 1]: its centre
    moves by ``s * jitter`` box sides (normal noise) and its width and height are scaled by
    ``exp(s * jitter * noise)``; its score is the object's confidence (uniform in [0.5, 1]) times
    ``1 - 0.6 s``, plus a little noise: the sloppier the box, the lower its score. A duplicate gets
    a wrong label with probability ``wrong_label_rate`` (and 0.7 times the score). On top of that,
    a Poisson number (mean ``false_positives``) of boxes lands anywhere with a random label and a
    score ``0.9 u²`` (u uniform): mostly low, now and then a confident mistake. Scores are clipped
    to [0.01, 0.99]. The same ``seed`` gives the same detections.

    Args:
        target (dict): ``boxes`` (Tensor[N, 4] xyxy) and ``labels`` (int Tensor[N], 1..num_classes).
        seed (int): seed of this image's randomness.
        image_size (int): side of the square image; boxes are clipped to it.
        num_classes (int): labels are drawn from 1..num_classes.

    Returns:
        dict: ``boxes`` (float32 Tensor[D, 4] xyxy), ``scores`` (float32 Tensor[D] in (0, 1)) and
        ``labels`` (int64 Tensor[D]), in no particular order.
    """
    gt_boxes, gt_labels = check_labelled_boxes(target)
    seed = check_positive_int(seed, "seed", allow_zero=True)
    image_size = check_positive_int(image_size, "image_size")
    num_classes = check_positive_int(num_classes, "num_classes")
    miss_rate = check_probability(miss_rate, "miss_rate")
    max_duplicates = check_positive_int(max_duplicates, "max_duplicates")
    jitter = check_probability(jitter, "jitter")
    wrong_label_rate = check_probability(wrong_label_rate, "wrong_label_rate")
    if false_positives != 0:
        false_positives = check_positive_number(false_positives, "false_positives")
    g = torch.Generator().manual_seed(seed)
    rand = functools.partial(torch.rand, generator=g)
    randn = functools.partial(torch.randn, generator=g)
    n = len(gt_boxes)

    # True detections: a few sloppy copies of each object that is found.
    found = rand(n) >= miss_rate
    copies = torch.randint(1, max_duplicates + 1, (n,), generator=g) * found
    source = torch.repeat_interleave(torch.arange(n), copies)  # the object each copy comes from
    cx, cy, w, h = box_convert(gt_boxes.float(), "xyxy", "cxcywh")[source].unbind(1)
    sloppiness = rand(len(source))
    spread = sloppiness * jitter
    cx = (cx + spread * w * randn(len(source))).clamp(0, image_size)
    cy = (cy + spread * h * randn(len(source))).clamp(0, image_size)
    w, h = w * torch.exp(spread * randn(len(source))), h * torch.exp(spread * randn(len(source)))
    confidence = 0.5 + 0.5 * rand(n)
    scores = confidence[source] * (1 - 0.6 * sloppiness) + 0.03 * randn(len(source))
    labels = gt_labels[source].clone()
    confused = rand(len(source)) < wrong_label_rate
    if num_classes > 1:
        shift = torch.randint(1, num_classes, (len(source),), generator=g)  # any class but the right one
        labels = torch.where(confused, (labels - 1 + shift) % num_classes + 1, labels)
        scores = torch.where(confused, 0.7 * scores, scores)

    # False positives: boxes of a typical object size anywhere in the image.
    n_fp = int(torch.poisson(torch.tensor([float(false_positives)]), generator=g))
    fp_size = 12 + 36 * rand(n_fp, 2)
    fp_centre = image_size * rand(n_fp, 2)
    fp_labels = torch.randint(1, num_classes + 1, (n_fp,), generator=g)
    fp_scores = 0.9 * rand(n_fp) ** 2  # mostly low, now and then a confident mistake

    boxes = torch.cat([torch.stack([cx, cy, w, h], 1), torch.cat([fp_centre, fp_size], 1)])
    boxes = box_convert(boxes, "cxcywh", "xyxy").clamp(0, image_size)
    order = torch.randperm(len(boxes), generator=g)  # a detector's raw output is in anchor order, not by score
    return {
        "boxes": boxes[order],
        "scores": torch.cat([scores, fp_scores]).clamp(0.01, 0.99)[order],
        "labels": torch.cat([labels, fp_labels])[order],
    }


def filter_detections(
    detections: Mapping[str, Tensor], score_threshold: float = 0.05, iou_threshold: float = 0.5, class_aware: bool = True
) -> Detections:
    """A detector's post-processing: drop scores below ``score_threshold``, then NMS.

    With ``class_aware`` (the usual choice) NMS runs per class (``batched_nms``): a box only
    suppresses boxes of its own label. ``iou_threshold=1`` suppresses nothing.

    Returns:
        dict: the kept ``boxes``, ``scores``, ``labels``, by decreasing score.
    """
    boxes, scores, labels = check_detections(detections)
    score_threshold = check_probability(score_threshold, "score_threshold")
    iou_threshold = check_probability(iou_threshold, "iou_threshold")
    confident = torch.nonzero(scores >= score_threshold).flatten()
    boxes, scores, labels = boxes[confident], scores[confident], labels[confident]
    keep = batched_nms(boxes, scores, labels, iou_threshold) if class_aware else nms(boxes, scores, iou_threshold)
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


# ---------------------------------------------------------------------------------------------
# Greedy NMS, one round at a time
# ---------------------------------------------------------------------------------------------
def nms_steps(boxes: Tensor, scores: Tensor, iou_threshold: float) -> list[tuple[int, Tensor]]:
    """Greedy NMS traced round by round (the kept boxes are those of ``boxes.nms``).

    Each round takes the best-scoring box still in play, keeps it, and suppresses the boxes in
    play whose IoU with it is > ``iou_threshold``.

    Args:
        boxes (Tensor[N, 4]): xyxy boxes.
        scores (Tensor[N]): one score per box.
        iou_threshold (float): in [0, 1].

    Returns:
        list of (int, Tensor[S] int64): per round, the kept box and the boxes it suppressed.
    """
    boxes = check_boxes(boxes, "boxes")
    scores = check_finite(check_tensor(scores, "scores", ndim=1), "scores")
    check_same_length(boxes, scores, "boxes", "scores")
    iou_threshold = check_probability(iou_threshold, "iou_threshold")
    overlaps = box_iou(boxes, boxes).double() > iou_threshold  # [N, N]
    in_play = torch.sort(scores, descending=True, stable=True).indices
    rounds = []
    while len(in_play):
        best, rest = int(in_play[0]), in_play[1:]
        suppressed = overlaps[best, rest]
        rounds.append((best, rest[suppressed]))
        in_play = rest[~suppressed]
    return rounds


def nms_steps_figure(
    image: Tensor,
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float,
    max_rounds: int = 5,
    ncols: int = 3,
    labels: Tensor | None = None,
    class_names: Sequence[str] | None = None,
) -> plt.Figure:
    """The first ``max_rounds`` rounds of greedy NMS, one panel each, then the result, ``ncols`` per row.

    In each panel: boxes kept so far (green), the box kept this round (gold, with its score),
    the boxes it suppresses (red, dashed), the boxes still in play (white, dotted). With
    ``labels`` (Tensor[N]) and ``class_names``, kept boxes are captioned with their class name.
    """
    rounds = nms_steps(boxes, scores, iou_threshold)
    if labels is not None:
        labels = check_tensor(labels, "labels")
        if labels.shape != (len(boxes),):
            raise ValueError(f"labels must have shape [{len(boxes)}], got {tuple(labels.shape)}")

    def named(index: list[int]) -> dict:
        return {} if labels is None else {"labels": labels[index], "class_names": class_names}

    shown = rounds[: check_positive_int(max_rounds, "max_rounds")]
    ncols = min(check_positive_int(ncols, "ncols"), len(shown) + 1)
    nrows = -(-(len(shown) + 1) // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.7 * nrows), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(shown) + 1 :]:
        fig.delaxes(ax)
    in_play = torch.ones(len(boxes), dtype=torch.bool)
    kept: list[int] = []
    for step, (ax, (best, suppressed)) in enumerate(zip(axes, shown), 1):
        in_play[best] = in_play[suppressed] = False
        show_image(image, ax)
        draw_boxes(None, boxes[in_play], ax=ax, color="white", linestyle=":")
        draw_boxes(None, boxes[kept], ax=ax, color="limegreen")
        draw_boxes(None, boxes[suppressed], ax=ax, color="red", linestyle="--")
        draw_boxes(None, boxes[[best]], scores=scores[[best]], ax=ax, color="gold", **named([best]))
        ax.set_title(f"round {step}: keep #{best}, suppress {len(suppressed)}", fontsize=9)
        kept.append(best)
    final = [best for best, _ in rounds]
    result = axes[len(shown)]
    show_image(image, result)
    draw_boxes(None, boxes[final], scores=scores[final], ax=result, color="limegreen", **named(final))
    result.set_title(f"result: {len(final)} of {len(boxes)} boxes kept", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Precision and recall of one class
# ---------------------------------------------------------------------------------------------
def _interpolation_points(method: str) -> np.ndarray:
    return np.arange(0.0, 1.1, 0.1) if method == "voc11" else np.linspace(0.0, 1.0, 101)


def draw_pr_curve(recall: Tensor, precision: Tensor, method: str = "all_points", ax: Axes | None = None) -> Axes:
    """A PR curve (grey), its envelope (black) and how ``method`` reads AP from it.

    ``"all_points"`` shades the area under the envelope; ``"voc11"`` and ``"coco101"`` mark the
    envelope's value at the 11 or 101 recall points (0 past the last recall).
    """
    if method not in AP_METHODS:
        raise ValueError(f"method must be one of {AP_METHODS}, got {method!r}")
    recall = check_tensor(recall, "recall", ndim=1).double()
    check_same_length(recall, check_tensor(precision, "precision", ndim=1), "recall", "precision")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3.5))
    # The envelope is a staircase: from one recall to the next, the level of the next point; 0 past the end.
    edges = np.append(0.0, recall.numpy())  # [D + 1]
    levels = np.append(precision_envelope(precision.double()).numpy(), 0.0)  # [D + 1]
    ax.plot(recall.numpy(), precision.numpy(), color="0.6", lw=1, label="precision")
    ax.step(edges, levels, where="post", color="black", lw=1.5, label="envelope")
    if method == "all_points":
        ax.fill_between(edges, levels, step="post", color="tab:blue", alpha=0.25)
    else:
        points = _interpolation_points(method)
        heights = levels[np.searchsorted(recall.numpy(), points, side="left")]
        ax.plot(points, heights, "o", color="tab:blue", ms=5 if method == "voc11" else 2.5)
    ap = average_precision(recall, precision, method)
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.05), xlabel="recall", ylabel="precision", title=f"{method}: AP = {ap:.3f}")
    ax.title.set_fontsize(10)
    return ax


# ---------------------------------------------------------------------------------------------
# Dashboards
# ---------------------------------------------------------------------------------------------
def nms_summary(
    detections: Mapping[str, Tensor], target: Mapping[str, Tensor], iou_threshold: float, score_threshold: float, class_aware: bool = True
) -> dict[str, int]:
    """What post-processing did to one image's detections.

    Returns:
        dict: ``raw`` (boxes in), ``above_score`` (left after the score threshold), ``kept`` (after
        NMS), ``suppressed`` (by NMS), ``found`` (objects matched by a kept box of their class at
        IoU >= 0.5), ``missed`` (objects not found) and ``extra`` (kept boxes that match no object).
    """
    gt_boxes, gt_labels = check_labelled_boxes(target)
    raw, _, _ = check_detections(detections)
    above = filter_detections(detections, score_threshold, iou_threshold=1.0)
    kept = filter_detections(detections, score_threshold, iou_threshold, class_aware)
    found = sum(
        int(match_detections([kept], [target], int(label), 0.5)[1].sum()) for label in torch.unique(kept["labels"])
    )
    return {
        "raw": len(raw),
        "above_score": len(above["boxes"]),
        "kept": len(kept["boxes"]),
        "suppressed": len(above["boxes"]) - len(kept["boxes"]),
        "found": found,
        "missed": len(gt_boxes) - found,
        "extra": len(kept["boxes"]) - found,
    }


def nms_figure(seed: int, iou_threshold: float = 0.5, score_threshold: float = 0.3, class_aware: bool = True) -> plt.Figure:
    """One scene's simulated detections before (left) and after (right) score threshold + NMS.

    Right: kept boxes in their class colour with their score, suppressed ones grey and dashed,
    the ground truth white and dotted.
    """
    image, target = make_scene(seed, **SCENE_OPTIONS)
    detections = simulate_detections(target, seed)
    above = filter_detections(detections, score_threshold, iou_threshold=1.0)
    kept = filter_detections(detections, score_threshold, iou_threshold, class_aware)
    summary = nms_summary(detections, target, iou_threshold, score_threshold, class_aware)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4.6))
    draw_boxes(image, above["boxes"], above["labels"], class_names=CLASS_NAMES, ax=left)
    left.set_title(f"{summary['raw']} raw boxes, {summary['above_score']} with score ≥ {score_threshold:.2f}", fontsize=9)
    draw_boxes(image, above["boxes"], ax=right, color="0.6", linestyle="--")
    draw_boxes(None, target["boxes"], ax=right, color="white", linestyle=":")
    draw_boxes(None, kept["boxes"], kept["labels"], kept["scores"], CLASS_NAMES, ax=right)
    for ax in (left, right):
        labels_inside(ax)
    right.set_title(
        f"{'per-class' if class_aware else 'class-blind'} NMS at IoU > {iou_threshold:.2f}: "
        f"{summary['kept']} kept, {summary['suppressed']} suppressed\n"
        f"objects found {summary['found']}/{len(target['boxes'])}, extra boxes {summary['extra']}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def nms_explorer() -> W.VBox:
    """Scene, NMS IoU threshold, score threshold, per-class or not → kept and suppressed boxes."""
    slider = functools.partial(W.FloatSlider, min=0.0, max=1.0, step=0.05, continuous_update=False)
    controls = {
        "seed": W.IntSlider(value=0, min=0, max=200, description="scene", continuous_update=False),
        "iou_threshold": slider(value=0.5, description="NMS IoU"),
        "score_threshold": slider(value=0.3, description="min score"),
        "class_aware": W.Checkbox(value=True, description="per class (batched NMS)"),
    }
    return dashboard(nms_figure, controls, "NMS and score threshold on simulated detections")


def pr_curve_figure(
    preds: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    label: int,
    iou_threshold: float = 0.5,
    method: str = "all_points",
    class_names: Sequence[str] = CLASS_NAMES,
) -> plt.Figure:
    """The PR curve of class ``label`` at ``iou_threshold``, its envelope and its AP three ways."""
    _, hits, num_gt = match_detections(preds, targets, label, iou_threshold)
    if num_gt == 0:
        raise ValueError(f"no ground-truth object has label {label}")
    recall, precision = pr_curve(hits, num_gt)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    draw_pr_curve(recall, precision, method, ax)
    aps = "   ".join(f"{m} {average_precision(recall, precision, m):.3f}" for m in AP_METHODS)
    ax.set_title(f"{class_names[label]} at IoU ≥ {iou_threshold:.2f}: {int(hits.sum())}/{num_gt} found\nAP  {aps}", fontsize=9)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


@functools.lru_cache(maxsize=1)
def _default_data(num_scenes: int = 100) -> tuple[list[Detections], list[dict[str, Tensor]]]:
    """Post-processed simulated detections and targets of ``num_scenes`` crowded scenes (seed 1)."""
    targets = [target for _, target in SyntheticScenes(num_scenes, seed=1, **SCENE_OPTIONS)]
    preds = [filter_detections(simulate_detections(target, seed=i)) for i, target in enumerate(targets)]
    return preds, targets


def pr_curve_explorer(
    preds: Sequence[Mapping[str, Tensor]] | None = None,
    targets: Sequence[Mapping[str, Tensor]] | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
) -> W.VBox:
    """Class, IoU threshold and AP method → PR curve, envelope and AP.

    Without ``preds``/``targets``: simulated, post-processed detections on 100 crowded shape scenes.
    """
    if (preds is None) != (targets is None):
        raise ValueError("give both preds and targets, or neither")
    if preds is None:
        preds, targets = _default_data()
    check_per_image_pairs(preds, targets)
    controls = {
        "label": W.Dropdown(options=[(name, k) for k, name in enumerate(class_names) if k > 0], value=1, description="class"),
        "iou_threshold": W.FloatSlider(value=0.5, min=0.5, max=0.95, step=0.05, description="IoU ≥", continuous_update=False),
        "method": W.ToggleButtons(options=list(AP_METHODS), value="all_points"),
    }

    def render(label: int, iou_threshold: float, method: str) -> plt.Figure:
        return pr_curve_figure(preds, targets, label, iou_threshold, method, class_names)

    return dashboard(render, controls, "Precision-recall curve and AP")
