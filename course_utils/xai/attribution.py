"""Input attributions: saliency, gradient x input, SmoothGrad, Integrated Gradients, occlusion.

Each function follows captum's semantics (``Saliency``, ``InputXGradient``, ``NoiseTunnel``,
``IntegratedGradients``, ``Occlusion``) and returns a tensor shaped like ``inputs``: one score
per input element saying how much it pushed the ``target`` logit.

None of them leaves a trace on the model or the data: no hook is registered, ``model.training``
is not touched, gradients are taken with ``torch.autograd.grad`` (so ``inputs.grad`` and the
parameters' ``.grad`` stay as they were), and the model always receives a private copy of
its input, so a model that works in place cannot modify the caller's tensor.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..validation import check_choice, check_finite, check_non_negative_number, check_positive_int, check_tensor
from .targets import check_target, select_target

__all__ = ["attribution_map", "input_x_gradient", "integrated_gradients", "occlusion", "saliency", "smoothgrad"]

Model = Callable[[Tensor], Tensor]

IG_METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
# occlusion's default batching: as many occluded copies per forward pass as fit in this many input
# values (half a million): enough to amortise the per-call cost, small enough to stay cache-friendly
# on a CPU and far below a 2 GB memory limit
ELEMENTS_PER_EVAL = 2**19


# --------------------------------------------------------------------------- checks


def _check_model_and_inputs(model: object, inputs: object) -> Tensor:
    """Require a callable model and a finite floating ``Tensor[N, ...]`` with N >= 1; return it detached."""
    if not callable(model):
        raise TypeError(f"model must be callable (an nn.Module or a function), got {type(model).__name__}")
    inputs = check_tensor(inputs, "inputs", floating=True)
    if inputs.ndim < 2 or inputs.shape[0] == 0:
        raise ValueError(
            f"inputs must have shape [N, ...] with N >= 1 and a feature dimension, got {tuple(inputs.shape)}"
        )
    return check_finite(inputs, "inputs").detach()


def _check_baselines(baselines: object, inputs: Tensor) -> Tensor:
    """Return ``baselines`` (a number or a tensor that broadcasts to ``inputs``) expanded to ``inputs``' shape."""
    if isinstance(baselines, Real) and not isinstance(baselines, bool):
        baselines = torch.tensor(float(baselines))
    baselines = check_tensor(baselines, "baselines")
    try:
        broadcast = torch.broadcast_shapes(baselines.shape, inputs.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != inputs.shape:
        raise ValueError(
            f"baselines must be a number or a tensor broadcastable to the inputs' shape {tuple(inputs.shape)}, "
            f"got shape {tuple(baselines.shape)}"
        )
    baselines = baselines.to(dtype=inputs.dtype, device=inputs.device)
    return check_finite(baselines, "baselines").detach().expand_as(inputs)


def _check_sizes(value: object, name: str, ndim: int) -> tuple[int, ...]:
    """Require one positive int per feature dimension (an int is repeated for every dimension)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        sizes = tuple(check_positive_int(v, f"{name}[{i}]") for i, v in enumerate(value))
        if len(sizes) != ndim:
            raise ValueError(f"{name} must have {ndim} entries (one per dimension after N), got {len(sizes)}")
        return sizes
    return (check_positive_int(value, name),) * ndim


# --------------------------------------------------------------------------- model calls


def _gradients(model: Model, points: Tensor, target: Tensor) -> Tensor:
    """Gradient of each sample's target logit with respect to that sample.

    Args:
        points (Tensor[M, ...]): where to take the gradient.
        target (Tensor[M]): the class index of every sample.

    Returns:
        Tensor[M, ...]: ``d model(points)[i, target[i]] / d points[i]``.
    """
    leaf = points.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = select_target(model(leaf.clone()), target)
        # samples are independent, so the gradient of the sum holds every sample's own gradient
        (grad,) = torch.autograd.grad(scores.sum(), leaf, allow_unused=True, materialize_grads=True)
    return grad


def _scores(model: Model, points: Tensor, target: Tensor) -> Tensor:
    """Target logits ``Tensor[M]`` of ``points`` (``Tensor[M, ...]``), without building a graph."""
    with torch.no_grad():
        return select_target(model(points.clone()), target)


# --------------------------------------------------------------------------- gradient methods


def saliency(model: Model, inputs: Tensor, target: int | Tensor, abs: bool = True) -> Tensor:
    """Vanilla gradient (captum ``Saliency``).

    Args:
        model: maps ``Tensor[N, ...]`` to logits ``Tensor[N, K]``.
        inputs (Tensor[N, ...]): the samples to explain.
        target (int or Tensor[N]): the class to explain, one for all or one per sample.
        abs (bool): return ``|gradient|`` (captum's default) instead of the signed gradient.

    Returns:
        Tensor[N, ...]: the gradient of the target logit with respect to ``inputs``.
    """
    inputs = _check_model_and_inputs(model, inputs)
    grad = _gradients(model, inputs, check_target(target, len(inputs)))
    return grad.abs() if abs else grad


def attribution_map(attribution: Tensor) -> Tensor:
    """One heatmap per image from a pixel attribution: ``|attribution|`` summed over the channels.

    The course's single convention for showing and scoring saliency, gradient × input, IG and
    occlusion: every channel's evidence counts, and opposite signs in two channels do not cancel
    (captum's ``visualize_image_attr`` sums the signed values first; Simonyan et al. took the
    maximum of ``|gradient|`` over the channels).

    Args:
        attribution (Tensor[N, C, H, W]): an attribution with the input's shape.

    Returns:
        Tensor[N, H, W]: non-negative maps.
    """
    attribution = check_tensor(attribution, "attribution")
    if attribution.ndim != 4:
        raise ValueError(f"attribution must have shape [N, C, H, W], got {tuple(attribution.shape)}")
    if not attribution.is_floating_point():
        raise TypeError(f"attribution must be a floating-point tensor, got dtype {attribution.dtype}")
    return attribution.detach().abs().sum(dim=1)


def input_x_gradient(model: Model, inputs: Tensor, target: int | Tensor) -> Tensor:
    """Gradient times input (captum ``InputXGradient``): ``inputs * d logit / d inputs``, ``Tensor[N, ...]``."""
    inputs = _check_model_and_inputs(model, inputs)
    return inputs * _gradients(model, inputs, check_target(target, len(inputs)))


def smoothgrad(
    model: Model,
    inputs: Tensor,
    target: int | Tensor,
    n_samples: int = 25,
    stdev: float = 0.15,
    seed: int = 0,
    abs: bool = False,
) -> Tensor:
    """SmoothGrad (captum ``NoiseTunnel(Saliency)``, ``nt_type="smoothgrad"``).

    The mean gradient over ``n_samples`` noisy copies ``inputs + N(0, stdev^2)`` of every sample
    (``stdev`` is absolute, in input units). The noise comes from a private generator seeded
    with ``seed``: the global random state is left alone and the same seed gives the same noise.
    It is drawn in float32, laid out as captum draws it, so that captum run after
    ``torch.manual_seed(seed)`` on the CPU sees exactly the same noisy copies.

    Args:
        n_samples (int): noisy copies per sample (all evaluated in one batch of ``N * n_samples``).
        stdev (float): standard deviation of the Gaussian noise (0 gives the plain gradient).
        seed (int): seed of the noise.
        abs (bool): average ``|gradient|`` instead of the signed gradient.

    Returns:
        Tensor[N, ...]: the averaged gradients.
    """
    inputs = _check_model_and_inputs(model, inputs)
    n_samples = check_positive_int(n_samples, "n_samples")
    stdev = check_non_negative_number(stdev, "stdev")
    seed = check_positive_int(seed, "seed", allow_zero=True)
    target = check_target(target, len(inputs))

    generator = torch.Generator(device=inputs.device).manual_seed(seed)
    noise_shape = (len(inputs), n_samples, *inputs.shape[1:])
    noise = torch.randn(noise_shape, generator=generator, dtype=torch.float32, device=inputs.device) * stdev
    noisy = (inputs[:, None] + noise.to(inputs.dtype)).flatten(0, 1)  # [N * n_samples, ...], sample-major
    grad = _gradients(model, noisy, target.repeat_interleave(n_samples))
    if abs:
        grad = grad.abs()
    return grad.view(noise_shape).mean(dim=1)


def _ig_quadrature(method: str, n_steps: int) -> tuple[Tensor, Tensor]:
    """Points ``alphas`` in [0, 1] and weights of captum's quadrature rule, float64 ``Tensor[n_steps]`` each.

    Riemann rules weight every point by ``1 / n_steps``; captum's trapezoid rule also halves the
    end weights, so its weights sum to ``(n_steps - 1) / n_steps`` rather than 1.
    """
    if method == "gausslegendre":
        nodes, gl_weights = np.polynomial.legendre.leggauss(n_steps)  # on [-1, 1]
        return torch.from_numpy((nodes + 1) / 2), torch.from_numpy(gl_weights / 2)
    steps = torch.arange(n_steps, dtype=torch.float64)
    weights = torch.full((n_steps,), 1.0 / n_steps, dtype=torch.float64)
    if method == "riemann_left":
        return steps / n_steps, weights
    if method == "riemann_right":
        return (steps + 1) / n_steps, weights
    if method == "riemann_middle":
        return (steps + 0.5) / n_steps, weights
    if n_steps < 2:
        raise ValueError(f"n_steps must be >= 2 for method='riemann_trapezoid', got {n_steps}")
    weights[[0, -1]] /= 2
    return steps / (n_steps - 1), weights


def integrated_gradients(
    model: Model,
    inputs: Tensor,
    target: int | Tensor,
    baselines: float | Tensor | None = None,
    n_steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
    return_convergence_delta: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Integrated Gradients (captum ``IntegratedGradients``).

    ``(x - b) * sum_k w_k * grad f(b + alpha_k (x - b))``: the path integral of the gradient from
    the baseline ``b`` to the input ``x``, by the quadrature ``method`` (same points and weights
    as captum). Completeness: the attributions of a sample add up to ``f(x) - f(b)``, up to the
    quadrature error returned as ``delta``.

    Args:
        baselines (None, number or Tensor): the reference input; None means zeros; a tensor
            must broadcast to ``inputs``' shape (e.g. ``[N, ...]`` or ``[1, ...]``).
        n_steps (int): number of points on the path.
        method (str): ``"gausslegendre"``, ``"riemann_left"``, ``"riemann_right"``,
            ``"riemann_middle"`` or ``"riemann_trapezoid"``.
        internal_batch_size (int, optional): evaluate ``internal_batch_size // N`` (at least 1)
            path points per forward pass instead of all ``n_steps`` at once.
        return_convergence_delta (bool): also return ``delta``.

    Returns:
        Tensor[N, ...]: the attributions, and with ``return_convergence_delta`` also
        ``delta`` (``Tensor[N]``): ``sum(attributions[i]) - (f(x_i) - f(b_i))``.
    """
    inputs = _check_model_and_inputs(model, inputs)
    baselines = _check_baselines(0.0 if baselines is None else baselines, inputs)
    n_steps = check_positive_int(n_steps, "n_steps")
    method = check_choice(method, "method", IG_METHODS)
    target = check_target(target, len(inputs))
    steps_per_pass = n_steps
    if internal_batch_size is not None:
        steps_per_pass = max(1, check_positive_int(internal_batch_size, "internal_batch_size") // len(inputs))
    alphas, weights = (t.to(dtype=inputs.dtype, device=inputs.device) for t in _ig_quadrature(method, n_steps))

    path = inputs - baselines
    per_step = (-1,) + (1,) * inputs.ndim  # to broadcast one value per step over [steps, N, ...]
    total_grad = torch.zeros_like(inputs)
    for start in range(0, n_steps, steps_per_pass):
        alpha, weight = alphas[start : start + steps_per_pass], weights[start : start + steps_per_pass]
        points = baselines + alpha.view(per_step) * path  # [steps, N, ...]
        grad = _gradients(model, points.flatten(0, 1), target.repeat(len(alpha))).view(points.shape)
        total_grad += (weight.view(per_step) * grad).sum(dim=0)
    attributions = path * total_grad
    if not return_convergence_delta:
        return attributions
    gain = _scores(model, inputs, target) - _scores(model, baselines, target)
    return attributions, attributions.flatten(1).sum(dim=1) - gain


# --------------------------------------------------------------------------- occlusion


def _window_cover(size: int, window: int, stride: int) -> Tensor:
    """Which elements each window position covers along one dimension: bool ``Tensor[positions, size]``.

    Windows start at ``0, stride, 2 * stride, ...`` until one reaches the end:
    ``ceil((size - window) / stride) + 1`` positions, the last one cut at the border.
    """
    positions = -(-(size - window) // stride) + 1
    starts = torch.arange(positions)[:, None] * stride
    index = torch.arange(size)[None, :]
    return (index >= starts) & (index < starts + window)


def _window_masks(covers: list[Tensor], window_ids: Tensor) -> Tensor:
    """Boolean masks ``Tensor[len(window_ids), *feature_shape]`` of the windows with these flat ids."""
    grid = tuple(cover.shape[0] for cover in covers)
    masks = torch.ones((len(window_ids),) + (1,) * len(covers), dtype=torch.bool, device=window_ids.device)
    for dim, (cover, position) in enumerate(zip(covers, torch.unravel_index(window_ids, grid))):
        shape = [len(window_ids)] + [1] * len(covers)
        shape[dim + 1] = -1
        masks = masks & cover[position].view(shape)
    return masks


def _spread(values: Tensor, covers: list[Tensor]) -> Tensor:
    """Sum per-window values onto the elements each window covers.

    Args:
        values (Tensor[N, P_1, ..., P_D]): one value per sample and window position.
        covers: for each dimension ``d`` the ``Tensor[P_d, S_d]`` of :func:`_window_cover`.

    Returns:
        Tensor[N, S_1, ..., S_D]: element ``(n, i_1, ..., i_D)`` receives the sum of ``values[n]``
        over all windows that cover it. A window mask is an outer product of one cover row per
        dimension, so the sum factorises into one small contraction per dimension.
    """
    for cover in covers:
        # contract the leading window axis (axis 1); the element axis is appended at the end
        values = torch.tensordot(values, cover.to(values.dtype), dims=([1], [0]))
    return values


def occlusion(
    model: Model,
    inputs: Tensor,
    target: int | Tensor,
    sliding_window_shapes: Sequence[int],
    strides: int | Sequence[int] | None = None,
    baselines: float | Tensor = 0,
    perturbations_per_eval: int | None = None,
) -> Tensor:
    """Occlusion (captum ``Occlusion``): how much the target logit drops when a window is hidden.

    A window of shape ``sliding_window_shapes`` (every dimension after N, channels included)
    slides over each sample from index 0 with ``strides``; the window positions form a grid of
    ``ceil((size - window) / stride) + 1`` positions per dimension, the last one cut at the
    border. For each position the covered elements are replaced by ``baselines`` and
    ``f(x) - f(x_occluded)`` is recorded; an element's attribution is the mean of these
    differences over the windows that cover it.

    Args:
        sliding_window_shapes (sequence of int): the window, one size per dimension after N.
        strides (None, int or sequence of int): the step between windows per dimension (default 1);
            at most the window size wherever the window is smaller than the input, so that every
            element is covered.
        baselines (number or Tensor): the fill value; a tensor must broadcast to ``inputs``.
        perturbations_per_eval (int, optional): occluded copies of the batch per forward pass (the
            model sees ``perturbations_per_eval * N`` samples at a time); only speed and memory
            change. Default: as many as fit in ``ELEMENTS_PER_EVAL`` (2**19) input values, at least 1.

    Returns:
        Tensor[N, ...]: the attributions.
    """
    inputs = _check_model_and_inputs(model, inputs)
    feature_shape = tuple(inputs.shape[1:])
    if not isinstance(sliding_window_shapes, Sequence):
        raise TypeError(
            f"sliding_window_shapes must be a sequence of ints, got {type(sliding_window_shapes).__name__}"
        )
    windows = _check_sizes(sliding_window_shapes, "sliding_window_shapes", len(feature_shape))
    if any(w > s for w, s in zip(windows, feature_shape)):
        raise ValueError(f"sliding_window_shapes {windows} must fit in the input's shape {feature_shape} after N")
    strides = _check_sizes(1 if strides is None else strides, "strides", len(feature_shape))
    if any(st > w and w < s for st, w, s in zip(strides, windows, feature_shape)):
        raise ValueError(
            f"strides {strides} must not exceed sliding_window_shapes {windows} where the window is smaller "
            f"than the input {feature_shape}, or some elements would never be occluded"
        )
    baselines = _check_baselines(baselines, inputs)
    if perturbations_per_eval is None:
        perturbations_per_eval = max(1, ELEMENTS_PER_EVAL // inputs.numel())
    perturbations_per_eval = check_positive_int(perturbations_per_eval, "perturbations_per_eval")
    target = check_target(target, len(inputs))

    covers = [
        _window_cover(s, w, st).to(inputs.device) for s, w, st in zip(feature_shape, windows, strides)
    ]
    grid = tuple(cover.shape[0] for cover in covers)
    clean_scores = _scores(model, inputs, target)  # [N]
    drops = clean_scores.new_empty(len(inputs), math.prod(grid))  # [N, windows]
    for start in range(0, drops.shape[1], perturbations_per_eval):
        stop = min(start + perturbations_per_eval, drops.shape[1])
        window_ids = torch.arange(start, stop, device=inputs.device)
        masks = _window_masks(covers, window_ids)[:, None]  # [P, 1, *feature_shape]
        occluded = torch.where(masks, baselines, inputs)  # [P, N, *feature_shape]
        scores = _scores(model, occluded.flatten(0, 1), target.repeat(len(window_ids)))
        drops[:, start:stop] = clean_scores[:, None] - scores.view(-1, len(inputs)).T
    total = _spread(drops.view(len(inputs), *grid), covers)
    counts = _spread(torch.ones((1, *grid), dtype=drops.dtype, device=drops.device), covers)
    return (total / counts).to(inputs.dtype)
