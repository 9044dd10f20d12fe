"""Trust but verify: scores for explanations.

- :func:`pointing_game` (Zhang et al. 2016): does the heatmap's maximum fall on the object?
- :func:`deletion_insertion` (Petsiuk et al. 2018, RISE): how fast does the class probability
  fall when the most salient pixels are removed first, and rise when they are inserted first?
- :func:`randomization_sanity_check` (Adebayo et al. 2018): does the explanation change when
  the model's weights are randomized? If not, it explains the image, not the model.
"""

from __future__ import annotations

import copy
from numbers import Real
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torchvision.transforms.v2.functional import gaussian_blur

from ..validation import check_boxes, check_finite, check_positive_int, check_tensor
from .layers import layer_name
from .targets import check_target, select_target

__all__ = [
    "deletion_insertion", "mass_fraction", "pearson_correlation", "pointing_game",
    "randomization_layers", "randomize_layers", "randomization_sanity_check", "spearman_rank_correlation",
]  # fmt: skip

Explainer = Callable[[nn.Module, Tensor, "int | Tensor"], Tensor]

# RISE's blurred canvas: an 11 x 11 Gaussian kernel with sigma 5.
_BLUR_KERNEL = 11
_BLUR_SIGMA = 5.0


def _check_heatmaps(heatmaps: object, name: str = "heatmaps") -> Tensor:
    """Accept ``[N, H, W]`` or ``[N, 1, H, W]`` finite maps and return ``[N, H, W]``."""
    heatmaps = check_tensor(heatmaps, name)
    if heatmaps.ndim == 4 and heatmaps.shape[1] == 1:
        heatmaps = heatmaps[:, 0]
    if heatmaps.ndim != 3:
        raise ValueError(f"{name} must have shape [N, H, W] or [N, 1, H, W], got {tuple(heatmaps.shape)}")
    if heatmaps.dtype == torch.bool or heatmaps.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {heatmaps.dtype}")
    if heatmaps.shape[-1] == 0 or heatmaps.shape[-2] == 0:
        raise ValueError(f"{name} must have at least one pixel, got shape {tuple(heatmaps.shape)}")
    return check_finite(heatmaps, name)


def mass_fraction(heatmaps: Tensor, regions: Tensor, within: Tensor | None = None) -> Tensor:
    """Share of each heatmap's mass that lies in a region: ``sum(h · region) / sum(h · within)``.

    With ``within=None`` the denominator is the whole map (e.g. the share on the object's mask);
    with ``within=own | other`` it is the share on one object of the mass on two.

    Args:
        heatmaps (Tensor[N, H, W] or Tensor[N, 1, H, W]): non-negative maps.
        regions (Tensor[N, H, W], bool): the region of each map to measure.
        within (Tensor[N, H, W], bool, optional): the part of each map that counts; contains ``regions``.

    Returns:
        Tensor[N]: fractions in [0, 1]; 0 for a map with no mass where it counts.
    """
    heatmaps = _check_heatmaps(heatmaps)
    if bool((heatmaps < 0).any()):
        raise ValueError("heatmaps must be non-negative (take attribution_map or abs() first)")
    masks = []
    for name, mask in (("regions", regions), ("within", within)):
        if mask is None:
            masks.append(None)
            continue
        mask = check_tensor(mask, name)
        if mask.dtype != torch.bool:
            raise TypeError(f"{name} must be a bool tensor, got dtype {mask.dtype}")
        if mask.shape != heatmaps.shape:
            raise ValueError(f"{name} must have the heatmaps' shape {tuple(heatmaps.shape)}, got {tuple(mask.shape)}")
        masks.append(mask)
    regions, within = masks
    if within is not None and bool((regions & ~within).any()):
        raise ValueError("regions must lie inside within")
    inside = (heatmaps * regions).flatten(1).sum(1)
    total = (heatmaps if within is None else heatmaps * within).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp(min=torch.finfo(heatmaps.dtype).tiny), 0.0)


def pointing_game(heatmaps: Tensor, boxes: Sequence[Tensor], tolerance: float = 0.0) -> dict:
    """Pointing game: a hit when each heatmap's maximum lies on one of its image's boxes.

    Conventions: boxes are xyxy in heatmap pixel-edge coordinates (pixel ``(row i, column j)``
    covers ``[j, j+1] x [i, i+1]``); the maximum is the first one in row-major order
    (``torch.argmax``, as TorchRay's benchmark); it is a hit when the centre
    ``(j + 0.5, i + 0.5)`` of that pixel is within ``tolerance`` pixels (Euclidean) of a box,
    borders included. ``tolerance=0`` asks for the centre inside a box; TorchRay's benchmark
    uses 15 pixels (measured to the nearest object pixel, strictly less).

    Args:
        heatmaps (Tensor[N, H, W] or Tensor[N, 1, H, W]): one map per image.
        boxes (list of N Tensor[K_i, 4]): each image's object boxes (an empty one never hits).
        tolerance (float): slack in pixels, ``>= 0``.

    Returns:
        dict: ``hit_rate`` (float), ``hits`` (BoolTensor[N]) and ``points`` (LongTensor[N, 2],
        the ``(x, y)`` = (column, row) of each maximum).
    """
    heatmaps = _check_heatmaps(heatmaps)
    if isinstance(boxes, Tensor) or not isinstance(boxes, Sequence):
        raise TypeError(f"boxes must be a list of [K_i, 4] tensors, got {type(boxes).__name__}")
    if len(boxes) != len(heatmaps):
        raise ValueError(f"boxes must hold one tensor per heatmap: {len(heatmaps)} heatmaps, {len(boxes)} boxes")
    if isinstance(tolerance, bool) or not isinstance(tolerance, Real) or not 0 <= tolerance < float("inf"):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if len(heatmaps) == 0:
        raise ValueError("heatmaps must hold at least one map")

    width = heatmaps.shape[-1]
    flat_argmax = heatmaps.flatten(1).argmax(dim=1)
    points = torch.stack([flat_argmax % width, flat_argmax // width], dim=1)  # (x, y)

    all_boxes = torch.cat([check_boxes(b, f"boxes[{i}]").to(heatmaps.device) for i, b in enumerate(boxes)])
    owner = torch.repeat_interleave(torch.tensor([len(b) for b in boxes], device=heatmaps.device))
    centres = points[owner].to(all_boxes.dtype) + 0.5
    # Distance from a point to a box: how far it sticks out on each axis (0 inside).
    dx = (all_boxes[:, 0] - centres[:, 0]).clamp(min=0) + (centres[:, 0] - all_boxes[:, 2]).clamp(min=0)
    dy = (all_boxes[:, 1] - centres[:, 1]).clamp(min=0) + (centres[:, 1] - all_boxes[:, 3]).clamp(min=0)
    box_hits = dx**2 + dy**2 <= tolerance**2
    hits_per_image = torch.zeros(len(heatmaps), dtype=torch.long, device=heatmaps.device)
    hits = hits_per_image.index_add_(0, owner, box_hits.long()) > 0
    return {"hit_rate": hits.sum().item() / len(hits), "hits": hits, "points": points}


def _baseline_images(inputs: Tensor, baseline: float | str | Tensor) -> Tensor:
    """The canvas that replaces removed pixels: a constant, a tensor, or ``"blur"``."""
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f"baseline must be a number, a tensor or 'blur'; got {baseline!r}")
        # Reflect padding needs kernel // 2 < the image side.
        kernel = min(_BLUR_KERNEL, 2 * min(inputs.shape[-2:]) - 1)
        return gaussian_blur(inputs, [kernel, kernel], [_BLUR_SIGMA, _BLUR_SIGMA])
    if isinstance(baseline, Tensor):
        try:
            return check_finite(baseline.to(inputs), "baseline").expand_as(inputs)
        except RuntimeError as error:
            raise ValueError(
                f"baseline of shape {tuple(baseline.shape)} does not broadcast to inputs {tuple(inputs.shape)}"
            ) from error
    if isinstance(baseline, bool) or not isinstance(baseline, Real):
        raise TypeError(f"baseline must be a number, a tensor or 'blur'; got {type(baseline).__name__}")
    return torch.full_like(inputs, float(baseline))


def _probability_curve(
    model: nn.Module, start: Tensor, end: Tensor, switched: Tensor, target: Tensor, batch_size: int
) -> Tensor:
    """Softmax probability of ``target`` for images that take ``end``'s pixels where ``switched``.

    ``start, end``: ``[N, C, H, W]``; ``switched``: ``[S, N, 1, H, W]`` bool. Returns ``[N, S]``.
    """
    num_images = len(start)
    curve = []
    for chunk in switched.split(max(1, batch_size // num_images)):
        images = torch.where(chunk, end, start).flatten(0, 1)  # [s * N, C, H, W]
        probabilities = model(images).softmax(dim=-1)
        curve.append(select_target(probabilities, target.repeat(len(chunk))).view(len(chunk), num_images))
    return torch.cat(curve).T


def deletion_insertion(
    model: nn.Module,
    inputs: Tensor,
    target: int | Tensor,
    heatmaps: Tensor,
    steps: int = 32,
    baseline: float | str | Tensor = 0.0,
    batch_size: int = 64,
) -> dict:
    """Deletion and insertion curves of RISE (Petsiuk et al. 2018) and their areas.

    Pixels are ranked by decreasing heatmap value (ties: row-major order). Deletion replaces
    the top-ranked pixels of the image by ``baseline``; insertion starts from ``baseline`` and
    puts the top-ranked image pixels back. After ``k`` of ``steps`` equal chunks
    (``round(k H W / steps)`` pixels, all channels), the softmax probability of ``target`` is
    recorded; the area under each curve is taken by the trapezoid rule over the fraction of
    pixels switched, in [0, 1]. A good heatmap has a LOW deletion and a HIGH insertion AUC.
    The model runs in its current mode (call ``model.eval()`` first), without gradients.

    Args:
        model (nn.Module): classifier returning ``[M, K]`` logits.
        inputs (Tensor[N, C, H, W]): images.
        target (int or Tensor[N]): class whose probability is tracked.
        heatmaps (Tensor[N, H, W] or Tensor[N, 1, H, W]): maps at input resolution
            (see ``upsample_heatmap``).
        steps (int): number of chunks; the curves have ``steps + 1`` points.
        baseline (float, Tensor or "blur"): the removed-pixel canvas: a constant, a tensor
            broadcastable to ``inputs``, or the Gaussian-blurred image (kernel 11, sigma 5).
        batch_size (int): about how many images per forward pass.

    Returns:
        dict: ``deletion_auc``, ``insertion_auc`` (Tensor[N]); ``deletion_curve``,
        ``insertion_curve`` (Tensor[N, steps + 1]); ``fractions`` (Tensor[steps + 1]).
    """
    inputs = check_finite(check_tensor(inputs, "inputs", ndim=4, floating=True), "inputs")
    heatmaps = _check_heatmaps(heatmaps)
    if heatmaps.shape != inputs.shape[:1] + inputs.shape[2:]:
        raise ValueError(
            f"heatmaps must be [N, H, W] = {tuple(inputs.shape[:1] + inputs.shape[2:])} like inputs, got "
            f"{tuple(heatmaps.shape)} (use upsample_heatmap to resize)"
        )
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    target = check_target(target, len(inputs)).to(inputs.device)
    canvas = _baseline_images(inputs, baseline)

    num_images, height, width = heatmaps.shape
    order = heatmaps.flatten(1).argsort(dim=1, descending=True, stable=True)
    positions = torch.arange(height * width, device=order.device).expand_as(order)
    ranks = torch.empty_like(order).scatter_(1, order, positions)  # ranks[n, pixel] = its place in order
    counts = torch.linspace(0, height * width, steps + 1, device=inputs.device).round().long()
    switched = (ranks[None] < counts[:, None, None]).view(steps + 1, num_images, 1, height, width)
    fractions = counts.to(inputs.dtype) / (height * width)

    with torch.no_grad():
        deletion = _probability_curve(model, inputs, canvas, switched, target, batch_size)
        insertion = _probability_curve(model, canvas, inputs, switched, target, batch_size)
    return {
        "deletion_auc": torch.trapezoid(deletion, fractions, dim=1),
        "insertion_auc": torch.trapezoid(insertion, fractions, dim=1),
        "deletion_curve": deletion,
        "insertion_curve": insertion,
        "fractions": fractions,
    }


def _average_ranks(values: Tensor) -> Tensor:
    """Row-wise ranks 1..D of ``[N, D]``, tied values sharing their average rank."""
    ordered = values.sort(dim=1).values
    below = torch.searchsorted(ordered, values, right=False)  # how many are smaller
    up_to = torch.searchsorted(ordered, values, right=True)  # how many are smaller or equal
    return (below + up_to + 1).to(torch.float64) / 2


def _check_pair(a: object, b: object) -> tuple[Tensor, Tensor]:
    """Require two finite real tensors of one shape ``[N, ...]`` with at least one value per sample; ``[N, D]`` float64 each."""
    a, b = check_tensor(a, "a"), check_tensor(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.ndim < 2 or a.numel() == 0:
        raise ValueError(f"a and b must have shape [N, ...] with at least one value per sample, got {tuple(a.shape)}")
    for tensor, name in ((a, "a"), (b, "b")):
        if tensor.dtype == torch.bool or tensor.is_complex():
            raise TypeError(f"{name} must hold real numbers, got dtype {tensor.dtype}")
        check_finite(tensor, name)
    return a.detach().flatten(1).to(torch.float64), b.detach().flatten(1).to(torch.float64)


def _pearson_rows(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Pearson correlation of ``[N, D]`` float64 tensors; 0 where a row is constant."""
    centred_a, centred_b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    norms = centred_a.norm(dim=1) * centred_b.norm(dim=1)
    covariance = (centred_a * centred_b).sum(dim=1)
    return torch.where(norms > 0, covariance / norms, 0.0)


def pearson_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation between ``a[i]`` and ``b[i]`` (flattened) for every sample ``i``.

    As ``scipy.stats.pearsonr`` (or ``numpy.corrcoef``) on each pair of flattened samples; a constant
    sample has no spread and gets correlation 0 (scipy gives NaN).

    Args:
        a, b (Tensor[N, ...]): the same shape, finite real values, e.g. two batches of images ``[N, 3, H, W]``.

    Returns:
        Tensor[N] (float64), each in [-1, 1].
    """
    return _pearson_rows(*_check_pair(a, b))


def spearman_rank_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Spearman correlation between ``a[i]`` and ``b[i]`` (flattened) for every sample ``i``.

    The Pearson correlation of average ranks, as ``scipy.stats.spearmanr``; a constant map has
    no ranking and gets correlation 0 (scipy gives NaN).

    Returns:
        Tensor[N] (float64).
    """
    a, b = _check_pair(a, b)
    return _pearson_rows(_average_ranks(a), _average_ranks(b))


def randomization_layers(model: nn.Module) -> list[str]:
    """The layers that :func:`randomization_sanity_check` randomizes by default, in its order.

    Names of the modules holding parameters of their own, in reverse registration order
    (for a feed-forward model: from the output down).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    names = [
        name
        for name, module in model.named_modules()
        if hasattr(module, "reset_parameters") and any(True for _ in module.parameters(recurse=False))
    ]
    return names[::-1]


def _reset(model: nn.Module, name: str, seed: int) -> None:
    """Re-initialise layer ``name`` of ``model`` in place, seeded (the global RNG state is restored).

    A block without ``reset_parameters`` of its own has each of its submodules that has one re-initialised.
    """
    module = model.get_submodule(name)
    resettable = [m for m in module.modules() if hasattr(m, "reset_parameters")]
    if not resettable:
        raise ValueError(f"layers: {name!r} ({type(module).__name__}) has no reset_parameters(), nor any of its submodules")
    cuda_devices = sorted({p.device.index for p in module.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        for submodule in resettable:  # a block (e.g. a residual block) is re-initialised layer by layer
            submodule.reset_parameters()


def randomize_layers(model: nn.Module, layers: Sequence[nn.Module | str], seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` whose ``layers`` have random weights; ``model`` itself is not modified.

    Layer ``k`` of the list is re-initialised with seed ``seed + k``, as in
    :func:`randomization_sanity_check`: ``randomize_layers(model, layers[:k + 1], seed)`` is the
    model whose map that check compares at its step ``k``.

    Args:
        model (nn.Module): the trained model.
        layers (list of nn.Module or str): the layers to re-initialise (may be empty: a plain copy).
        seed (int): seed of the first layer's re-initialisation.
    """
    names = [layer_name(model, layer) for layer in layers]
    seed = check_positive_int(seed, "seed", allow_zero=True)
    randomized = copy.deepcopy(model)
    for step, name in enumerate(names):
        _reset(randomized, name, seed + step)
    return randomized


def _explain(explain: Explainer, model: nn.Module, inputs: Tensor, target: int | Tensor) -> Tensor:
    """Call ``explain`` and require one finite map per input."""
    maps = check_tensor(explain(model, inputs, target), "explain(...)")
    if maps.ndim == 0 or len(maps) != len(inputs):
        raise ValueError(f"explain must return one map per input ({len(inputs)}), got shape {tuple(maps.shape)}")
    return check_finite(maps.detach(), "explain(...)")


def randomization_sanity_check(
    model: nn.Module,
    inputs: Tensor,
    target: int | Tensor,
    explain: Explainer,
    layers: Sequence[nn.Module | str] | None = None,
    seed: int = 0,
) -> list[tuple[str, float]]:
    """Cascading model-parameter randomization test (Adebayo et al. 2018).

    On a deep copy of ``model`` (the given one is never modified), re-initialise one more
    layer at a time with its ``reset_parameters()`` (top layer first; seeded, the global RNG
    state is restored) and recompute ``explain(model_copy, inputs, target)``. An explanation
    that depends on the model drifts away from the original; one that does not (an edge
    detector) keeps correlation 1.

    Args:
        model (nn.Module): the trained model.
        inputs (Tensor[N, ...]): the inputs to explain.
        target (int or Tensor[N]): passed to ``explain``.
        explain (callable): ``explain(model, inputs, target) -> Tensor[N, ...]``, one map per input
            (e.g. ``lambda m, x, t: grad_cam(m, "features.3", x, t)``).
        layers (list of nn.Module or str, optional): the layers in randomization order; a block
            without ``reset_parameters`` of its own has each of its submodules that has one re-initialised;
            default: :func:`randomization_layers` (every module with parameters of its own, from the output down).
        seed (int): seed of the re-initialisation (layer ``k`` uses ``seed + k``).

    Returns:
        list of ``(layer_name, mean_spearman)``: after randomizing that layer and all before
        it in the list, the Spearman rank correlation with the original map, averaged over
        the inputs (see :func:`spearman_rank_correlation`).
    """
    inputs = check_tensor(inputs, "inputs")
    names = randomization_layers(model) if layers is None else [layer_name(model, layer) for layer in layers]
    seed = check_positive_int(seed, "seed", allow_zero=True)
    randomized = copy.deepcopy(model)
    original = _explain(explain, randomized, inputs, target)

    results = []
    for step, name in enumerate(names):
        _reset(randomized, name, seed + step)  # cumulative: the layers before it stay random
        maps = _explain(explain, randomized, inputs, target)
        if maps.shape != original.shape:
            raise ValueError(
                f"explain returned shape {tuple(maps.shape)} after randomization, {tuple(original.shape)} before"
            )
        results.append((name, spearman_rank_correlation(original, maps).mean().item()))
    return results
