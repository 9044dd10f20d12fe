"""Pictures that a network wants to see: activation maximization and DeepDream.

- :func:`activation_maximization` (Erhan et al. 2009; Yosinski et al. 2015; Olah et al. 2017):
  start from a grey, slightly noisy image and climb the gradient of one class logit or one
  channel's mean activation. Without regularizers the ascent finds high-frequency noise; random
  jitter, a periodic Gaussian blur and an L2 decay towards grey make the picture readable.
- :func:`deep_dream` (Mordvintsev et al. 2015): start from a photo and amplify whatever a layer
  already sees in it, one octave (scale) at a time, from small to large.

Both run the model in eval mode (BatchNorm uses its running statistics and is never updated)
and restore every module's ``training`` flag afterwards; gradients are taken with
``torch.autograd.grad`` with respect to the image only (no ``.grad`` attribute is touched);
layers are recorded with :func:`~course_utils.xai.layers.record_layer`, whose hook is always
removed, also when something raises.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2.functional import gaussian_blur

from ..training import eval_mode
from ..validation import check_finite, check_positive_int, check_positive_number, check_probability, check_tensor
from .layers import layer_name, record_layer

__all__ = ["activation_maximization", "deep_dream", "dream_objective", "eval_mode"]

# Pixels are kept away from exactly 0 and 1 before taking the logit, so that it stays finite.
_PIXEL_EPS = 1e-3
# Standard deviation of the logits of the random start: pixels about 0.5 +- 0.025.
_INIT_NOISE = 0.1
# Added to mean |g| in DeepDream's normalized step, against a division by zero.
_GRAD_EPS = 1e-8


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter (CPU float32 without parameters)."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.device, parameter.dtype
    return torch.device("cpu"), torch.float32


def _check_image(image: object, name: str) -> Tensor:
    """Require a finite RGB image ``[1, 3, H, W]`` or ``[3, H, W]`` in [0, 1]; return it as ``[1, 3, H, W]``."""
    image = check_tensor(image, name, floating=True)
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[:2] != (1, 3) or image.shape[2] == 0 or image.shape[3] == 0:
        raise ValueError(f"{name} must have shape [1, 3, H, W] or [3, H, W], got {tuple(image.shape)}")
    check_finite(image, name)
    if bool((image < 0).any() or (image > 1).any()):
        raise ValueError(f"{name} must hold pixel values in [0, 1], got [{float(image.min())}, {float(image.max())}]")
    return image


def _check_size(size: object, name: str) -> tuple[int, int]:
    """Require an ``int`` or a pair ``(H, W)`` of positive ints."""
    if isinstance(size, Integral) and not isinstance(size, bool):
        size = (size, size)
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
        raise TypeError(f"{name} must be an int or a pair (H, W), got {size!r}")
    return check_positive_int(size[0], f"{name}[0]"), check_positive_int(size[1], f"{name}[1]")


def _check_unit(unit: object, count: int, what: str) -> int:
    """Require an int index in ``[0, count)``; ``what`` says what is counted (for the message)."""
    if isinstance(unit, bool) or not isinstance(unit, Integral):
        raise TypeError(f"unit must be an int, got {type(unit).__name__}")
    if not 0 <= unit < count:
        raise ValueError(f"unit must be in [0, {count}) ({what}), got {unit}")
    return int(unit)


def _unit_objective(model: nn.Module, layer: nn.Module | str | None, unit: int, image: Tensor) -> Tensor:
    """The 0-d objective that activation maximization climbs, differentiable with respect to ``image``.

    ``layer=None``: the logit ``model(image)[0, unit]``; otherwise the mean over all positions of
    channel ``unit`` (dimension 1) of the layer's output.
    """
    if layer is None:
        logits = model(image)
        if not isinstance(logits, Tensor) or logits.ndim != 2:
            raise ValueError("with layer=None the model must return [N, num_classes] logits")
        return logits[0, _check_unit(unit, logits.shape[1], f"the model has {logits.shape[1]} outputs")]
    with record_layer(model, layer, requires_grad=True) as recording:
        model(image)
    output = recording.output
    name = layer_name(model, layer)
    if output is None:
        raise ValueError(f"layer {name!r} was not called during the forward pass")
    if output.ndim < 2:
        raise ValueError(f"layer {name!r} must output [N, C, ...], got shape {tuple(output.shape)}")
    return output[0, _check_unit(unit, output.shape[1], f"layer {name!r} has {output.shape[1]} channels")].mean()


def _jitter(image: Tensor, jitter: int, generator: torch.Generator) -> Tensor:
    """Roll ``[N, C, H, W]`` by a random ``(dy, dx)`` drawn uniformly in ``[-jitter, jitter]``."""
    if jitter == 0:
        return image
    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
    return image.roll(shifts=(dy, dx), dims=(2, 3))


def _blur(image: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of ``[N, C, H, W]`` with a ``2·ceil(3σ) + 1`` kernel (reflected borders).

    On an image smaller than the kernel, the kernel is cut to the largest odd size that the
    reflection allows (``2·min(H, W) - 1``; 1 pixel: no blur).
    """
    kernel = min(2 * math.ceil(3 * sigma) + 1, 2 * min(image.shape[-2:]) - 1)
    return gaussian_blur(image, [kernel, kernel], [sigma, sigma])


def activation_maximization(
    model: nn.Module,
    layer: nn.Module | str | None = None,
    unit: int = 0,
    *,
    image_size: int | Sequence[int] = (64, 64),
    steps: int = 200,
    lr: float = 0.05,
    jitter: int = 4,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    decay: float = 1e-4,
    seed: int = 0,
    init: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """An input image that maximizes one class logit or one channel of a layer.

    The image is parametrized by its logits: ``image = sigmoid(theta)``, so every pixel stays in
    (0, 1) whatever the step, without clipping (which would zero the gradient of clipped pixels).
    Each step: roll the image by a random jitter, compute the objective, take an Adam step on
    ``theta`` (learning rate ``lr``) towards a larger objective, then shrink ``theta`` by
    ``(1 - decay)`` (an L2 decay towards mid-grey, since ``sigmoid(0) = 0.5``). Every
    ``blur_every`` steps the image is blurred with a Gaussian of standard deviation
    ``blur_sigma`` pixels (kernel ``2·ceil(3σ) + 1``) and ``theta`` is reset to the logits of
    the blurred pixels (clamped to ``[0.001, 0.999]``).

    Args:
        model (nn.Module): the network, run in eval mode (its modes are restored afterwards).
        layer (nn.Module, str or None): None to maximize the class logit ``model(x)[0, unit]``;
            otherwise a layer of ``model`` whose channel ``unit`` (dimension 1) is maximized on average.
        unit (int): the class index (``layer=None``) or the channel index.
        image_size (int or (H, W)): size of the random start (ignored when ``init`` is given).
        steps (int): number of ascent steps, >= 1.
        lr (float): Adam's learning rate on the logits ``theta``.
        jitter (int): largest random roll in pixels, each direction (0: none).
        blur_every (int): blur every this many steps (0: never).
        blur_sigma (float): the blur's standard deviation in pixels.
        decay (float): L2 decay factor per step, in [0, 1].
        seed (int): seed of the local generator that draws the random start and the jitter.
        init (Tensor[1, 3, H, W] or Tensor[3, H, W], optional): the starting image, in [0, 1];
            by default grey plus a little noise, ``sigmoid(0.1 · N(0, 1))``.

    Returns:
        (Tensor[1, 3, H, W], Tensor[steps]): the image (detached, in (0, 1)), and the objective
        at each step, measured on the jittered image before that step's update.
    """
    steps = check_positive_int(steps, "steps")
    lr = check_positive_number(lr, "lr")
    jitter = check_positive_int(jitter, "jitter", allow_zero=True)
    blur_every = check_positive_int(blur_every, "blur_every", allow_zero=True)
    blur_sigma = check_positive_number(blur_sigma, "blur_sigma")
    decay = check_probability(decay, "decay")
    seed = check_positive_int(seed, "seed", allow_zero=True)
    if layer is not None:
        layer_name(model, layer)  # a layer that is not in the model fails here, before any work
    device, dtype = _model_device_dtype(model)
    generator = torch.Generator().manual_seed(seed)
    if init is None:
        height, width = _check_size(image_size, "image_size")
        theta = _INIT_NOISE * torch.randn(1, 3, height, width, generator=generator)
    else:
        theta = torch.logit(_check_image(init, "init").detach().clamp(_PIXEL_EPS, 1 - _PIXEL_EPS))
    theta = theta.to(device=device, dtype=dtype).requires_grad_()
    optimizer = torch.optim.Adam([theta], lr=lr)
    history = []
    with eval_mode(model), torch.enable_grad():
        for step in range(steps):
            objective = _unit_objective(model, layer, unit, _jitter(torch.sigmoid(theta), jitter, generator))
            (gradient,) = torch.autograd.grad(-objective, theta)
            theta.grad = gradient  # the optimizer reads theta.grad; theta is our own leaf
            optimizer.step()
            history.append(float(objective.detach()))
            with torch.no_grad():
                theta.mul_(1 - decay)
                if blur_every and (step + 1) % blur_every == 0:
                    blurred = _blur(torch.sigmoid(theta), blur_sigma).clamp(_PIXEL_EPS, 1 - _PIXEL_EPS)
                    theta.copy_(torch.logit(blurred))
    return torch.sigmoid(theta).detach(), torch.tensor(history)


def dream_objective(model: nn.Module, layer: nn.Module | str, image: Tensor) -> Tensor:
    """DeepDream's objective: the L2 norm of ``layer``'s output for ``image`` ``[N, C, H, W]`` (0-d tensor).

    Differentiable with respect to ``image`` when autograd is on; the model runs in its current mode.
    """
    with record_layer(model, layer, requires_grad=True) as recording:
        model(image)
    if recording.output is None:
        raise ValueError(f"layer {layer_name(model, layer)!r} was not called during the forward pass")
    return recording.output.norm()


def _octave_sizes(height: int, width: int, octaves: int, octave_scale: float) -> list[tuple[int, int]]:
    """Image sizes from the smallest octave to the full size: ``round(size / scale**k)``, k = octaves-1 … 0."""
    sizes = [
        (round(height / octave_scale**k), round(width / octave_scale**k)) for k in reversed(range(octaves))
    ]
    if min(sizes[0]) < 1:
        raise ValueError(
            f"octaves={octaves} with octave_scale={octave_scale} shrinks the {height}x{width} image "
            f"below one pixel ({sizes[0]}); use fewer octaves or a smaller octave_scale"
        )
    return sizes


def _resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``[N, C, h, w]`` to ``size`` (``align_corners=False``)."""
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False)


def deep_dream(
    model: nn.Module,
    layer: nn.Module | str,
    image: Tensor,
    *,
    octaves: int = 3,
    octave_scale: float = 1.4,
    steps: int = 10,
    lr: float = 0.02,
    jitter: int = 2,
    seed: int = 0,
) -> Tensor:
    """DeepDream: amplify what ``layer`` sees in ``image``, over several octaves (scales).

    The image is processed from the smallest octave (``size / octave_scale**(octaves-1)``) up to
    its full size. At each octave the ``detail`` gained so far (dream minus the resized original)
    is upsampled and added to the original at that size, then ``steps`` times: roll the image by a
    random jitter, take the gradient ``g`` of :func:`dream_objective` (the L2 norm of the layer's
    output), and step ``x <- clamp(x + lr · g / mean|g|, 0, 1)``. Dividing by ``mean|g|`` makes
    ``lr`` the mean change per pixel and step, whatever the layer's scale.

    Args:
        model (nn.Module): the network, run in eval mode (its modes are restored afterwards).
        layer (nn.Module or str): the layer whose activations are amplified.
        image (Tensor[1, 3, H, W] or Tensor[3, H, W]): the starting image, values in [0, 1].
        octaves (int): number of scales, >= 1 (1: the full size only).
        octave_scale (float): size ratio between consecutive octaves, >= 1.
        steps (int): ascent steps per octave, >= 1.
        lr (float): the mean absolute change of a pixel per step.
        jitter (int): largest random roll in pixels, each direction (0: none).
        seed (int): seed of the local generator that draws the jitter.

    Returns:
        Tensor: the dreamed image, the shape of ``image``, values in [0, 1], detached.
    """
    base = _check_image(image, "image").detach()
    layer_name(model, layer)  # a layer that is not in the model fails here
    octaves = check_positive_int(octaves, "octaves")
    octave_scale = check_positive_number(octave_scale, "octave_scale")
    if octave_scale < 1:
        raise ValueError(f"octave_scale must be >= 1, got {octave_scale}")
    steps = check_positive_int(steps, "steps")
    lr = check_positive_number(lr, "lr")
    jitter = check_positive_int(jitter, "jitter", allow_zero=True)
    generator = torch.Generator().manual_seed(check_positive_int(seed, "seed", allow_zero=True))
    device, dtype = _model_device_dtype(model)
    base = base.to(device=device, dtype=dtype)

    sizes = _octave_sizes(base.shape[2], base.shape[3], octaves, octave_scale)
    detail = torch.zeros(1, 3, *sizes[0], device=device, dtype=dtype)
    with eval_mode(model), torch.enable_grad():
        for size in sizes:
            octave_base = _resize(base, size) if size != tuple(base.shape[2:]) else base
            dream = (octave_base + _resize(detail, size)).clamp(0, 1)
            for _ in range(steps):
                dream.requires_grad_()
                objective = dream_objective(model, layer, _jitter(dream, jitter, generator))
                (gradient,) = torch.autograd.grad(objective, dream)
                with torch.no_grad():
                    dream = (dream + lr * gradient / (gradient.abs().mean() + _GRAD_EPS)).clamp(0, 1)
            detail = dream.detach() - octave_base
    return dream.detach().reshape(image.shape).to(device=image.device, dtype=image.dtype)
