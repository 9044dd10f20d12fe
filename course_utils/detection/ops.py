"""Detection building blocks: RoI pooling, RoIAlign, focal loss and smooth-L1 loss.

Same signatures, defaults and numbers as ``torchvision.ops.roi_pool``, ``roi_align`` and
``sigmoid_focal_loss`` and as ``torch.nn.functional.smooth_l1_loss``, written in plain PyTorch.

How the two RoI operators are computed here: every output value is a reduction over a *bag*
of input pixels. For RoI pooling a bin's bag is the pixels it covers and the reduction is a
max; for RoIAlign it is the 4 neighbours of each bilinear sampling point of the bin and the
reduction is a weighted sum (bilinear weight / number of samples: the mean of the samples).
So the work splits in two:

1. index arithmetic on the boxes (small tensors, no channel dimension): for every bin, which
   pixels are in its bag and with which weights;
2. one call to ``torch.nn.functional.embedding_bag``, which gathers rows of a
   ``[N * H * W, C]`` matrix (the feature map, one row per pixel) and sums or maxes each bag,
   without materializing the ``[bins, bag size, C]`` gathered tensor. It is differentiable, so
   gradients flow back to the feature map through autograd.

Bags differ in size: RoIAlign's adaptive sampling takes ``ceil(roi / bins)`` samples per bin
side, and RoI-pooling bins cover 1 to ``ceil(roi / bins) + 1`` pixels. RoIAlign builds every
bag at the largest size, with weight 0 on the padding (cheap to build, but one large RoI makes
every RoI cost as much); RoI pooling builds them padded too, then drops the padding before
the max (``embedding_bag`` takes bags of different sizes through its ``offsets``).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ..validation import check_choice, check_finite, check_positive_number, check_tensor

__all__ = ["roi_align", "roi_pool", "sigmoid_focal_loss", "smooth_l1_loss"]

REDUCTIONS = ("none", "mean", "sum")

Boxes = Union[Tensor, Sequence[Tensor]]


# ---------------------------------------------------------------- argument checks


def _check_feature_map(input: object) -> Tensor:
    """Require a floating ``[N, C, H, W]`` tensor."""
    input = check_tensor(input, "input", floating=True)
    if input.ndim != 4:
        raise ValueError(f"input must be a 4-D feature map [N, C, H, W], got shape {tuple(input.shape)}")
    return input


def _check_output_size(output_size: object) -> tuple[int, int]:
    """An int ``s`` (-> ``(s, s)``) or a pair ``(height, width)`` of positive ints."""
    sizes = (output_size, output_size) if not isinstance(output_size, (tuple, list)) else tuple(output_size)
    if len(sizes) != 2 or any(isinstance(s, bool) or not isinstance(s, Integral) for s in sizes):
        raise TypeError(f"output_size must be an int or a pair (height, width) of ints, got {output_size!r}")
    if min(sizes) <= 0:
        raise ValueError(f"output_size must be positive, got {output_size!r}")
    return int(sizes[0]), int(sizes[1])


def _check_boxes_xyxy(boxes: Tensor, name: str) -> None:
    """Finite xyxy coordinates with ``x2 >= x1`` and ``y2 >= y1`` (zero width is fine)."""
    check_finite(boxes, name)
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name}[{i}] = {boxes[i].tolist()} is degenerate: boxes need x2 >= x1 and y2 >= y1")


def _check_rois(boxes: object, input: Tensor) -> Tensor:
    """Turn ``boxes`` (Tensor[K, 5] or a list of Tensor[L, 4]) into checked rois Tensor[K, 5].

    The result has ``input``'s dtype and device; column 0 is the batch index.
    """
    batch = input.shape[0]
    if isinstance(boxes, (list, tuple)):
        if len(boxes) != batch:
            raise ValueError(f"boxes is a list of {len(boxes)} tensors but input holds {batch} images: "
                             "give one Tensor[L, 4] per image (L may be 0)")
        parts = []
        for i, b in enumerate(boxes):
            b = check_tensor(b, f"boxes[{i}]", ndim=2)
            if b.shape[1] != 4:
                raise ValueError(f"boxes[{i}] must have shape [L, 4], got {tuple(b.shape)}")
            if b.device != input.device:
                raise ValueError(f"boxes[{i}] is on {b.device} but input is on {input.device}")
            b = b.to(input.dtype)
            parts.append(torch.cat([torch.full_like(b[:, :1], i), b], dim=1))
        rois = torch.cat(parts) if parts else input.new_zeros(0, 5)
        _check_boxes_xyxy(rois[:, 1:], "boxes (concatenated)")
        return rois
    if not isinstance(boxes, Tensor):
        raise TypeError(f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    if boxes.ndim != 2 or boxes.shape[1] != 5:
        raise ValueError(f"boxes must have shape [K, 5] (batch index, x1, y1, x2, y2), got {tuple(boxes.shape)}")
    if boxes.device != input.device:
        raise ValueError(f"boxes is on {boxes.device} but input is on {input.device}")
    check_finite(boxes, "boxes")
    index = boxes[:, 0]
    bad = (index != index.round()) | (index < 0) | (index >= batch)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"boxes[{i}, 0] = {index[i].item()} is not a batch index: it must be an integer "
                         f"in [0, {batch - 1}] (input holds {batch} images)")
    _check_boxes_xyxy(boxes[:, 1:], "boxes[:, 1:]")
    return boxes.to(input.dtype)


def _check_sampling_ratio(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"sampling_ratio must be an int (<= 0 means adaptive), got {type(value).__name__}")
    return int(value)


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


# ---------------------------------------------------------------- bags of pixels


def _pixel_rows(input: Tensor) -> Tensor:
    """The feature map as a ``[N * H * W, C]`` matrix: row ``n * H * W + y * W + x`` is pixel (y, x) of image n."""
    n, c, h, w = input.shape
    return input.permute(0, 2, 3, 1).reshape(n * h * w, c)


def _bins_to_output(values: Tensor, k: int, out_h: int, out_w: int) -> Tensor:
    """``[K * out_h * out_w, C]`` bag results -> the usual ``[K, C, out_h, out_w]`` layout."""
    return values.view(k, out_h, out_w, values.shape[1]).permute(0, 3, 1, 2).contiguous()


def _drop_padding(index: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Padded bags ``[B, S]`` -> flat indices of the ``valid`` entries and each bag's start offset.

    The order within a bag is kept; a bag with no valid entry becomes an empty bag.
    """
    sizes = valid.sum(dim=1)
    return index[valid], torch.cumsum(sizes, dim=0) - sizes


# ---------------------------------------------------------------- RoIAlign


def _axis_samples(start: Tensor, bin_size: Tensor, grid: Tensor, bins: int, max_grid: int) -> Tensor:
    """Sampling coordinates along one axis, Tensor[K, bins, max_grid].

    Sample ``i`` of bin ``p``: ``start + p * bin_size + (i + 0.5) * bin_size / grid`` (the grid
    points are the centres of ``grid`` equal sub-cells of the bin). The arithmetic follows
    torchvision's kernel term by term so that the float32 rounding is the same.
    """
    p = torch.arange(bins, device=start.device, dtype=start.dtype)
    i = torch.arange(max_grid, device=start.device, dtype=start.dtype)
    start, bin_size, grid = start[:, None, None], bin_size[:, None, None], grid[:, None, None]
    return (start + p[None, :, None] * bin_size) + (i + 0.5) * bin_size / grid


def _bilinear_axis(coord: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Bilinear interpolation along one axis of length ``size``.

    Returns the two neighbouring pixel indices and their weights, each Tensor[..., 2]
    (``[low, high]``). As in torchvision: a sample more than 1 pixel outside the map
    (``coord < -1`` or ``coord > size``) gets weight 0; otherwise the coordinate is clamped
    into ``[0, size - 1]`` (the border pixel is repeated).
    """
    inside = (coord >= -1) & (coord <= size)
    coord = coord.clamp(min=0)
    low = coord.floor()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    coord = torch.where(at_edge, low, coord)
    high = torch.where(at_edge, low, low + 1)
    frac = coord - low
    weights = torch.stack([1 - frac, frac], dim=-1) * inside[..., None]
    return torch.stack([low, high], dim=-1).long(), weights


def _axis_neighbours(start: Tensor, bin_size: Tensor, grid: Tensor, bins: int, max_grid: int,
                     size: int) -> tuple[Tensor, Tensor]:
    """Along one axis: the two neighbouring pixels of every sample and their weights, Tensor[K, bins, max_grid, 2].

    The weights already include the mean over the ``grid`` samples (``/ grid``); the padding
    samples ``i >= grid`` of an RoI with fewer samples than ``max_grid`` get weight 0.
    """
    pixels, weights = _bilinear_axis(_axis_samples(start, bin_size, grid.clamp(min=1), bins, max_grid), size)
    i = torch.arange(max_grid, device=start.device)
    scale = (i[None, :] < grid[:, None]) / grid.clamp(min=1)[:, None]  # [K, max_grid]: 1 / grid, or 0
    return pixels, weights * scale[:, None, :, None].to(weights.dtype)


def roi_align(input: Tensor, boxes: Boxes, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """RoIAlign (Mask R-CNN): bilinear, quantization-free pooling of each RoI into a fixed grid.

    The RoI (scaled by ``spatial_scale``; shifted by -0.5 pixel when ``aligned``) is split into
    ``output_size`` equal bins; each bin is the mean of ``gh x gw`` bilinearly interpolated
    samples on a regular grid inside it. ``gh = gw = sampling_ratio`` when it is > 0, else
    adaptive: ``gh = ceil(roi_height / out_h)`` (and likewise ``gw``), which varies per RoI.
    With ``aligned=False`` (legacy) RoIs are at least 1 x 1 pixel. Same numbers as
    ``torchvision.ops.roi_align``; the gradient reaches ``input`` (not the boxes).

    Each output value is a weighted sum of input pixels: the 4 bilinear neighbours of each
    sample, weight ``bilinear weight / (gh * gw)``. In adaptive mode every RoI is padded to the
    largest ``gh x gw`` among the RoIs (padding weight 0).

    Args:
        input (Tensor[N, C, H, W]): feature maps, floating dtype.
        boxes (Tensor[K, 5] or list of N Tensor[L, 4]): xyxy RoIs in image coordinates;
            a Tensor[K, 5] has the batch index of each RoI first. Converted to ``input``'s dtype.
        output_size (int or (int, int)): bins per RoI, ``(height, width)``.
        spatial_scale (float): image -> feature-map scale, e.g. 1/16 for a stride-16 map.
        sampling_ratio (int): samples per bin side; <= 0 for adaptive.
        aligned (bool): shift by -0.5 pixel so that a pixel's centre is at integer + 0.5.

    Returns:
        Tensor[K, C, out_h, out_w].
    """
    input = _check_feature_map(input)
    rois = _check_rois(boxes, input).detach()  # torchvision gives no gradient to the boxes either
    out_h, out_w = _check_output_size(output_size)
    spatial_scale = check_positive_number(spatial_scale, "spatial_scale")
    sampling_ratio = _check_sampling_ratio(sampling_ratio)
    aligned = _check_bool(aligned, "aligned")
    n, c, height, width = input.shape
    k = rois.shape[0]

    offset = 0.5 if aligned else 0.0
    batch_index = rois[:, 0].long()
    x1, y1, x2, y2 = (rois[:, 1:] * spatial_scale - offset).unbind(1)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_w, bin_h = roi_w / out_w, roi_h / out_h

    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(roi_h, sampling_ratio)
        max_h = max_w = sampling_ratio
    else:  # adaptive: as many samples per bin side as the bin is pixels wide (rounded up)
        grid_h, grid_w = torch.ceil(roi_h / out_h), torch.ceil(roi_w / out_w)
        max_h = int(grid_h.max()) if k else 0
        max_w = int(grid_w.max()) if k else 0

    # Along each axis separately: the two neighbours of every sample and their weights.
    rows, weight_y = _axis_neighbours(y1, bin_h, grid_h, out_h, max_h, height)  # [K, out_h, gh, 2]
    cols, weight_x = _axis_neighbours(x1, bin_w, grid_w, out_w, max_w, width)  # [K, out_w, gw, 2]
    # The bag of bin (ph, pw): samples (iy, ix) x corners (cy, cx), with weight weight_y * weight_x.
    index = ((batch_index * (height * width))[:, None, None, None, None, None, None]
             + (rows * width)[:, :, None, :, None, :, None] + cols[:, None, :, None, :, None, :])
    weight = weight_y[:, :, None, :, None, :, None] * weight_x[:, None, :, None, :, None, :]
    bags, bag_size = k * out_h * out_w, max_h * max_w * 4
    offsets = torch.arange(bags, device=input.device) * bag_size  # equal-size bags (padding has weight 0)
    sums = F.embedding_bag(index.reshape(-1), _pixel_rows(input), offsets, per_sample_weights=weight.reshape(-1),
                           mode="sum")
    return _bins_to_output(sums, k, out_h, out_w)


# ---------------------------------------------------------------- RoI pooling


def _round_half_away(x: Tensor) -> Tensor:
    """C's ``round``: halves go away from zero (``torch.round`` sends them to the even integer)."""
    whole = torch.trunc(x)
    return whole + torch.sign(x) * ((x - whole).abs() >= 0.5)


def _pool_bins(start: Tensor, end: Tensor, bins: int, size: int) -> tuple[Tensor, Tensor]:
    """Pixel ranges ``[lo, hi)`` of the bins along one axis, Tensor[K, bins] each (int64).

    The RoI spans the pixels ``start .. end`` inclusive (+1 convention, at least 1 pixel);
    bin ``p`` covers ``floor(p * s) .. ceil((p + 1) * s)`` with ``s = length / bins``, clipped
    to the map. Bins overlap by a pixel when ``s`` is not an integer.
    """
    length = (end - start + 1).clamp(min=1)
    bin_size = length / bins  # in the input dtype, as torchvision computes it
    p = torch.arange(bins, device=start.device, dtype=start.dtype)
    lo = torch.floor(p[None, :] * bin_size[:, None]) + start[:, None]
    hi = torch.ceil((p[None, :] + 1) * bin_size[:, None]) + start[:, None]
    return lo.clamp(0, size).long(), hi.clamp(0, size).long()


def roi_pool(input: Tensor, boxes: Boxes, output_size: int | tuple[int, int], spatial_scale: float = 1.0) -> Tensor:
    """RoI max pooling (Fast R-CNN): each RoI, snapped to whole pixels, max-pooled into a fixed grid.

    The scaled RoI corners are rounded to the nearest pixel (halves away from zero), the RoI
    covers ``x2 - x1 + 1`` pixels (at least 1), and bin ``p`` covers pixels
    ``floor(p * s) .. ceil((p + 1) * s) - 1`` from the RoI's start (``s`` = RoI size / bins),
    clipped to the map. Each output is the max over its bin; a bin entirely outside the map
    gives 0. Same numbers as ``torchvision.ops.roi_pool``; the gradient goes to the (first)
    maximal pixel of each bin.

    Args:
        input (Tensor[N, C, H, W]): feature maps, floating dtype.
        boxes (Tensor[K, 5] or list of N Tensor[L, 4]): xyxy RoIs in image coordinates;
            a Tensor[K, 5] has the batch index of each RoI first.
        output_size (int or (int, int)): bins per RoI, ``(height, width)``.
        spatial_scale (float): image -> feature-map scale.

    Returns:
        Tensor[K, C, out_h, out_w].
    """
    input = _check_feature_map(input)
    rois = _check_rois(boxes, input).detach()
    out_h, out_w = _check_output_size(output_size)
    spatial_scale = check_positive_number(spatial_scale, "spatial_scale")
    n, c, height, width = input.shape
    k = rois.shape[0]

    batch_index = rois[:, 0].long()
    x1, y1, x2, y2 = _round_half_away(rois[:, 1:] * spatial_scale).unbind(1)
    row_lo, row_hi = _pool_bins(y1, y2, out_h, height)  # [K, out_h]
    col_lo, col_hi = _pool_bins(x1, x2, out_w, width)  # [K, out_w]

    # Padded bags: bin (ph, pw) holds pixels (row_lo + dy, col_lo + dx) for dy, dx below the largest bin.
    max_h = int((row_hi - row_lo).max()) if k else 0
    max_w = int((col_hi - col_lo).max()) if k else 0
    rows = row_lo[..., None] + torch.arange(max_h, device=input.device)  # [K, out_h, max_h]
    cols = col_lo[..., None] + torch.arange(max_w, device=input.device)  # [K, out_w, max_w]
    shape = (k, out_h, out_w, max_h, max_w)
    index = (batch_index[:, None, None, None, None] * (height * width)
             + rows[:, :, None, :, None] * width + cols[:, None, :, None, :]).reshape(k * out_h * out_w, max_h * max_w)
    valid = ((rows < row_hi[..., None])[:, :, None, :, None]
             & (cols < col_hi[..., None])[:, None, :, None, :]).expand(shape).reshape(k * out_h * out_w, max_h * max_w)
    flat_index, offsets = _drop_padding(index, valid)  # row-major within a bin: ties go to the first pixel
    maxima = F.embedding_bag(flat_index, _pixel_rows(input), offsets, mode="max")  # empty bag -> 0
    return _bins_to_output(maxima, k, out_h, out_w)


# ---------------------------------------------------------------- losses


def _check_reduction(reduction: object) -> str:
    return check_choice(reduction, "reduction", REDUCTIONS)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_pair(a: object, b: object, name_a: str, name_b: str) -> tuple[Tensor, Tensor]:
    """Two tensors of the same shape; ``a`` floating; ``b`` converted to ``a``'s dtype if it is not floating."""
    a = check_tensor(a, name_a, floating=True)
    b = check_tensor(b, name_b)
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if not b.is_floating_point():
        b = b.to(a.dtype)
    return a, b


def _check_real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def sigmoid_focal_loss(inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2,
                       reduction: str = "none") -> Tensor:
    """Focal loss (RetinaNet): binary cross-entropy scaled down on easy examples.

    ``loss = alpha_t * (1 - p_t) ** gamma * BCE(inputs, targets)`` with ``p = sigmoid(inputs)``,
    ``p_t = p`` for a positive (target 1) and ``1 - p`` for a negative, and
    ``alpha_t = alpha`` / ``1 - alpha``. ``gamma = 0`` and ``alpha = -1`` give plain BCE. An
    easy negative (p_t = 0.99) is weighted ``1e-4`` times less than with BCE, which is how
    one-stage detectors survive 100 000 background anchors per image.

    Args:
        inputs (Tensor[*]): logits, any shape.
        targets (Tensor[*]): same shape, 0 / 1 labels (soft labels in [0, 1] work too).
        alpha (float): weight of the positives in [0, 1], or -1 for no weighting.
        gamma (float): focusing exponent >= 0.
        reduction (str): ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
        Tensor[*] (``"none"``) or a scalar tensor.
    """
    inputs, targets = _check_pair(inputs, targets, "inputs", "targets")
    alpha = _check_real(alpha, "alpha")
    if not (0 <= alpha <= 1 or alpha == -1):
        raise ValueError(f"alpha must be in [0, 1], or -1 for no weighting, got {alpha}")
    gamma = _check_real(gamma, "gamma")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    reduction = _check_reduction(reduction)

    p = torch.sigmoid(inputs)
    bce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")  # the stable log(1 + e^-x) form
    p_t = p * targets + (1 - p) * (1 - targets)  # probability given to the true label
    loss = bce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _reduce(loss, reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, beta: float = 1.0, reduction: str = "mean") -> Tensor:
    """Smooth-L1 (Huber-like) box-regression loss: quadratic near 0, linear far away.

    Per element, with ``d = |input - target|``: ``0.5 * d ** 2 / beta`` if ``d < beta``, else
    ``d - 0.5 * beta``. ``beta = 0`` is the L1 loss. Outliers get a bounded gradient (±1)
    instead of the L2 loss's ``2 d``. Same numbers as ``torch.nn.functional.smooth_l1_loss``.

    Args:
        input (Tensor[*]): predictions.
        target (Tensor[*]): same shape.
        beta (float): where the quadratic part ends, >= 0.
        reduction (str): ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
        Tensor[*] (``"none"``) or a scalar tensor.
    """
    input, target = _check_pair(input, target, "input", "target")
    beta = _check_real(beta, "beta")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    reduction = _check_reduction(reduction)

    diff = (input - target).abs()
    if beta == 0:
        return _reduce(diff, reduction)
    loss = torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)
    return _reduce(loss, reduction)
