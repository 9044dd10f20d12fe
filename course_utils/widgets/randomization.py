"""Randomization explorer: destroy a classifier's layers from the output down and watch its explanations.

Pick a scene and how many layers (from the top) get random weights; see the saliency and Grad-CAM
maps of the trained model next to those of the randomized copy, with the Spearman rank correlation
between the two (the cascading test of ``xai.randomization_sanity_check``, one scene at a time).
The widget shows the zoo's ``shapes_cnn`` on notebook 12's shape scenes.
"""

from __future__ import annotations

import functools

import ipywidgets as W
import matplotlib.pyplot as plt
from torch import Tensor, nn

from ..data import SHAPES, SceneClassification
from ..validation import check_positive_int, check_tensor
from ..viz import draw_boxes
from ..xai import attribution_map, grad_cam, randomization_layers, randomize_layers, saliency, upsample_heatmap
from ..xai.evaluation import spearman_rank_correlation
from ._base import dashboard

__all__ = ["METHODS", "explorer_scenes", "explanation_maps", "randomized_explanations", "randomization_figure", "randomization_explorer"]

METHODS = ("saliency", "Grad-CAM")
GRAD_CAM_LAYER = "features"  # the last conv block of the zoo's SmallCNN (8×8)
SCENE_SEED = 40  # notebook 12's shape scenes
NUM_SCENES = 16  # the 16 scenes of notebook 12's sanity check


@functools.lru_cache(maxsize=1)
def shapes_model() -> nn.Module:
    """The zoo's ``shapes_cnn`` (loaded once)."""
    from .. import zoo  # imported here: loading weights is only needed by the live widget

    return zoo.load("shapes_cnn")


@functools.lru_cache(maxsize=1)
def explorer_scenes() -> SceneClassification:
    """The explorer's scenes: ``SceneClassification(NUM_SCENES, seed=SCENE_SEED)``."""
    return SceneClassification(NUM_SCENES, seed=SCENE_SEED)


def explanation_maps(model: nn.Module, image: Tensor, target: int) -> dict[str, Tensor]:
    """Saliency (``attribution_map`` of the gradient) and Grad-CAM (at the last conv block, upsampled) of class ``target``.

    Args:
        model (nn.Module): a classifier like the zoo's ``SmallCNN`` (its last conv block is ``features``).
        image (Tensor[3, H, W]): one image; it is moved to the model's device.

    Returns:
        dict: ``{method: Tensor[H, W]}`` on the CPU, both non-negative.
    """
    image = check_tensor(image, "image", ndim=3, floating=True)
    inputs = image[None].to(next(model.parameters()).device)
    maps = {
        "saliency": attribution_map(saliency(model, inputs, target))[0],
        "Grad-CAM": upsample_heatmap(grad_cam(model, GRAD_CAM_LAYER, inputs, target), image.shape[-2:])[0, 0],
    }
    return {method: heatmap.detach().cpu() for method, heatmap in maps.items()}


def randomized_explanations(model: nn.Module, image: Tensor, target: int, count: int, seed: int = 0) -> dict:
    """The maps of ``model`` and of a copy whose top ``count`` layers (``xai.randomization_layers``) are random.

    The copy is ``xai.randomize_layers(model, layers[:count], seed)``: exactly the model that
    ``randomization_sanity_check(..., seed=seed)`` explains at its step ``count - 1``.

    Returns:
        dict: ``layers`` (the names randomized, top first), ``original`` and ``randomized``
        (``{method: Tensor[H, W]}``) and ``correlation`` (``{method: float}``, the Spearman rank
        correlation of the two maps; 1 for ``count=0``, 0 when a map is constant).
    """
    layers = randomization_layers(model)
    count = check_positive_int(count, "count", allow_zero=True)
    if count > len(layers):
        raise ValueError(f"count must be at most the number of layers with parameters ({len(layers)}), got {count}")
    original = explanation_maps(model, image, target)
    randomized = explanation_maps(randomize_layers(model, layers[:count], seed), image, target)
    correlation = {
        method: spearman_rank_correlation(original[method][None], randomized[method][None]).item() for method in METHODS
    }
    return {"layers": layers[:count], "original": original, "randomized": randomized, "correlation": correlation}


def _show_map(ax: plt.Axes, heatmap: Tensor, title: str) -> None:
    ax.imshow(heatmap.numpy(), cmap="inferno")
    ax.set_xticks([]), ax.set_yticks([])
    if float(heatmap.max()) == 0.0:
        ax.text(0.5, 0.5, "all zero:\nno positive evidence", transform=ax.transAxes, ha="center", va="center",
                color="white", fontsize=9)
    ax.set_title(title, fontsize=9)


def randomization_figure(index: int, count: int, model: nn.Module | None = None) -> plt.Figure:
    """Scene ``index`` (its true class explained), then each method's map: trained, and with ``count`` layers random."""
    model = shapes_model() if model is None else model
    image, scene = explorer_scenes().scene(check_positive_int(index, "index", allow_zero=True))
    target = int(scene["labels"][0]) - 1  # the classifier's class, from 0
    result = randomized_explanations(model, image, target, count)
    fig, axes = plt.subplots(1, 1 + 2 * len(METHODS), figsize=(13, 3.3), layout="constrained")
    draw_boxes(image, scene["boxes"], ax=axes[0], color="white")
    axes[0].set_title(f"scene {index}: a {SHAPES[target]}", fontsize=9)
    for k, method in enumerate(METHODS):
        _show_map(axes[1 + 2 * k], result["original"][method], f"{method}, trained")
        _show_map(axes[2 + 2 * k], result["randomized"][method],
                  f"{method}, {count} layer{'s' if count != 1 else ''} random\nrank correlation {result['correlation'][method]:.2f}")
    deepest = f"randomized from the output down to {result['layers'][-1]}" if count else "nothing randomized yet"
    fig.suptitle(f"{deepest} ({count} of {len(randomization_layers(model))} layers)", fontsize=10)
    return fig


def randomization_explorer(model: nn.Module | None = None) -> W.VBox:
    """Pick a scene and how many layers are randomized; see the maps before and after, and their rank correlation."""
    model = shapes_model() if model is None else model
    controls = {
        "index": W.IntSlider(value=0, min=0, max=NUM_SCENES - 1, description="scene"),
        "count": W.IntSlider(value=1, min=0, max=len(randomization_layers(model)), description="random layers"),
    }
    return dashboard(functools.partial(randomization_figure, model=model), controls, "Randomization explorer")
