"""Pictures for every notebook: boxes with labels and scores, masks, heatmaps, image grids.

Images are float ``[3, H, W]`` (or ``[H, W]``) tensors in [0, 1]; boxes are xyxy pixel-edge
coordinates. Each function draws on ``ax`` (a new one if ``None``) and returns it.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from torch import Tensor

from .validation import check_boxes, check_finite, check_positive_int, check_tensor

__all__ = ["to_numpy_image", "stretch", "show_image", "draw_boxes", "overlay_masks", "overlay_heatmap", "show_grid", "show_sample"]

PALETTE = plt.get_cmap("tab20").colors


def to_numpy_image(image: Tensor) -> np.ndarray:
    """``[3, H, W]`` or ``[H, W]`` tensor → ``[H, W, 3]`` / ``[H, W]`` numpy array for ``imshow``."""
    image = check_tensor(image, "image")
    if image.ndim == 3 and image.shape[0] in (1, 3):
        array = image.detach().cpu().permute(1, 2, 0).float().numpy()
        return array[..., 0] if array.shape[-1] == 1 else array.clip(0, 1)
    if image.ndim == 2:
        return image.detach().cpu().float().numpy()
    raise ValueError(f"image must have shape [3, H, W], [1, H, W] or [H, W], got {tuple(image.shape)}")


def stretch(image: Tensor) -> Tensor:
    """For display only: map the image's own min..max linearly to 0..1 (a constant image becomes 0).

    Faint pictures (an activation-maximization result close to grey, a DeepDream detail) become
    visible; measurements should use the image itself. Any shape; returns a float tensor of that shape.
    """
    image = check_tensor(image, "image")
    if image.numel() == 0:
        raise ValueError(f"image must have at least one value, got shape {tuple(image.shape)}")
    if image.dtype == torch.bool or image.is_complex():
        raise TypeError(f"image must hold real numbers, got dtype {image.dtype}")
    check_finite(image, "image")
    image = image.detach().float()
    low, spread = image.min(), image.max() - image.min()
    return (image - low) / spread if spread > 0 else torch.zeros_like(image)


def _axes(ax: Axes | None, figsize: tuple[float, float] = (4, 4)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def show_image(image: Tensor, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Show an image without axis ticks."""
    ax = _axes(ax)
    array = to_numpy_image(image)
    ax.imshow(array, cmap="gray" if array.ndim == 2 else None, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def draw_boxes(
    image: Tensor | None,
    boxes: Tensor,
    labels: Tensor | Sequence[int] | None = None,
    scores: Tensor | Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    ax: Axes | None = None,
    color: str | None = None,
    linestyle: str = "-",
    linewidth: float = 2.0,
) -> Axes:
    """Draw xyxy boxes (on ``image`` if given), each with its class name and score.

    A box's colour follows its label unless ``color`` is given.
    """
    boxes = check_boxes(boxes, "boxes", allow_degenerate=True).detach().cpu()
    ax = show_image(image, ax) if image is not None else _axes(ax)
    labels = [int(v) for v in labels] if labels is not None else [None] * len(boxes)
    scores = [float(v) for v in scores] if scores is not None else [None] * len(boxes)
    if len(labels) != len(boxes) or len(scores) != len(boxes):
        raise ValueError(f"labels and scores must have one entry per box ({len(boxes)})")
    for (x1, y1, x2, y2), label, score in zip(boxes.tolist(), labels, scores):
        c = color or PALETTE[(label or 0) % len(PALETTE)]
        # pixel i spans [i - 0.5, i + 0.5] in imshow's coordinates
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=c, linewidth=linewidth, linestyle=linestyle))
        text = [class_names[label] if class_names is not None and label is not None else (str(label) if label is not None else "")]
        if score is not None:
            text.append(f"{score:.2f}")
        caption = " ".join(t for t in text if t)
        if caption:
            ax.text(x1 - 0.5, y1 - 1.5, caption, fontsize=7, color="white", va="bottom", bbox=dict(facecolor=c, alpha=0.8, pad=1, linewidth=0))
    return ax


def overlay_masks(image: Tensor, masks: Tensor, alpha: float = 0.5, ax: Axes | None = None) -> Axes:
    """Colour instance masks ``[N, H, W]`` (one colour each) or a semantic mask ``[H, W]`` (one per class)."""
    masks = check_tensor(masks, "masks").detach().cpu()
    if masks.ndim == 3:
        labels = torch.zeros(masks.shape[1:], dtype=torch.int64)
        for i, m in enumerate(masks.bool()):
            labels[m] = i + 1
    elif masks.ndim == 2:
        labels = masks.long()
    else:
        raise ValueError(f"masks must be [N, H, W] or [H, W], got {tuple(masks.shape)}")
    image = check_tensor(image, "image")
    if labels.shape != image.shape[-2:]:
        raise ValueError(f"masks cover {tuple(labels.shape)} pixels but the image is {tuple(image.shape[-2:])}")
    ax = show_image(image, ax)
    colours = np.zeros((int(labels.max()) + 1, 4))
    for k in range(1, len(colours)):
        colours[k] = (*PALETTE[k % len(PALETTE)], alpha)
    ax.imshow(colours[labels.numpy()], interpolation="nearest")
    return ax


def overlay_heatmap(image: Tensor, heatmap: Tensor, alpha: float = 0.5, cmap: str = "jet", ax: Axes | None = None) -> Axes:
    """Overlay a ``[H, W]`` (or ``[1, H, W]``) heatmap, min-max scaled for display, on an image."""
    heatmap = check_tensor(heatmap, "heatmap").detach().cpu().float().squeeze()
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be [H, W] or [1, H, W], got {tuple(heatmap.shape)}")
    if heatmap.shape != image.shape[-2:]:
        heatmap = torch.nn.functional.interpolate(heatmap[None, None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    span = heatmap.max() - heatmap.min()
    scaled = (heatmap - heatmap.min()) / span if span > 0 else torch.zeros_like(heatmap)
    ax = show_image(image, ax)
    ax.imshow(scaled.numpy(), cmap=cmap, alpha=alpha, interpolation="bilinear")
    return ax


def show_grid(images: Sequence[Tensor], titles: Sequence[str] | None = None, ncols: int = 4, size: float = 2.5) -> plt.Figure:
    """Show images in a grid; returns the figure."""
    if len(images) == 0:
        raise ValueError("images is empty")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"titles has {len(titles)} entries for {len(images)} images")
    ncols = check_positive_int(ncols, "ncols")
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(images):
            show_image(images[i], ax, titles[i] if titles else None)
        else:
            ax.set_axis_off()
    fig.tight_layout()
    return fig


def show_sample(image: Tensor, target: dict[str, Tensor], class_names: Sequence[str] | None = None, ax: Axes | None = None) -> Axes:
    """A scene with its instance masks and labelled boxes."""
    ax = overlay_masks(image, target["masks"], alpha=0.35, ax=ax) if "masks" in target else show_image(image, ax)
    return draw_boxes(None, target["boxes"], target["labels"], target.get("scores"), class_names, ax=ax)
