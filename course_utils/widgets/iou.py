"""IoU explorer: move and resize two boxes, watch intersection, union, IoU and GIoU change."""

from __future__ import annotations

from typing import Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle
from torch import Tensor

from ..boxes import box_area, box_convert, box_iou, generalized_box_iou
from ..validation import check_boxes
from ._base import dashboard

BoxLike = Sequence[float] | Tensor

COLOURS = {"A": "tab:blue", "B": "tab:orange", "intersection": "tab:purple", "enclosing": "0.4"}
POSITION_MAX, SIZE_MAX = 100, 50  # slider ranges of the explorer
CANVAS = POSITION_MAX + SIZE_MAX  # its drawing area is [0, CANVAS] × [0, CANVAS] pixels


def _as_box(value: BoxLike, name: str) -> Tensor:
    """One xyxy box (4 numbers or a Tensor[4]) as a float64 Tensor[1, 4]."""
    try:
        box = torch.as_tensor(value, dtype=torch.float64).detach()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be 4 numbers (x1, y1, x2, y2), got {value!r}") from None
    if box.shape != (4,):
        raise ValueError(f"{name} must be 4 numbers (x1, y1, x2, y2), got shape {tuple(box.shape)}")
    return check_boxes(box[None], name)


def _regions(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """The intersection box (zero-area where A and B do not overlap) and the enclosing box C, each Tensor[1, 4]."""
    top_left = torch.max(a[:, :2], b[:, :2])
    bottom_right = torch.max(torch.min(a[:, 2:], b[:, 2:]), top_left)  # empty overlap -> a zero-area box
    enclosing = torch.cat([torch.min(a[:, :2], b[:, :2]), torch.max(a[:, 2:], b[:, 2:])], dim=1)
    return torch.cat([top_left, bottom_right], dim=1), enclosing


def iou_parts(box_a: BoxLike, box_b: BoxLike) -> dict[str, float]:
    """Every number behind IoU and GIoU for two xyxy boxes.

    Returns:
        dict with ``area_a``, ``area_b``, ``intersection``, ``union``, ``enclosing`` (area of the
        smallest box C around both), ``iou`` = intersection / union and
        ``giou`` = IoU - (C - union) / C.
    """
    a, b = _as_box(box_a, "box_a"), _as_box(box_b, "box_b")
    intersection_box, enclosing_box = _regions(a, b)
    area_a, area_b, intersection = (float(box_area(box)) for box in (a, b, intersection_box))
    return {
        "area_a": area_a,
        "area_b": area_b,
        "intersection": intersection,
        "union": area_a + area_b - intersection,
        "enclosing": float(box_area(enclosing_box)),
        "iou": float(box_iou(a, b)),
        "giou": float(generalized_box_iou(a, b)),
    }


def _rectangle(box: Tensor, **style) -> Rectangle:
    x1, y1, x2, y2 = box[0].tolist()
    return Rectangle((x1, y1), x2 - x1, y2 - y1, **style)


def iou_figure(box_a: BoxLike, box_b: BoxLike, ax: Axes | None = None, limits: tuple[float, float] | None = None) -> plt.Figure:
    """Draw boxes A and B, their intersection (shaded) and enclosing box C (dashed), with the numbers.

    ``limits`` = (low, high) of both axes; by default the view fits C with a margin. The y axis
    points down, as in an image.
    """
    a, b = _as_box(box_a, "box_a"), _as_box(box_b, "box_b")
    parts = iou_parts(a[0], b[0])
    intersection_box, enclosing_box = _regions(a, b)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.add_patch(_rectangle(enclosing_box, fill=False, edgecolor=COLOURS["enclosing"], linestyle="--", linewidth=1, label="C (encloses both)"))
    for name, box in (("A", a), ("B", b)):
        ax.add_patch(_rectangle(box, facecolor=to_rgba(COLOURS[name], 0.15), edgecolor=COLOURS[name], linewidth=2, label=name))
    if parts["intersection"] > 0:
        colour = COLOURS["intersection"]
        ax.add_patch(_rectangle(intersection_box, facecolor=to_rgba(colour, 0.35), edgecolor=colour, hatch="//", linewidth=0, label="A ∩ B"))
    if limits is None:
        x1, y1, x2, y2 = enclosing_box[0].tolist()
        margin = 0.15 * max(x2 - x1, y2 - y1, 1.0)
        limits = (min(x1, y1) - margin, max(x2, y2) + margin)
    ax.set_xlim(*limits)
    ax.set_ylim(limits[1], limits[0])  # y grows downwards, as in an image
    ax.set_aspect("equal")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=4, fontsize=7, frameon=False)
    ax.set_title(
        f"intersection {parts['intersection']:.5g} · union {parts['union']:.5g}\n"
        f"IoU {parts['iou']:.3f} · GIoU {parts['giou']:.3f}",
        fontsize=9,
    )
    return ax.figure


def iou_explorer_figure(a_x: float, a_y: float, a_w: float, a_h: float, b_x: float, b_y: float, b_w: float, b_h: float) -> plt.Figure:
    """The explorer's view of A = (a_x, a_y, a_w, a_h) and B = (b_x, b_y, b_w, b_h), both xywh."""
    xywh = torch.tensor([[a_x, a_y, a_w, a_h], [b_x, b_y, b_w, b_h]], dtype=torch.float64)
    a, b = box_convert(xywh, "xywh", "xyxy")
    return iou_figure(a, b, limits=(0, CANVAS))


def iou_explorer() -> W.VBox:
    """Sliders for the top-left corner (x, y) and size (w, h) of two boxes; starts on the lesson's example, 4× larger."""
    start = {"a": (20, 20, 40, 40), "b": (24, 24, 40, 40)}  # (0,0,10,10) vs (1,1,11,11) scaled by 4: IoU 81/119
    controls = {}
    for box, values in start.items():
        for name, value in zip("xywh", values):
            controls[f"{box}_{name}"] = W.IntSlider(
                value=value, min=0, max=POSITION_MAX if name in "xy" else SIZE_MAX, description=f"{box.upper()} {name}", layout=W.Layout(width="240px")
            )
    return dashboard(iou_explorer_figure, controls, "IoU explorer: A and B are (x, y, w, h); move the sliders to shift and resize them")
