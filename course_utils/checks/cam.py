"""Checks for notebook 09 (CAM and Grad-CAM): the Grad-CAM channel weights, then the map.

Both exercises take what a hook records at the explained layer: ``activations`` ``A`` and
``gradients`` ``dy/dA`` of the target logit, each ``Tensor[N, C, h, w]``. The random cases are
recorded from small random CNNs; the expected maps come from :func:`course_utils.xai.grad_cam`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..xai import grad_cam
from ..xai.layers import record_layer
from ._core import Case, reference, run_cases

__all__ = ["check_gradcam_weights", "check_gradcam"]

NUM_CLASSES = 4

WEIGHTS_SHAPE = (
    "one weight per image and channel, shape [N, C]: the *mean* (not the sum) of each channel's gradient over its h·w positions."
)
SPATIAL_ONLY = "average over the spatial dims only, .mean(dim=(2, 3)); not over the channels (dim 1)."
NOT_SUM = "a mean, not a sum: divide by the number of positions h·w."
NON_SQUARE = "divide by h·w, the number of positions (here h ≠ w); .mean(dim=(2, 3)) does it for you."
KEEP_BATCH = "keep the batch dim: every image has its own gradients, so its own weights (do not average over dim 0)."
GAP_FC = "after global average pooling + fc, d logit / d A_c(i, j) = W[class, c] / (h·w) at every position: that is the weight."
MAP_SHAPE = "the map is ReLU(Σ_c w_c A_c), shape [N, 1, h, w] (sum over dim 1 with keepdim=True), not rescaled."
CHANNEL_SUM = "the channels' contributions add up: Σ_c w_c A_c is a sum over dim 1, not a mean."
RELU_AFTER = "apply the ReLU after the weighted sum over channels, not to each channel's term before summing."
NEGATIVE = "where Σ_c w_c A_c < 0 the map is 0: the ReLU keeps only the evidence *for* the class."
DEFINITION = "Grad-CAM = ReLU(Σ_c w_c A_c), w_c = the spatial mean of channel c's gradient, per image."


def _tensor(values: list) -> Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _constant_gradients(activations: Tensor, per_channel: list[float]) -> Tensor:
    """A gradient equal to ``per_channel[c]`` at every position of channel ``c`` (same shape as ``activations``)."""
    return _tensor(per_channel)[None, :, None, None].expand_as(activations).clone()


def _small_cnn(kind: str) -> tuple[nn.Module, str]:
    """A small float64 CNN with ``NUM_CLASSES`` outputs and the name of the layer to explain.

    ``"gap_fc"``: conv blocks, global average pooling, fc (CAM applies); ``"plain"``: the explained
    conv output (before its ReLU, so activations can be negative) feeds a max-pool and a dense head;
    ``"early"``: the first block of a deeper net.
    """
    if kind == "gap_fc":
        model = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, NUM_CLASSES),
        )  # fmt: skip
        layer = "3"
    elif kind == "plain":
        model = nn.Sequential(
            nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Tanh(),
            nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Linear(20, NUM_CLASSES),
        )  # fmt: skip
        layer = "0"
    elif kind == "early":
        model = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d((3, 3)), nn.Flatten(), nn.Linear(54, NUM_CLASSES),
        )  # fmt: skip
        layer = "1"
    else:
        raise ValueError(f"kind must be 'gap_fc', 'plain' or 'early', got {kind!r}")
    with torch.no_grad():  # logits 100× larger: gradients of order 1, so that atol=1e-6 is a tight test
        model[-1].weight.mul_(100.0)
    return model.double().eval(), layer


def _recording(kind: str, seed: int, n: int, size: tuple[int, int]) -> tuple[nn.Module, str, Tensor, Tensor, Tensor, Tensor]:
    """A random model, inputs, targets and what a hook records: ``(model, layer, inputs, target, A, dy/dA)``.

    The global random state is left untouched.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model, layer = _small_cnn(kind)
        inputs = torch.randn(n, 3, *size, dtype=torch.float64)
        target = torch.randint(0, NUM_CLASSES, (n,))
    with record_layer(model, layer, requires_grad=True) as recording:
        scores = model(inputs)[torch.arange(n), target]
    return model, layer, inputs, target, recording.output.detach(), recording.gradient(scores)


class _Probe(nn.Module):
    """A stand-in network for hand-made cases: its ``layer`` outputs ``A`` (the input) and its one class
    score is ``sum(G * A)`` per image, so the gradient at ``layer`` is exactly ``G``."""

    def __init__(self, gradients: Tensor) -> None:
        super().__init__()
        self.layer = nn.Identity()
        self.register_buffer("gradients", gradients)

    def forward(self, x: Tensor) -> Tensor:
        return (self.layer(x) * self.gradients).sum(dim=(1, 2, 3))[:, None]  # [N, 1]


@reference("gradcam_weights")
def reference_gradcam_weights(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM's channel weights [N, C]: the spatial mean of each channel's gradient."""
    return gradients.mean(dim=(2, 3))


@reference("gradcam")
def reference_gradcam(activations: Tensor, gradients: Tensor) -> Tensor:
    """``xai.grad_cam`` [N, 1, h, w] for recorded activations and gradients (through :class:`_Probe`)."""
    return grad_cam(_Probe(gradients), "layer", activations, 0)


# (kind, seed, batch size, input size): the random models behind the random cases
_RANDOM = [("plain", 0, 1, (8, 8)), ("early", 1, 2, (10, 6)), ("plain", 2, 3, (6, 12)),
           ("gap_fc", 3, 2, (5, 7)), ("early", 4, 1, (12, 12)), ("plain", 5, 4, (8, 10))]  # fmt: skip


def _weights_cases() -> list[Case]:
    """Fixed cases, each teaching one thing, then recorded gradients of random CNNs."""
    generator = torch.Generator().manual_seed(9)
    a_2x3x3 = torch.rand(1, 2, 3, 3, generator=generator, dtype=torch.float64)
    single = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    single[0, 0, 1, 2] = 9.0
    varied = torch.arange(1 * 3 * 2 * 2, dtype=torch.float64).reshape(1, 3, 2, 2)
    wide = torch.randn(1, 2, 2, 5, generator=generator, dtype=torch.float64)
    batch = torch.randn(3, 2, 2, 2, generator=generator, dtype=torch.float64)
    cases = [
        Case("gradient constant over space (0.5 in channel 0, -2 in channel 1): weights [[0.5, -2.0]]",
             (a_2x3x3, _constant_gradients(a_2x3x3, [0.5, -2.0])), _tensor([[0.5, -2.0]]), WEIGHTS_SHAPE),
        Case("a gradient of 9 at a single position of a 3×3 map: weight 9 / 9 = 1",
             (torch.ones_like(single), single), _tensor([[1.0]]), NOT_SUM),
        Case("three channels whose gradients differ: one weight per channel",
             (torch.ones_like(varied), varied), varied.mean(dim=(2, 3)), SPATIAL_ONLY),
        Case("a 2×5 map (h ≠ w)", (torch.ones_like(wide), wide), wide.mean(dim=(2, 3)), NON_SQUARE),
        Case("a batch of 3 images: one row of weights per image",
             (torch.ones_like(batch), batch), batch.mean(dim=(2, 3)), KEEP_BATCH),
    ]
    model, _, _, target, activations, gradients = _recording("gap_fc", 7, 2, (6, 4))
    h, w = activations.shape[2:]
    cases.append(Case("global average pooling + fc (real gradients): weights = W[class] / (h·w)",
                      (activations, gradients), model[-1].weight.detach()[target] / (h * w), GAP_FC))
    for i, (kind, seed, n, size) in enumerate(_RANDOM):
        *_, activations, gradients = _recording(kind, seed, n, size)
        cases.append(Case(f"random CNN #{i + 1}: N={n}, C={activations.shape[1]}, h×w={tuple(activations.shape[2:])}",
                          (activations, gradients), gradients.mean(dim=(2, 3)), SPATIAL_ONLY))
    return cases


def check_gradcam_weights(student_fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Exercise 1: ``my_gradcam_weights(activations, gradients)`` (each Tensor[N, C, h, w]) → Tensor[N, C]."""
    run_cases(student_fn, _weights_cases(), "gradcam_weights", atol=1e-6)


def _map_cases() -> list[Case]:
    """Fixed cases, each teaching one thing, then random CNNs whose maps come from ``xai.grad_cam``."""
    generator = torch.Generator().manual_seed(10)
    positive = torch.rand(1, 1, 3, 3, generator=generator, dtype=torch.float64) + 0.1
    twins = positive.expand(1, 2, 3, 3).clone()
    signed = torch.randn(1, 3, 4, 4, generator=generator, dtype=torch.float64)
    signed_gradients = _constant_gradients(signed, [1.0, -0.5, 0.25])
    pair = torch.rand(2, 2, 3, 3, generator=generator, dtype=torch.float64)
    opposite = torch.stack([_constant_gradients(pair[:1], [1.0, 0.5])[0], _constant_gradients(pair[:1], [-1.0, -0.5])[0]])
    wide = torch.rand(1, 2, 2, 5, generator=generator, dtype=torch.float64)
    wide_gradients = torch.randn(1, 2, 2, 5, generator=generator, dtype=torch.float64)
    cases = [
        Case("one channel, gradient 2 everywhere: the map is 2·A",
             (positive, torch.full_like(positive, 2.0)), 2 * positive, MAP_SHAPE),
        Case("two channels with weights 1 and 2: the map is A_0 + 2·A_1",
             (twins, _constant_gradients(twins, [1.0, 2.0])), 3 * positive, CHANNEL_SUM),
        Case("two identical channels with weights +1 and -1: they cancel, the map is 0",
             (twins, _constant_gradients(twins, [1.0, -1.0])), torch.zeros_like(positive), RELU_AFTER),
        Case("evidence against the class everywhere (weight -1): the map is 0",
             (positive, -torch.ones_like(positive)), torch.zeros_like(positive), NEGATIVE),
        Case("activations of both signs (a layer before its ReLU): only the positive sum survives",
             (signed, signed_gradients), reference_gradcam(signed, signed_gradients), RELU_AFTER),
        Case("a batch of 2 images whose gradients have opposite signs: each image has its own weights",
             (pair, opposite), reference_gradcam(pair, opposite), KEEP_BATCH),
        Case("a 2×5 map (h ≠ w)", (wide, wide_gradients), reference_gradcam(wide, wide_gradients), DEFINITION),
    ]
    for i, (kind, seed, n, size) in enumerate(_RANDOM):
        model, layer, inputs, target, activations, gradients = _recording(kind, seed, n, size)
        cases.append(Case(f"random CNN #{i + 1}: N={n}, C={activations.shape[1]}, h×w={tuple(activations.shape[2:])}",
                          (activations, gradients), grad_cam(model, layer, inputs, target), DEFINITION))
    return cases


def check_gradcam(student_fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Exercise 2: ``my_gradcam(activations, gradients)`` (each Tensor[N, C, h, w]) → Tensor[N, 1, h, w]."""
    run_cases(student_fn, _map_cases(), "gradcam", atol=1e-6)
