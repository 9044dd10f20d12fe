"""Find a layer inside a model and record what it outputs during a forward pass.

Used by CAM / Grad-CAM (activations and their gradients), feature extraction and DeepDream.
A layer is given either as the ``nn.Module`` object itself or by its dotted name in
``model.named_modules()`` (``"features.3"``, ``"layer4.1.conv2"``).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

__all__ = ["LayerRecording", "layer_name", "record_layer", "resolve_layer"]


def layer_name(model: nn.Module, layer: nn.Module | str) -> str:
    """Dotted name of ``layer`` in ``model`` (``""`` for the model itself).

    Raises ValueError naming ``layer`` if it is not a sub-module of ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(layer, str):
        names = dict(model.named_modules())
        if layer not in names:
            raise ValueError(f"layer {layer!r} is not in the model; some names: {list(names)[1:8]}")
        return layer
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name
        raise ValueError(f"layer {type(layer).__name__} is not a sub-module of the model")
    raise TypeError(f"layer must be an nn.Module or a dotted name (str), got {type(layer).__name__}")


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """The sub-module of ``model`` given as a module or a dotted name."""
    return model.get_submodule(layer_name(model, layer))


@dataclass
class LayerRecording:
    """What :func:`record_layer` saw: the ``output`` of the layer's last call (None before any)."""

    output: Tensor | None = None

    def gradient(self, scores: Tensor) -> Tensor:
        """``d scores.sum() / d output``, the gradient at the layer, same shape as ``output``.

        Uses ``torch.autograd.grad``: no ``.grad`` attribute (parameters, inputs) is touched.
        Needs a recording made with ``requires_grad=True``.
        """
        if self.output is None or not self.output.requires_grad:
            raise RuntimeError("gradient() needs a forward pass inside record_layer(..., requires_grad=True)")
        with torch.enable_grad():  # the sum must join the graph even inside torch.no_grad()
            return torch.autograd.grad(scores.sum(), self.output)[0]


@contextmanager
def record_layer(
    model: nn.Module, layer: nn.Module | str, *, requires_grad: bool = False
) -> Iterator[LayerRecording]:
    """Context manager recording the output of ``layer`` at every forward pass of ``model``.

    The recorded tensor is safe from later in-place operations (``nn.ReLU(inplace=True)``):
    without gradients it is a detached clone; with ``requires_grad=True`` it is the layer's own
    output, kept in the autograd graph, and the rest of the network receives a clone of it
    (captum's trick), so that ``recording.gradient(scores)`` is the gradient at the layer.
    Gradients need autograd enabled during the forward pass (not inside ``torch.no_grad()``).
    The hook is removed on exit, also when the forward pass raises.

    Example::

        with record_layer(model, "features.3", requires_grad=True) as rec:
            scores = model(x)[:, 7]
        activations, grads = rec.output, rec.gradient(scores)
    """
    name = layer_name(model, layer)
    module = model.get_submodule(name)
    recording = LayerRecording()

    def hook(_module: nn.Module, _inputs: tuple, output: object) -> Tensor | None:
        if not isinstance(output, Tensor):
            raise TypeError(f"layer {name!r} must output a Tensor, got {type(output).__name__}")
        if not requires_grad:
            recording.output = output.detach().clone()
            return None
        # A layer output that is not in the graph (frozen weights, input without grad) is detached
        # before requires_grad_() so that a user's tensor is never flagged by accident.
        recording.output = output if output.requires_grad else output.detach().requires_grad_()
        return recording.output.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield recording
    finally:
        handle.remove()
