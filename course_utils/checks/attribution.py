"""Checks for notebook 08 (saliency and occlusion): the vanilla gradient and occlusion, by hand.

Both compare the learner's function with :mod:`course_utils.xai` (itself cross-checked against
captum) on fixed cases that each isolate one classic mistake, then on small random CNNs. The
cases are ordered so that each mistake first fails on the case whose hint names it.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..xai import occlusion, saliency
from ._core import Case, reference, run_cases

# --------------------------------------------------------------------------- hints

LOGIT = (
    "saliency is |d logit / d x|: differentiate the *logit* model(x)[:, target], not softmax(model(x)) "
    "(a probability also moves with the other classes' logits); return one value per input element, shaped like x."
)
ABS = "saliency is the *absolute* value of the gradient: these weights are negative, so return grad.abs()."
ZERO_GRAD = (
    "the same tensor was passed twice and the second answer differs: backward() *adds* to x.grad. Differentiate "
    "a fresh copy (x.clone().requires_grad_(True)) or use torch.autograd.grad, so one call cannot leak into the next."
)
TARGET = "explain the class `target` you are given, not the class the model predicts (no argmax)."
BATCH = (
    "every image needs the gradient of its *own* target logit: backward on model(x)[:, target].sum() — each "
    "logit depends on its image only, so the gradient of the sum holds every image's gradient."
)
NETWORK = "compare with a linear model first: take the gradient of model(x)[:, target] with respect to x."

DROP = (
    "for each window position: copy the image, set the window to 0 in every channel, and record "
    "f(x) - f(x hidden) for the target class (positive where hiding lowers the score); return an [H, W] map. Windows start at "
    "0, stride, 2·stride, …: ceil((H - window) / stride) + 1 positions per side."
)
LAST_WINDOW = (
    "off by one in the number of positions: windows start at 0, stride, 2·stride, … until one reaches the "
    "border, ceil((H - window) / stride) + 1 per side; the last one is cut at the border. "
    "range(0, H - window + 1, stride) misses it when H - window is not a multiple of the stride."
)
AVERAGE = (
    "windows overlap here (stride < window): a pixel's attribution is the *mean* drop over the windows that "
    "cover it. Add every window's drop to the pixels it covers, count the windows per pixel, then divide."
)
CHANNELS = "the window hides a square in *every* channel at once: image[:, top:bottom, left:right] = 0."
ROWS_COLS = "image.shape is (C, H, W): window positions along the rows (H) and the columns (W) differ here."
WHOLE = "a window as large as the image has exactly one position (ceil(0 / stride) + 1 = 1): every pixel gets f(x) - f(0)."
OCCLUSION = "check the loop bounds, the mean over covering windows and the sign f(x) - f(x hidden)."


# --------------------------------------------------------------------------- models and inputs


def _linear_model(weight: Tensor, bias: Tensor) -> nn.Module:
    """``f(x) = weight @ x.flatten() + bias``: the gradient of logit c is ``weight[c]`` (reshaped like x)."""
    with torch.random.fork_rng(devices=[]):  # nn.Linear's default initialisation draws from the global RNG
        model = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], weight.shape[0]))
    with torch.no_grad():
        model[1].weight.copy_(weight)
        model[1].bias.copy_(bias)
    return model.eval()


def _random_cnn(seed: int, in_channels: int = 3, num_classes: int = 4) -> nn.Module:
    """A small conv-BN-ReLU-maxpool-conv-ReLU-GAP-linear net in eval mode; the global RNG is left alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(in_channels, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, num_classes),
        )
        with torch.no_grad():
            model[1].running_mean.uniform_(-0.2, 0.2)
            model[1].running_var.uniform_(0.5, 1.5)
            model[-1].weight.mul_(4)  # logits of order 1, so a wrong answer is far from the right one
    return model.eval()


def _ranked_class(model: nn.Module, x: Tensor, rank: int) -> int:
    """The class with the ``rank``-th highest logit (0: the predicted class) for the first image of ``x`` ``[N, ...]``."""
    with torch.no_grad():
        return int(model(x)[0].argsort(descending=True)[rank])


def _random_shape(generator: torch.Generator, max_side: int) -> tuple[int, int, int]:
    """A random ``(C, H, W)`` with 1 to 3 channels and sides from 5 to ``max_side``."""
    channels = int(torch.randint(1, 4, (1,), generator=generator))
    height, width = torch.randint(5, max_side + 1, (2,), generator=generator).tolist()
    return channels, height, width


# --------------------------------------------------------------------------- saliency


reference("saliency")(saliency)


def _saliency_case(description: str, model: nn.Module, x: Tensor, target: int, hint: str) -> Case:
    return Case(description, (model, x, target), saliency(model, x, target), hint)


def check_saliency(student_fn: Callable[[nn.Module, Tensor, int], Tensor]) -> None:
    """Exercise 1: ``my_saliency(model, x, target)`` → ``|d model(x)[:, target] / d x|``, shaped like ``x`` ``[N, C, H, W]``."""
    generator = torch.Generator().manual_seed(8)
    positive = _linear_model(torch.rand(2, 18, generator=generator) + 0.1, torch.tensor([0.0, 1.0]))
    x_positive = torch.rand(1, 2, 3, 3, generator=generator)
    negative = _linear_model(-torch.rand(3, 12, generator=generator) - 0.1, torch.zeros(3))
    x_repeated = torch.rand(1, 3, 2, 2, generator=generator)  # passed twice, as the very same tensor
    cnn = _random_cnn(0)
    x_cnn = torch.rand(1, 3, 8, 8, generator=generator)
    x_batch = torch.rand(3, 3, 8, 8, generator=generator)
    cases = [
        _saliency_case("a linear model with positive weights: the gradient of logit c is weight row c",
                       positive, x_positive, _ranked_class(positive, x_positive, 0), LOGIT),
        _saliency_case("a linear model with negative weights", negative, x_repeated, _ranked_class(negative, x_repeated, 0), ABS),
        _saliency_case("the same image tensor again (a second call with the very same x)",
                       negative, x_repeated, _ranked_class(negative, x_repeated, 0), ZERO_GRAD),
        _saliency_case("a small CNN asked about a class it does not predict", cnn, x_cnn, _ranked_class(cnn, x_cnn, 1), TARGET),
        _saliency_case("a batch of 3 images: each gets the gradient of its own logit", cnn, x_batch, 1, BATCH),
    ]
    for i in range(6):
        channels, height, width = _random_shape(generator, 12)
        n = int(torch.randint(1, 4, (1,), generator=generator))
        model = _random_cnn(100 + i, in_channels=channels)
        x = torch.randn(n, channels, height, width, generator=generator)
        target = int(torch.randint(0, 4, (1,), generator=generator))
        cases.append(_saliency_case(f"random CNN #{i + 1}: x of shape {tuple(x.shape)}, target {target}", model, x, target, NETWORK))
    run_cases(student_fn, cases, "my_saliency")


# --------------------------------------------------------------------------- occlusion


@reference("occlusion")
def reference_occlusion(model: nn.Module, image: Tensor, target: int, window: int, stride: int) -> Tensor:
    """Occlusion of one ``image`` [C, H, W] with a square window over every channel → [H, W]."""
    channels = image.shape[0]
    return occlusion(model, image[None], target, (channels, window, window), (channels, stride, stride))[0, 0]


def _occlusion_case(description: str, model: nn.Module, image: Tensor, target: int, window: int, stride: int, hint: str) -> Case:
    return Case(description, (model, image, target, window, stride), reference_occlusion(model, image, target, window, stride), hint)


def check_occlusion(student_fn: Callable[[nn.Module, Tensor, int, int, int], Tensor]) -> None:
    """Exercise 2: ``my_occlusion(model, image, target, window, stride)`` for one ``image`` ``[C, H, W]`` →
    ``[H, W]``: the mean of ``f(x) - f(x with a zeroed window)`` over the windows covering each pixel."""
    generator = torch.Generator().manual_seed(9)

    def linear_case(description: str, shape: tuple[int, int, int], window: int, stride: int, hint: str) -> Case:
        """A linear model explained for the class it predicts (so the target cannot be what fails)."""
        model = _linear_model(torch.randn(3, shape[0] * shape[1] * shape[2], generator=generator), torch.zeros(3))
        image = torch.rand(shape, generator=generator)
        return _occlusion_case(description, model, image, _ranked_class(model, image[None], 0), window, stride, hint)

    cnn = _random_cnn(1)
    image_cnn = torch.rand(3, 8, 8, generator=generator)
    cases = [
        linear_case("a linear model on a 1×4×4 image, window 2, stride 2: four windows tile the image", (1, 4, 4), 2, 2, DROP),
        linear_case("a 1×5×5 image, window 2, stride 2: windows start at 0, 2 and 4 (the last covers one row)", (1, 5, 5), 2, 2, LAST_WINDOW),
        linear_case("a 1×7×7 image, window 3, stride 3: windows start at 0, 3 and 6 (the last is cut to one row)", (1, 7, 7), 3, 3, LAST_WINDOW),
        linear_case("overlapping windows: a 1×5×5 image, window 3, stride 1 (up to 9 windows per pixel)", (1, 5, 5), 3, 1, AVERAGE),
        linear_case("a 3-channel image: the window hides all three channels", (3, 4, 4), 2, 2, CHANNELS),
        linear_case("a non-square image: 6 rows × 9 columns, window 3, stride 2", (1, 6, 9), 3, 2, ROWS_COLS),
        linear_case("one window as large as the image (4×4, stride 1)", (1, 4, 4), 4, 1, WHOLE),
        _occlusion_case("a small CNN asked about a class it does not predict", cnn, image_cnn, _ranked_class(cnn, image_cnn[None], 1), 3, 2, TARGET),
    ]
    for i in range(6):
        channels, height, width = _random_shape(generator, 11)
        window = int(torch.randint(1, min(height, width) + 1, (1,), generator=generator))
        stride = int(torch.randint(1, window + 1, (1,), generator=generator))
        target = int(torch.randint(0, 4, (1,), generator=generator))
        image = torch.rand(channels, height, width, generator=generator)
        description = f"random CNN #{i + 1}: image {tuple(image.shape)}, window {window}, stride {stride}, target {target}"
        cases.append(_occlusion_case(description, _random_cnn(200 + i, in_channels=channels), image, target, window, stride, OCCLUSION))
    run_cases(student_fn, cases, "my_occlusion")
