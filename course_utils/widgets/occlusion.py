"""Occlusion explorer: slide a patch over a scene and watch the shape classifier's score drop.

Pick a scene, the window size, the stride and the patch's grey level; see the occlusion map
(``xai.occlusion`` of the zoo's ``shapes_cnn``) over the image and how many forward passes it cost.
"""

from __future__ import annotations

import functools

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from .. import zoo
from ..data import SHAPES, SceneClassification
from ..validation import check_positive_int, check_probability, check_tensor
from ..viz import draw_boxes, show_image
from ..xai import occlusion
from ._base import dashboard

SCENE_SEED = 8  # notebook 08's scenes
NUM_SCENES = 24
WINDOW_OPTIONS = (4, 6, 8, 12, 16, 24, 32)
STRIDE_OPTIONS = (2, 3, 4, 6, 8, 12, 16)


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Where the windows start along one side of ``size`` pixels (captum ``Occlusion``'s positions).

    Windows start at ``0, stride, 2 * stride, ...`` until one reaches the border:
    ``ceil((size - window) / stride) + 1`` of them; the last one may stick out and is cut.

    Raises:
        ValueError: ``window`` is larger than ``size``, or ``stride`` larger than ``window``
            (some pixels would never be hidden).
    """
    size = check_positive_int(size, "size")
    window = check_positive_int(window, "window")
    stride = check_positive_int(stride, "stride")
    if window > size:
        raise ValueError(f"window ({window}) must not be larger than the image side ({size})")
    if stride > window:
        raise ValueError(f"stride ({stride}) must not exceed window ({window}), or some pixels are never hidden")
    count = -(-(size - window) // stride) + 1
    return [i * stride for i in range(count)]


def forward_passes(image_size: int, window: int, stride: int) -> int:
    """Images the model must see to occlude a square ``image_size`` image: one per window position, plus the clean one."""
    return len(window_starts(image_size, window, stride)) ** 2 + 1


def occlusion_map(model: nn.Module, image: Tensor, target: int, window: int, stride: int, baseline: float = 0.0) -> Tensor:
    """Occlusion of one ``image`` ``[C, H, W]`` with a square ``window`` over every channel.

    Returns:
        Tensor[H, W]: for each pixel, the mean drop ``f(x) - f(x hidden)`` of the ``target``
        logit over the windows that cover it; the window is filled with ``baseline``.
    """
    image = check_tensor(image, "image", ndim=3, floating=True)
    baseline = check_probability(baseline, "baseline")
    for side in image.shape[1:]:
        window_starts(side, window, stride)  # clear errors for a bad window or stride
    channels = image.shape[0]
    return occlusion(model, image[None], target, (channels, window, window), (channels, stride, stride), baselines=baseline)[0, 0]


@functools.lru_cache(maxsize=1)
def _model() -> nn.Module:
    return zoo.load("shapes_cnn")


@functools.lru_cache(maxsize=4)
def _scenes(seed: int) -> SceneClassification:
    return SceneClassification(NUM_SCENES, seed=seed)


def occlusion_figure(index: int, window: int = 8, stride: int = 4, baseline: float = 0.0, seed: int = SCENE_SEED) -> plt.Figure:
    """Scene ``index`` with its box and one window drawn to scale, next to its occlusion map.

    The map is drawn in red where hiding the pixels lowers the score of the object's class and in
    blue where it raises it, on a symmetric colour scale; the title counts the forward passes.
    """
    image, target = _scenes(seed).scene(index)
    label = int(target["labels"][0]) - 1
    model = _model()
    with torch.no_grad():
        probability = float(model(image[None]).softmax(dim=1)[0, label])
    drop = occlusion_map(model, image, label, window, stride, baseline)
    starts = window_starts(image.shape[-1], window, stride)

    fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 4.4))
    draw_boxes(image, target["boxes"], color="lime", ax=left)
    left.add_patch(Rectangle((-0.5, -0.5), window, window, facecolor=(baseline,) * 3, edgecolor="white", linestyle="--"))
    left.set_title(f"scene {index}: {SHAPES[label]} (p = {probability:.3f})\ndashed: one {window}×{window} window", fontsize=9)
    show_image(image.mean(dim=0), right)
    limit = max(float(drop.abs().max()), 1e-6)
    shown = right.imshow(drop.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.75, interpolation="nearest")
    draw_boxes(None, target["boxes"], color="lime", ax=right)
    fig.colorbar(shown, ax=right, fraction=0.046, pad=0.04, label=f"drop of the {SHAPES[label]} logit")
    right.set_title(
        f"window {window}, stride {stride}, patch value {baseline:.2f}\n"
        f"{len(starts)} × {len(starts)} positions + 1 clean image = {forward_passes(image.shape[-1], window, stride)} forward passes",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def explorer_view(index: int, window: int, stride: int, baseline: float, seed: int = SCENE_SEED) -> plt.Figure | W.HTML:
    """What the explorer shows: the figure, or a note when the stride is larger than the window."""
    if stride > window:
        return W.HTML(f"A stride of {stride} skips pixels that a {window}-pixel window never hides: pick a stride ≤ the window.")
    return occlusion_figure(index, window, stride, baseline, seed)


def occlusion_explorer(seed: int = SCENE_SEED) -> W.VBox:
    """Controls for the scene, the window, the stride and the patch value (0 black, 0.5 grey, 1 white)."""
    controls = {
        "index": W.IntSlider(value=0, min=0, max=NUM_SCENES - 1, description="scene"),
        "window": W.Dropdown(options=WINDOW_OPTIONS, value=8, description="window"),
        "stride": W.Dropdown(options=STRIDE_OPTIONS, value=4, description="stride"),
        "baseline": W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="patch value"),
    }
    return dashboard(functools.partial(explorer_view, seed=seed), controls, "Occlusion explorer: hide a patch, watch the score drop")
