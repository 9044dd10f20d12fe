"""Scene explorer: browse the synthetic scenes with their boxes and masks."""

from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt

from ..data import DIGITS, SHAPES, make_scene
from ..viz import draw_boxes, overlay_masks, show_image
from ._base import dashboard

CLASS_SETS = {"shapes": SHAPES, "digits": DIGITS, "shapes + digits": SHAPES + DIGITS}


def scene_figure(seed: int, class_set: str = "shapes", layer: str = "boxes + masks", image_size: int = 128) -> plt.Figure:
    """One scene drawn with the chosen layer: ``"image"``, ``"boxes"``, ``"boxes + masks"`` or ``"semantic mask"``."""
    if class_set not in CLASS_SETS:
        raise ValueError(f"class_set must be one of {list(CLASS_SETS)}, got {class_set!r}")
    classes = CLASS_SETS[class_set]
    image, target = make_scene(seed, image_size=image_size, classes=classes)
    names = ("background", *classes)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if layer == "image":
        show_image(image, ax)
    elif layer == "boxes":
        draw_boxes(image, target["boxes"], target["labels"], class_names=names, ax=ax)
    elif layer == "boxes + masks":
        overlay_masks(image, target["masks"], alpha=0.4, ax=ax)
        draw_boxes(None, target["boxes"], target["labels"], class_names=names, ax=ax)
    elif layer == "semantic mask":
        overlay_masks(image, target["semantic_mask"], alpha=0.6, ax=ax)
    else:
        raise ValueError(f"layer must be 'image', 'boxes', 'boxes + masks' or 'semantic mask', got {layer!r}")
    ax.set_title(f"seed {seed}: {len(target['labels'])} objects", fontsize=9)
    return fig


def scene_explorer() -> W.VBox:
    """Pick a seed, a class set and what to draw."""
    controls = {
        "seed": W.IntSlider(value=0, min=0, max=200, description="seed"),
        "class_set": W.Dropdown(options=list(CLASS_SETS), value="shapes", description="classes"),
        "layer": W.ToggleButtons(options=["image", "boxes", "boxes + masks", "semantic mask"], value="boxes + masks"),
    }
    return dashboard(scene_figure, controls, "Synthetic scenes")
