"""Checks for notebook 10 (activation maximization and DeepDream): one normalized ascent step.

``my_dream_step(image, gradient, lr)`` takes an image ``[1, 3, H, W]`` in [0, 1] and the gradient
of the dream objective with respect to it (same shape), and returns
``clamp(image + lr · gradient / (mean|gradient| + 1e-8), 0, 1)``. Fixed cases each isolate one
classic mistake; the random cases take real gradients of small random CNNs and compare with one
step of :func:`course_utils.xai.deep_dream` (one octave, one step, no jitter).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..xai import deep_dream
from ..xai.feature_visualization import dream_objective
from ._core import Case, reference, run_cases

__all__ = ["check_dream_step"]

# --------------------------------------------------------------------------- hints

UNIFORM = (
    "gradient *ascent*: image + lr · g / mean|g|, with mean|g| = gradient.abs().mean(). With a gradient of 1 "
    "everywhere, mean|g| = 1 and every pixel moves *up* by exactly lr. Return the new image, shaped like the input."
)
ASCENT = "use the gradient itself, with its sign, not |g|: pixels whose gradient is negative must go down."
SCALE_FREE = (
    "the step must not depend on the gradient's scale: divide by mean|g| = gradient.abs().mean(), the mean over "
    "every pixel and channel (not the max, not the L2 norm), so that lr is the mean change per pixel."
)
ALL_CHANNELS = (
    "one normalizer for the whole image: mean|g| over all channels and pixels at once, not one per channel "
    "(that would change the direction of the step, not only its length)."
)
CLAMP = "clamp the result to [0, 1] (.clamp(0, 1)): the dream must stay an image."
EPSILON = "where the gradient is 0 everywhere, 0 / 0 is NaN: add a tiny ε to the denominator, mean|g| + 1e-8."
DEFINITION = "new image = clamp(image + lr · g / (mean|g| + 1e-8), 0, 1), with the mean over every element of g."

EPS = 1e-8


@reference("dream_step")
def reference_dream_step(image: Tensor, gradient: Tensor, lr: float) -> Tensor:
    """One DeepDream ascent step, written from the definition: ``clamp(x + lr · g / mean|g|, 0, 1)``."""
    return (image + lr * gradient / (gradient.abs().mean() + EPS)).clamp(0, 1)


def _small_cnn(seed: int, width: int) -> nn.Module:
    """A float64 CNN ``conv-ReLU-conv-ReLU``, seeded without touching the global random state."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
    return model.double().eval()


def _random_case(index: int, seed: int, size: tuple[int, int], layer: str, lr: float) -> Case:
    """A real dream gradient of a random CNN; the expected image is one step of ``xai.deep_dream``."""
    model = _small_cnn(seed, width=4 + seed % 3)
    image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
    x = image.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(dream_objective(model, layer, x), x)
    expected = deep_dream(model, layer, image, octaves=1, steps=1, lr=lr, jitter=0)
    return Case(
        f"random CNN #{index}: layer {layer}, image {tuple(image.shape)}, lr={lr}", (image, gradient, lr), expected, DEFINITION
    )


# (seed, image size, layer, lr) of the random cases; lr=0.3 pushes some pixels past 0 and 1
_RANDOM = [(0, (8, 8), "1", 0.05), (1, (6, 10), "3", 0.1), (2, (12, 7), "0", 0.02), (3, (9, 9), "3", 0.3)]


def _cases() -> list[Case]:
    """Fixed cases, each isolating one mistake (in the order a mistake meets them), then random CNNs.

    Every case gets tensors of its own, so that a function that writes into its input cannot
    change a later case.
    """
    generator = torch.Generator().manual_seed(10)

    def full(value: float, size: tuple[int, int] = (4, 4)) -> Tensor:
        return torch.full((1, 3, *size), value, dtype=torch.float64)

    def mid() -> Tensor:  # pixels in [0.25, 0.75]: no clamping at these step sizes
        return 0.25 + 0.5 * torch.rand(1, 3, 5, 6, generator=generator, dtype=torch.float64)

    direction = torch.randn(1, 3, 5, 6, generator=generator, dtype=torch.float64)
    direction /= direction.abs().mean(dim=(2, 3), keepdim=True)  # each channel's mean|g| is 1
    unbalanced = direction * torch.tensor([10.0, 1.0, 0.1], dtype=torch.float64)[None, :, None, None]
    signs = torch.ones(1, 3, 3, 3, dtype=torch.float64)
    signs[:, :, :, 1:] = -1.0  # column 0 up, columns 1-2 down
    image_a, image_b, image_c, image_d = mid(), mid(), mid(), mid()
    fixed = [
        Case("a gradient of 1 everywhere, lr=0.1: every pixel moves from 0.5 to 0.6",
             (full(0.5), full(1.0), 0.1), full(0.6), UNIFORM),
        Case("a gradient of -1 everywhere, lr=0.1: every pixel moves from 0.5 down to 0.4",
             (full(0.5), full(-1.0), 0.1), full(0.4), ASCENT),
        Case("a random gradient: the step is lr · g / mean|g|",
             (image_a, direction.clone(), 0.05), reference_dream_step(image_a, direction, 0.05), SCALE_FREE),
        Case("the same gradient × 1000: the same step (normalized)",
             (image_b, 1000 * direction, 0.05), reference_dream_step(image_b, direction, 0.05), SCALE_FREE),
        Case("channels of very different gradient scales (×10, ×1, ×0.1): one mean|g| for the whole image",
             (image_c, unbalanced.clone(), 0.05), reference_dream_step(image_c, unbalanced, 0.05), ALL_CHANNELS),
        Case("bright pixels (0.98) pushed up by 0.05: they stop at 1",
             (full(0.98, (3, 3)), full(1.0, (3, 3)), 0.05), full(1.0, (3, 3)), CLAMP),
        Case("dark pixels (0.02), gradient +1 in column 0 and -1 elsewhere, lr=0.05: column 0 -> 0.07, the rest stop at 0",
             (full(0.02, (3, 3)), signs, 0.05), reference_dream_step(full(0.02, (3, 3)), signs, 0.05), CLAMP),
        Case("a gradient of 0 everywhere: nothing moves (and no NaN)",
             (image_d, torch.zeros_like(image_d), 0.05), image_d.clone(), EPSILON),
    ]  # fmt: skip
    return fixed + [_random_case(i + 1, *spec) for i, spec in enumerate(_RANDOM)]


def check_dream_step(student_fn: Callable[[Tensor, Tensor, float], Tensor]) -> None:
    """The exercise: ``my_dream_step(image, gradient, lr)`` (each Tensor[1, 3, H, W]) → the next image, Tensor[1, 3, H, W]."""
    run_cases(student_fn, _cases(), "dream_step", atol=1e-6)
