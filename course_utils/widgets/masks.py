"""Mask explorer: a segmenter's mask of one class at a probability threshold, over the image, with its scores.

Pure functions compute what is shown; ``mask_explorer`` is a thin dashboard over them.

* ``class_probabilities_map``: the softmax of a segmenter's logits for one image, ``[C, H, W]``;
* ``threshold_mask``: the pixels whose probability of a class is at least a threshold;
* ``mask_scores``: IoU, Dice and boundary IoU of a predicted mask against the true one;
* ``mask_figure``: the image with the true mask, with the predicted mask (errors coloured), and the
  class's probability map.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor, nn

from ..segmentation import boundary_band
from ..training import eval_mode
from ..validation import check_positive_int, check_probability, check_tensor
from ..viz import to_numpy_image
from ._base import dashboard, model_device

HIT, MISS, FALSE_ALARM = (0.1, 0.8, 0.1), (0.95, 0.75, 0.0), (0.9, 0.1, 0.1)  # colours of the prediction panel


def _check_image(image: object) -> Tensor:
    image = check_tensor(image, "image", ndim=3, floating=True)
    if image.shape[0] != 3:
        raise ValueError(f"image must have shape [3, H, W], got {tuple(image.shape)}")
    return image


def class_probabilities_map(model: nn.Module, image: Tensor) -> Tensor:
    """Softmax over the classes of ``model(image[None])``: float ``[C, H, W]`` on the CPU, summing to 1 at each pixel.

    The image goes to the model's device (the GPU when the notebook put the model there).
    """
    image = _check_image(image)
    with eval_mode(model), torch.no_grad():
        return model(image[None].to(model_device(model)))[0].softmax(0).cpu()


def threshold_mask(probabilities: Tensor, class_index: int, threshold: float) -> Tensor:
    """bool ``[H, W]``: the pixels where the probability of ``class_index`` is ``>= threshold``."""
    probabilities = check_tensor(probabilities, "probabilities", ndim=3, floating=True)
    class_index = check_positive_int(class_index, "class_index", allow_zero=True)
    if class_index >= probabilities.shape[0]:
        raise ValueError(f"class_index must be < the number of classes {probabilities.shape[0]}, got {class_index}")
    return probabilities[class_index] >= check_probability(threshold, "threshold")


def mask_scores(pred_mask: Tensor, true_mask: Tensor, width: int = 2) -> dict[str, float]:
    """``iou``, ``dice`` and ``boundary_iou`` (edge bands of ``width`` px) of two bool masks ``[H, W]``.

    Two empty masks agree perfectly: every score is 1.0 (nothing to find, nothing found).
    """
    pred = check_tensor(pred_mask, "pred_mask", ndim=2).bool()
    true = check_tensor(true_mask, "true_mask", ndim=2).bool()
    if pred.shape != true.shape:
        raise ValueError(f"pred_mask and true_mask must have the same shape, got {tuple(pred.shape)} and {tuple(true.shape)}")
    inter, union, total = int((pred & true).sum()), int((pred | true).sum()), int(pred.sum() + true.sum())
    band_p, band_t = boundary_band(pred, width), boundary_band(true, width)
    band_union = int((band_p | band_t).sum())
    return {
        "iou": inter / union if union else 1.0,
        "dice": 2 * inter / total if total else 1.0,
        "boundary_iou": int((band_p & band_t).sum()) / band_union if band_union else 1.0,
    }


def _error_image(image: Tensor, pred: Tensor, true: Tensor, alpha: float = 0.6) -> np.ndarray:
    """The image with hits green, misses (true, not predicted) yellow and false alarms red: ``[H, W, 3]``."""
    picture = to_numpy_image(image).copy()
    for where, colour in ((pred & true, HIT), (~pred & true, MISS), (pred & ~true, FALSE_ALARM)):
        m = where.numpy()
        picture[m] = (1 - alpha) * picture[m] + alpha * np.array(colour)
    return picture


def mask_figure(
    image: Tensor, true_mask: Tensor, probabilities: Tensor, class_index: int, threshold: float, class_names: Sequence[str]
) -> plt.Figure:
    """Three panels: the image with the true mask of ``class_index``; the thresholded prediction
    (green hits, yellow misses, red false alarms) titled with its scores; the probability map."""
    image = _check_image(image)
    pred = threshold_mask(probabilities, class_index, threshold)
    true = check_tensor(true_mask, "true_mask", ndim=2) == class_index
    scores = mask_scores(pred, true)
    figure, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    name = class_names[class_index] if class_index < len(class_names) else f"class {class_index}"
    axes[0].imshow(_error_image(image, true, true))
    axes[0].set_title(f"true mask: {name}")
    axes[1].imshow(_error_image(image, pred, true))
    axes[1].set_title(f"p ≥ {threshold:.2f}: IoU {scores['iou']:.2f}, Dice {scores['dice']:.2f},\nboundary IoU {scores['boundary_iou']:.2f}")
    shown = axes[2].imshow(probabilities[class_index].numpy(), vmin=0, vmax=1, cmap="magma")
    axes[2].set_title(f"probability of {name}")
    figure.colorbar(shown, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.axis("off")
    figure.tight_layout()
    return figure


EXPLORER_SCENES = 20  # the default explorer shows the first scenes of the zoo U-Net's test set


def mask_explorer(
    models: Mapping[str, nn.Module] | None = None,
    samples: Sequence[tuple[Tensor, Tensor]] | None = None,
    class_names: Sequence[str] | None = None,
    *,
    class_index: int = 1,
    threshold: float = 0.5,
) -> W.VBox:
    """Image, model, class and threshold -> the true and predicted masks over the image, with IoU, Dice
    and boundary IoU. ``models`` maps a name to a segmenter; ``samples`` are ``(image, mask)`` pairs.
    Each model runs once per image (results cached). Defaults: the zoo's ``unet`` and ``unet_no_skips``,
    the first 20 scenes of their test set and its class names."""
    if models is None or samples is None or class_names is None:
        from .. import zoo  # only the defaults need the zoo

        test_set = zoo.load_test_set("unet")
        models = {name: zoo.load(name) for name in ("unet", "unet_no_skips")} if models is None else models
        samples = [test_set[i] for i in range(EXPLORER_SCENES)] if samples is None else samples
        class_names = test_set.class_names if class_names is None else class_names
    if not isinstance(models, Mapping) or not models or not all(isinstance(m, nn.Module) for m in models.values()):
        raise TypeError("models must be a non-empty dict of name -> segmenter (nn.Module)")
    if not isinstance(samples, Sequence) or not samples:
        raise ValueError("samples must be a non-empty list of (image, mask) pairs")
    class_index = check_positive_int(class_index, "class_index", allow_zero=True)
    if class_index >= len(class_names):
        raise ValueError(f"class_index must be < len(class_names) = {len(class_names)}, got {class_index}")
    controls = {
        "index": W.IntSlider(value=0, min=0, max=len(samples) - 1, description="image", continuous_update=False),
        "model": W.Dropdown(options=list(models), description="model"),
        "class_index": W.Dropdown(options=[(n, i) for i, n in enumerate(class_names)], value=class_index, description="class"),
        "threshold": W.FloatSlider(value=check_probability(threshold, "threshold"), min=0.05, max=0.95, step=0.05,
                                   description="threshold", continuous_update=False),  # fmt: skip
    }

    @functools.lru_cache(maxsize=None)
    def probabilities(index: int, model: str) -> Tensor:
        return class_probabilities_map(models[model], samples[index][0])

    def render(index: int, model: str, class_index: int, threshold: float) -> plt.Figure:
        image, mask = samples[index]
        return mask_figure(image, mask, probabilities(index, model), class_index, threshold, class_names)

    return dashboard(render, controls, "Mask explorer: a segmenter's mask of one class at a threshold")
