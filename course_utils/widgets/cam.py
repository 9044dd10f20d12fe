"""CAM explorer: pick a scene, a class, a layer and a method; see where the evidence for the class lies.

The pure functions work with any classifier whose ``features`` is an ``nn.Sequential`` of conv
blocks (each ending in a ReLU) read through global average pooling by ``fc`` — the zoo's
``SmallCNN``. The widget shows the zoo's ``shapes_cnn`` on 64×64 scenes with one to three shapes.
"""

from __future__ import annotations

import functools
import textwrap

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from torch import Tensor, nn

from ..data import SHAPES, make_scene
from ..validation import check_choice, check_positive_int, check_tensor
from ..viz import draw_boxes, overlay_heatmap, show_image
from ..xai import cam, grad_cam, grad_cam_plus_plus, upsample_heatmap
from ._base import dashboard

__all__ = [
    "METHODS", "explorer_scene", "conv_blocks", "class_probabilities", "layer_map", "class_heatmap", "cam_figure", "cam_explorer",
]  # fmt: skip

METHODS = ("CAM", "Grad-CAM", "Grad-CAM++")
SCENE_OPTIONS = dict(image_size=64, classes=SHAPES, num_objects=(1, 3), object_size=(20, 30))
SCENE_COUNT = 200  # the explorer's slider runs over scenes 0 … SCENE_COUNT


@functools.lru_cache(maxsize=1)
def shapes_model() -> nn.Module:
    """The zoo's ``shapes_cnn`` (loaded once)."""
    from .. import zoo  # imported here: loading weights is only needed by the live widget

    return zoo.load("shapes_cnn")


def explorer_scene(index: int) -> tuple[Tensor, dict[str, Tensor]]:
    """Scene ``index`` of the explorer: ``make_scene(index, **SCENE_OPTIONS)``, image ``[3, 64, 64]`` and target."""
    return make_scene(check_positive_int(index, "index", allow_zero=True), **SCENE_OPTIONS)


def conv_blocks(model: nn.Module) -> dict[str, str]:
    """``{"block k": layer name}`` for the output (the ReLU) of each conv block of ``model.features``, first to last."""
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        raise TypeError("model must have a `features` nn.Sequential of conv blocks, like the zoo's SmallCNN")
    names = [f"features.{i}" for i, layer in enumerate(features) if isinstance(layer, nn.ReLU)]
    if not names:
        raise ValueError("model.features has no ReLU: no conv block output to explain")
    return {f"block {k}": name for k, name in enumerate(names, 1)}


def class_probabilities(model: nn.Module, image: Tensor) -> Tensor:
    """Softmax of ``model``'s logits for one ``[3, H, W]`` image: Tensor[K]."""
    image = check_tensor(image, "image", ndim=3, floating=True)
    with torch.no_grad():
        return model(image[None]).softmax(dim=1)[0]


def layer_map(model: nn.Module, image: Tensor, target: int, layer: str, method: str) -> Tensor:
    """The ``method`` map of class ``target`` at ``layer`` (a name from :func:`conv_blocks`): Tensor[1, 1, h, w].

    ``"CAM"`` is ReLU'd like the others and exists only at the last block, the one that is
    globally pooled; there it equals Grad-CAM times h·w.
    """
    method = check_choice(method, "method", METHODS)
    image = check_tensor(image, "image", ndim=3, floating=True)
    blocks = list(conv_blocks(model).values())
    layer = check_choice(layer, "layer", blocks)
    if method == "CAM":
        if layer != blocks[-1]:
            raise ValueError(f"layer: CAM exists only at the globally pooled layer {blocks[-1]!r}, got {layer!r}")
        return cam(model, layer, "fc", image[None], target, relu=True)
    explain = grad_cam if method == "Grad-CAM" else grad_cam_plus_plus
    return explain(model, layer, image[None], target)


def class_heatmap(model: nn.Module, image: Tensor, target: int, layer: str, method: str) -> Tensor:
    """:func:`layer_map` resized to the image and min-max scaled (pytorch-grad-cam's display): Tensor[H, W] in [0, 1]."""
    raw = layer_map(model, image, target, layer, method)
    return upsample_heatmap(raw, image.shape[-2:], normalize=True)[0, 0]


def _draw_probabilities(probabilities: Tensor, explained: int, ax: plt.Axes) -> None:
    colours = ["tab:orange" if k == explained else "tab:blue" for k in range(len(SHAPES))]
    ax.barh(SHAPES, probabilities.tolist(), color=colours)
    for k, p in enumerate(probabilities.tolist()):
        ax.text(min(p + 0.02, 0.8), k, f"{p:.2f}", va="center", fontsize=9)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_title("predicted probabilities", fontsize=9)


def cam_figure(index: int, class_name: str, layer: str, method: str, model: nn.Module | None = None) -> plt.Figure:
    """Scene ``index`` with its boxes, the ``method`` heatmap of ``class_name`` at ``layer``, and the probabilities."""
    model = shapes_model() if model is None else model
    target = SHAPES.index(check_choice(class_name, "class_name", SHAPES))
    method = check_choice(method, "method", METHODS)
    blocks = list(conv_blocks(model).values())
    layer = check_choice(layer, "layer", blocks)
    image, scene = explorer_scene(index)
    fig, (ax_scene, ax_map, ax_probs) = plt.subplots(1, 3, figsize=(11, 3.6))
    draw_boxes(image, scene["boxes"], scene["labels"], class_names=("background", *SHAPES), ax=ax_scene)
    ax_scene.set_title(f"scene {index}", fontsize=9)
    if method == "CAM" and layer != blocks[-1]:
        show_image(image, ax_map)
        note = f"CAM needs the layer that is globally pooled ({blocks[-1]}); pick it, or use Grad-CAM at {layer}."
        height, width = image.shape[1:]
        ax_map.text(width / 2, height / 2, textwrap.fill(note, 24), ha="center", va="center", fontsize=9,
                    bbox=dict(facecolor="white", alpha=0.85))
        ax_map.set_title(f"{method}: not defined at {layer}", fontsize=9)
    else:
        raw = layer_map(model, image, target, layer, method)
        overlay_heatmap(image, upsample_heatmap(raw, image.shape[-2:], normalize=True)[0, 0], alpha=0.5, ax=ax_map)
        empty = " — all zero: no evidence for it" if float(raw.max()) == 0.0 else ""
        ax_map.set_title(f"{method} of {class_name!r} at {layer} ({raw.shape[2]}×{raw.shape[3]}){empty}", fontsize=9)
    _draw_probabilities(class_probabilities(model, image), target, ax_probs)
    fig.tight_layout()
    return fig


def cam_explorer(model: nn.Module | None = None) -> W.VBox:
    """Pick a scene, a class, a conv block and a method; see the heatmap and the predicted probabilities."""
    model = shapes_model() if model is None else model
    blocks = conv_blocks(model)
    controls = {
        "index": W.IntSlider(value=0, min=0, max=SCENE_COUNT, description="scene"),
        "class_name": W.Dropdown(options=list(SHAPES), value=SHAPES[0], description="class"),
        "layer": W.Dropdown(
            options=[(f"{label} ({name})", name) for label, name in blocks.items()], value=list(blocks.values())[-1], description="layer"
        ),
        "method": W.ToggleButtons(options=list(METHODS), value="Grad-CAM"),
    }
    return dashboard(functools.partial(cam_figure, model=model), controls, "CAM explorer")
