"""Anchor explorer: pick anchor sizes, aspect ratios, stride and IoU thresholds; see which anchors match a scene's objects."""

from __future__ import annotations

from typing import Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from torch import Tensor

from ..anchors import BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS, generate_anchors, match_anchors
from ..boxes import box_iou
from ..data import ALL_CLASSES, make_scene
from ..validation import check_boxes, check_positive_int
from ..viz import PALETTE, draw_boxes, show_image
from ._base import dashboard, labels_inside

SIZE_OPTIONS = (8, 16, 24, 32, 48, 64, 96)
RATIO_OPTIONS = (0.25, 0.5, 1.0, 2.0, 4.0)
STRIDE_OPTIONS = (4, 8, 16, 32)
MAX_OUTLINES = 40  # more anchors of one kind than this are drawn by their centres, not their outlines


def _check_stride(stride: object, image_size: int) -> int:
    stride = check_positive_int(stride, "stride")
    if image_size % stride:
        raise ValueError(f"stride ({stride}) must divide image_size ({image_size}) into whole cells")
    return stride


def assign_anchors(
    boxes: Tensor,
    image_size: int,
    stride: int,
    sizes: Sequence[float],
    aspect_ratios: Sequence[float],
    high_threshold: float,
    low_threshold: float,
    allow_low_quality_matches: bool = True,
) -> dict[str, Tensor]:
    """The anchors of one square feature map and what each is matched to.

    The feature map has ``image_size // stride`` cells per side. An image without boxes makes
    every anchor background (-1), as torchvision's RPN does before it calls its matcher.

    Args:
        boxes (Tensor[G, 4]): xyxy ground-truth boxes (G may be 0).
        image_size (int): side of the square image in pixels.
        stride (int): pixels per feature-map cell; must divide ``image_size``.
        sizes, aspect_ratios: as in ``generate_anchors``.
        high_threshold, low_threshold, allow_low_quality_matches: as in ``match_anchors``.

    Returns:
        dict with ``anchors`` (Tensor[A, 4]), ``matches`` (Tensor[A]: GT index, -1 background,
        -2 ignored) and ``best_iou`` (Tensor[G]: each box's best IoU with any anchor).
    """
    boxes = check_boxes(boxes, "boxes")
    image_size = check_positive_int(image_size, "image_size")
    stride = _check_stride(stride, image_size)
    anchors = generate_anchors(image_size, image_size // stride, sizes, aspect_ratios)
    if len(boxes) == 0:
        matches = torch.full((len(anchors),), BELOW_LOW_THRESHOLD, dtype=torch.int64)
        return {"anchors": anchors, "matches": matches, "best_iou": torch.zeros(0)}
    iou = box_iou(boxes, anchors)  # [G, A]
    matches = match_anchors(iou, high_threshold, low_threshold, allow_low_quality_matches)
    return {"anchors": anchors, "matches": matches, "best_iou": iou.max(dim=1).values}


def match_counts(matches: Tensor) -> dict[str, int]:
    """How many anchors are ``positive`` (matched to a GT), ``ignored`` (-2) and ``negative`` (-1)."""
    return {
        "positive": int((matches >= 0).sum()),
        "ignored": int((matches == BETWEEN_THRESHOLDS).sum()),
        "negative": int((matches == BELOW_LOW_THRESHOLD).sum()),
    }


def _draw_anchors(ax, boxes: Tensor, colour, linestyle: str, linewidth: float, max_outlines: int, filled: bool) -> bool:
    """Outline ``boxes`` (xyxy) or, when there are more than ``max_outlines``, mark only their centres
    (a dot if ``filled``, else a ring).

    Returns whether the outlines were drawn.
    """
    if len(boxes) <= max_outlines:
        for x1, y1, x2, y2 in boxes.tolist():  # imshow's pixel i spans [i - 0.5, i + 0.5]
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                                   linewidth=linewidth, linestyle=linestyle))  # fmt: skip
        return True
    centres = ((boxes[:, :2] + boxes[:, 2:]) / 2).unique(dim=0)  # anchors of one cell share their centre
    ax.plot(centres[:, 0] - 0.5, centres[:, 1] - 0.5, "o", markersize=3 if filled else 3.5,
            markerfacecolor=colour if filled else "none", markeredgecolor=colour, markeredgewidth=0.9)  # fmt: skip
    return False


def anchor_figure(
    seed: int,
    sizes: Sequence[float] = (16, 32, 64),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    stride: int = 16,
    high_threshold: float = 0.7,
    low_threshold: float = 0.3,
    allow_low_quality_matches: bool = True,
    image_size: int = 128,
    max_outlines: int = MAX_OUTLINES,
) -> plt.Figure:
    """A scene (shapes and digits) with its boxes, the anchor centres (one small dot per cell), the
    ignored anchors (dotted white) and the positive anchors (dashed, in their object's colour); the
    counts in the title, a legend below.

    A dense design stays readable: on a grid of more than 16×16 cells the cell-centre dots are
    smaller and fainter, and a kind of anchor with more than ``max_outlines`` anchors is drawn by
    its anchors' centres instead of their outlines (ignored: white rings; positive: dots in their
    object's colour), which the legend says.
    """
    image, target = make_scene(seed, image_size=image_size, classes=ALL_CLASSES)
    result = assign_anchors(
        target["boxes"], image_size, stride, sizes, aspect_ratios, high_threshold, low_threshold, allow_low_quality_matches
    )
    anchors, matches = result["anchors"], result["matches"]
    fig, ax = plt.subplots(figsize=(5, 5.6))
    show_image(image, ax)
    # every cell's centre: one dot per cell (its anchors share it), fainter on a dense grid
    cells = image_size // stride
    dense = cells > 16
    centres = ((anchors[:, :2] + anchors[:, 2:]) / 2).unique(dim=0)
    ax.plot(centres[:, 0] - 0.5, centres[:, 1] - 0.5, ".", color="0.85", alpha=0.45 if dense else 0.9,
            markersize=1.5 if dense else 2.5, markeredgewidth=0)  # fmt: skip
    ignored = anchors[matches == BETWEEN_THRESHOLDS]
    ignored_outlined = _draw_anchors(ax, ignored, "white", ":", 1.0, max_outlines, filled=False)
    positives = int((matches >= 0).sum())
    positive_outlined = positives <= max_outlines
    for index, label in enumerate(target["labels"].tolist()):
        _draw_anchors(ax, anchors[matches == index], PALETTE[label % len(PALETTE)], "--", 1.5,
                      max_outlines if positive_outlined else 0, filled=True)  # fmt: skip
    draw_boxes(None, target["boxes"], target["labels"], class_names=("background", *ALL_CLASSES), ax=ax)
    labels_inside(ax)
    ax.set_xlim(-0.5, image_size - 0.5)
    ax.set_ylim(image_size - 0.5, -0.5)
    counts = match_counts(matches)
    best = ", ".join(f"{v:.2f}" for v in result["best_iou"].tolist()) or "no object"
    ax.set_title(
        f"{len(anchors)} anchors: {counts['positive']} positive · {counts['ignored']} ignored · {counts['negative']} negative\n"
        f"best IoU of each object with an anchor: {best}",
        fontsize=8,
    )

    def kind(outlined: bool, name: str, marker: dict) -> Line2D:
        if outlined:
            return Line2D([], [], color="0.5", linewidth=1.5, linestyle=marker["linestyle"], label=f"{name} anchor")
        return Line2D([], [], color="0.5", linestyle="none", marker="o", markerfacecolor=marker["face"],
                      label=f"{name} anchors' centres (> {max_outlines})")  # fmt: skip

    legend = [
        Line2D([], [], linestyle="none", marker=".", color="0.5", label=f"cell centre ({cells}×{cells}, stride {stride})"),
        Line2D([], [], color="0.5", linestyle="-", linewidth=2, label="object"),
        kind(positive_outlined, "positive", dict(linestyle="--", face="0.5")),
        kind(ignored_outlined, "ignored", dict(linestyle=":", face="none")),
    ]
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2, fontsize=7, frameon=False,
              handlelength=2.5, columnspacing=1.2)  # fmt: skip
    fig.tight_layout()
    return fig


def explorer_view(
    seed: int,
    sizes: Sequence[float],
    aspect_ratios: Sequence[float],
    stride: int,
    thresholds: tuple[float, float],
    allow_low_quality_matches: bool,
) -> plt.Figure | W.HTML:
    """What the explorer shows for its controls' values: the figure, or a note when a selection is empty."""
    if not sizes or not aspect_ratios:
        return W.HTML("Select at least one size and one aspect ratio (Ctrl/Cmd-click to select several).")
    low, high = thresholds
    return anchor_figure(seed, list(sizes), list(aspect_ratios), stride, high, low, allow_low_quality_matches)


def anchor_explorer() -> W.VBox:
    """Controls for the scene, the anchor design (sizes, ratios, stride) and the matcher (thresholds, low-quality matches)."""
    controls = {
        "seed": W.IntSlider(value=3, min=0, max=200, description="scene"),
        "sizes": W.SelectMultiple(options=SIZE_OPTIONS, value=(16, 32, 64), rows=len(SIZE_OPTIONS), description="sizes"),
        "aspect_ratios": W.SelectMultiple(options=RATIO_OPTIONS, value=(0.5, 1.0, 2.0), rows=len(RATIO_OPTIONS), description="ratios h/w"),
        "stride": W.ToggleButtons(options=STRIDE_OPTIONS, value=16, description="stride"),
        "thresholds": W.FloatRangeSlider(value=(0.3, 0.7), min=0.0, max=1.0, step=0.05, description="low, high"),
        "allow_low_quality_matches": W.Checkbox(value=True, description="low-quality matches"),
    }
    return dashboard(explorer_view, controls, "Anchor explorer: which anchors does each object get?")
