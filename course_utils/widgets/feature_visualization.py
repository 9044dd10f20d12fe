"""Activation-maximization explorer: pick a class or a channel of the shapes classifier and a recipe,
see the picture that maximizes it and the objective while climbing.

A thin layer over ``xai.activation_maximization`` on the zoo's ``shapes_cnn`` (64×64 pictures, cheap
enough to redraw in about a second).
"""

from __future__ import annotations

import functools

import ipywidgets as W
import matplotlib.pyplot as plt
from torch import Tensor, nn

from .. import zoo
from ..data import SHAPES
from ..viz import show_image, stretch
from ..xai import activation_maximization
from ._base import dashboard

# What the explorer can climb: the class logits (layer None) or a block's output after its ReLU.
TARGETS = {"class logit": None, "block 1": "features.2", "block 2": "features.6", "block 3": "features.10", "block 4": "features.14"}
STEP_OPTIONS = (25, 50, 100, 200)


@functools.lru_cache(maxsize=1)
def _model() -> nn.Module:
    return zoo.load("shapes_cnn")


def unit_count(model: nn.Module, target: str) -> int:
    """How many units ``target`` (a key of ``TARGETS``) offers: classes for the logit, else the block's channels."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    layer = TARGETS[target]
    if layer is None:
        return len(SHAPES)
    return _channels(model, layer)


def _channels(model: nn.Module, layer: str) -> int:
    """Output channels of the conv layer that feeds ``layer`` (the last Conv2d before it in ``features``)."""
    index = int(layer.rsplit(".", 1)[1])
    convs = [m for i, m in enumerate(model.features) if i <= index and isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def unit_picture(
    target: str, unit: int, steps: int = 100, jitter: int = 4, blur_every: int = 4, decay: float = 1e-4, seed: int = 0,
    model: nn.Module | None = None,
) -> tuple[Tensor, Tensor]:
    """``xai.activation_maximization`` of unit ``unit`` of ``target`` (a key of ``TARGETS``) on the shapes classifier.

    Returns:
        (Tensor[3, 64, 64], Tensor[steps]): the picture in (0, 1) and the objective at each step.
    """
    model = _model() if model is None else model
    count = unit_count(model, target)
    if not 0 <= unit < count:
        raise ValueError(f"unit must be in [0, {count}) for {target!r}, got {unit}")
    picture, history = activation_maximization(
        model, TARGETS[target], unit, steps=steps, jitter=jitter, blur_every=blur_every, decay=decay, seed=seed
    )
    return picture[0].cpu(), history


def unit_figure(target: str, unit: int, steps: int = 100, jitter: int = 4, blur_every: int = 4, decay: float = 1e-4) -> plt.Figure:
    """The picture (stretched for display) next to the objective's curve."""
    picture, history = unit_picture(target, unit, steps, jitter, blur_every, decay)
    what = f"class '{SHAPES[unit]}'" if TARGETS[target] is None else f"{target} ({TARGETS[target]}), channel {unit}"
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 3.8))
    show_image(stretch(picture), left, f"what maximizes {what}\n(stretched for display)")
    right.plot(history.numpy())
    right.set(xlabel="step", ylabel="logit" if TARGETS[target] is None else "mean activation",
              title=f"objective: {history[0]:.2f} -> {history[-1]:.2f}")  # fmt: skip
    fig.tight_layout()
    return fig


def explorer_view(target: str, unit: int, steps: int, jitter: int, blur_every: int, decay: float) -> plt.Figure | W.HTML:
    """What the explorer shows: the figure, or a note when the unit does not exist for that target."""
    count = unit_count(_model(), target)
    if unit >= count:
        return W.HTML(f"{target} has {count} units (0 to {count - 1}): pick a smaller unit.")
    return unit_figure(target, unit, steps, jitter, blur_every, decay)


def unit_explorer() -> W.VBox:
    """Controls for what to climb (class or block), the unit, the steps and the three regularizers."""
    controls = {
        "target": W.Dropdown(options=list(TARGETS), value="class logit", description="climb"),
        "unit": W.IntSlider(value=0, min=0, max=max(unit_count(_model(), t) for t in TARGETS) - 1, description="class/channel"),
        "steps": W.Dropdown(options=STEP_OPTIONS, value=100, description="steps"),
        "jitter": W.IntSlider(value=4, min=0, max=8, description="jitter"),
        "blur_every": W.IntSlider(value=4, min=0, max=16, description="blur every"),
        "decay": W.FloatLogSlider(value=1e-4, base=10, min=-6, max=-1, description="decay"),
    }
    return dashboard(explorer_view, controls, "Activation maximization explorer: what does a unit want to see?")
