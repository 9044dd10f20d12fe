"""Target handling shared by the explanation methods (captum's ``target`` argument).

A target is either one class index for the whole batch (an ``int`` or a 0-d integer tensor)
or one class index per sample (an integer ``Tensor[N]``).
"""

from __future__ import annotations

from numbers import Integral

import torch
from torch import Tensor


def check_target(target: object, n: int) -> Tensor:
    """Return ``target`` as an int64 ``Tensor[n]`` holding one class index per sample.

    Args:
        target (int or Tensor): one class index for every sample, or an integer ``Tensor[n]``.
        n (int): the number of samples in the batch.

    Raises:
        TypeError: ``target`` is not an int or an integer tensor.
        ValueError: ``target`` is a tensor whose length is not ``n``.
    """
    if isinstance(target, Tensor):
        if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
            raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
        if target.ndim == 0:
            return target.long().expand(n)
        if target.shape != (n,):
            raise ValueError(
                f"target must be an int or a Tensor[{n}] (one class per sample), got shape {tuple(target.shape)}"
            )
        return target.long()
    if isinstance(target, bool) or not isinstance(target, Integral):
        raise TypeError(f"target must be an int or a LongTensor of class indices, got {type(target).__name__}")
    return torch.full((n,), int(target), dtype=torch.long)


def select_target(output: object, target: object) -> Tensor:
    """Pick each sample's target score from the model's logits.

    Args:
        output (Tensor[N, K]): the model's output, one row of ``K`` class scores per sample.
        target (int or Tensor[N]): the class index (or indices), see :func:`check_target`.

    Returns:
        Tensor[N]: ``output[i, target[i]]`` for every sample ``i``.

    Raises:
        TypeError / ValueError: the output is not ``N x K`` or a target is not in ``[0, K)``.
    """
    if not isinstance(output, Tensor):
        raise TypeError(f"model output must be a Tensor of class scores, got {type(output).__name__}")
    if output.ndim != 2:
        raise ValueError(f"model output must have shape [N, num_classes], got {tuple(output.shape)}")
    num_samples, num_classes = output.shape
    index = check_target(target, num_samples).to(output.device)
    out_of_range = (index < 0) | (index >= num_classes)
    if bool(out_of_range.any()):
        i = int(out_of_range.nonzero()[0, 0])
        raise ValueError(
            f"target must be in [0, {num_classes}) (the model has {num_classes} outputs), "
            f"got {int(index[i])} for sample {i}"
        )
    return output.gather(1, index[:, None]).squeeze(1)
