"""Class activation maps: CAM, Grad-CAM, Grad-CAM++, and resizing a map to the image.

Every map is ``Tensor[N, 1, h, w]`` at the resolution of the explained layer; use
:func:`upsample_heatmap` to bring it to the image size. The functions never change
``model.training``, never leave a hook behind and never touch a ``.grad`` attribute.

- Grad-CAM (Selvaraju et al. 2017): channel weights = spatial mean of the gradient of the
  target logit at the layer; map = ReLU(sum_c w_c A_c). Equals captum
  ``LayerGradCam(model, layer).attribute(inputs, target, relu_attributions=True)``.
- Grad-CAM++ (Chattopadhyay et al. 2018) as in pytorch-grad-cam: gradients of the raw logit
  (not of its exponential), ``alpha = g² / (2 g² + sum_ij(A) g³ + 1e-6)``.
- HiResCAM (Draelos & Carin 2020) as in pytorch-grad-cam: map = ReLU(sum_c g_c ⊙ A_c), the
  gradient multiplied position by position instead of averaged, so it keeps *where* the score's
  gradient comes from (Grad-CAM is the same sum with g_c replaced by its spatial mean).
- CAM (Zhou et al. 2016) for ``features -> global average pooling -> fc_layer`` nets:
  map = sum_c W[target, c] A_c. There ``d logit / d A_c(i, j) = W[target, c] / (h w)``, so
  Grad-CAM = CAM / (h w) before the ReLU: CAM is the special case that Grad-CAM generalises.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..validation import check_positive_int, check_tensor
from .layers import layer_name, record_layer, resolve_layer
from .targets import check_target, select_target

__all__ = ["cam", "grad_cam", "grad_cam_plus_plus", "hires_cam", "upsample_heatmap"]

# pytorch-grad-cam's constants: Grad-CAM++'s denominator and the min-max normalisation.
_ALPHA_EPS = 1e-6
_MIN_MAX_EPS = 1e-7


def _check_feature_map(output: Tensor | None, model: nn.Module, layer: nn.Module | str) -> Tensor:
    """Require the recorded layer output to exist and be ``N x C x h x w``."""
    name = layer_name(model, layer)
    if output is None:
        raise ValueError(f"layer {name!r} was not called during the forward pass")
    if output.ndim != 4:
        raise ValueError(f"layer {name!r} must output an N x C x h x w feature map, got shape {tuple(output.shape)}")
    return output


def _activations_and_gradients(
    model: nn.Module, layer: nn.Module | str, inputs: Tensor, target: int | Tensor
) -> tuple[Tensor, Tensor]:
    """Activations ``A`` of ``layer`` and gradients ``dy_target / dA``, both ``[N, C, h, w]``."""
    inputs = check_tensor(inputs, "inputs", ndim=4, floating=True)
    with torch.enable_grad(), record_layer(model, layer, requires_grad=True) as recording:
        scores = select_target(model(inputs), target)
    activations = _check_feature_map(recording.output, model, layer)
    return activations.detach(), recording.gradient(scores)


def grad_cam(model: nn.Module, layer: nn.Module | str, inputs: Tensor, target: int | Tensor) -> Tensor:
    """Grad-CAM of ``target`` at ``layer``.

    Args:
        model (nn.Module): a classifier returning ``[N, K]`` logits (run in its current mode).
        layer (nn.Module or str): a layer of ``model`` whose output is ``[N, C, h, w]``.
        inputs (Tensor[N, C_in, H, W]): a batch of images.
        target (int or Tensor[N]): the class to explain, one for all or one per image.

    Returns:
        Tensor[N, 1, h, w]: ``ReLU(sum_c mean_ij(dy/dA_c) A_c)``.
    """
    activations, gradients = _activations_and_gradients(model, layer, inputs, target)
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activations).sum(dim=1, keepdim=True))


def grad_cam_plus_plus(model: nn.Module, layer: nn.Module | str, inputs: Tensor, target: int | Tensor) -> Tensor:
    """Grad-CAM++ of ``target`` at ``layer`` (same arguments and shape as :func:`grad_cam`).

    Channel weight ``w_c = sum_ij ReLU(g_ij) alpha_ij`` with
    ``alpha = g² / (2 g² + sum_ij(A_c) g³ + 1e-6)``, ``g`` the gradient of the logit.
    """
    activations, gradients = _activations_and_gradients(model, layer, inputs, target)
    g2 = gradients**2
    activation_sums = activations.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + activation_sums * g2 * gradients + _ALPHA_EPS)
    weights = (torch.relu(gradients) * alpha).sum(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activations).sum(dim=1, keepdim=True))


def hires_cam(model: nn.Module, layer: nn.Module | str, inputs: Tensor, target: int | Tensor) -> Tensor:
    """HiResCAM of ``target`` at ``layer`` (same arguments and shape as :func:`grad_cam`).

    Returns:
        Tensor[N, 1, h, w]: ``ReLU(sum_c dy/dA_c ⊙ A_c)``, the element-wise product summed over channels.
    """
    activations, gradients = _activations_and_gradients(model, layer, inputs, target)
    return torch.relu((gradients * activations).sum(dim=1, keepdim=True))


def cam(
    model: nn.Module,
    feature_layer: nn.Module | str,
    fc_layer: nn.Module | str,
    inputs: Tensor,
    target: int | Tensor,
    *,
    relu: bool = False,
) -> Tensor:
    """Class activation map of a ``features -> global average pool -> fc_layer`` network.

    Args:
        model (nn.Module): the classifier; ``fc_layer`` must read the spatial mean of
            ``feature_layer``'s output (the fc bias is not part of the map).
        feature_layer (nn.Module or str): the layer whose ``[N, C, h, w]`` output is pooled.
        fc_layer (nn.Module or str): the final ``nn.Linear(C, K)``.
        inputs (Tensor[N, C_in, H, W]): a batch of images.
        target (int or Tensor[N]): the class to explain.
        relu (bool): clip negative evidence to 0 (off by default: the raw map of Zhou et al.,
            whose spatial mean plus the bias is the logit).

    Returns:
        Tensor[N, 1, h, w]: ``sum_c W[target, c] A_c``.
    """
    inputs = check_tensor(inputs, "inputs", ndim=4, floating=True)
    fc = resolve_layer(model, fc_layer)
    if not isinstance(fc, nn.Linear):
        raise TypeError(f"fc_layer must be an nn.Linear, got {type(fc).__name__}")
    with torch.no_grad(), record_layer(model, feature_layer) as recording:
        select_target(model(inputs), target)  # checks target against the model's output
    features = _check_feature_map(recording.output, model, feature_layer)
    if features.shape[1] != fc.in_features:
        raise ValueError(
            f"feature_layer has {features.shape[1]} channels but fc_layer expects {fc.in_features} inputs"
        )
    class_weights = fc.weight.detach()[check_target(target, len(inputs)).to(fc.weight.device)]  # [N, C]
    maps = torch.einsum("nc,nchw->nhw", class_weights, features).unsqueeze(1)
    return torch.relu(maps) if relu else maps


def _min_max(heatmap: Tensor) -> Tensor:
    """Per-image ``(x - min) / (max - min + 1e-7)`` of ``[N, 1, h, w]`` (pytorch-grad-cam's)."""
    shifted = heatmap - heatmap.amin(dim=(2, 3), keepdim=True)
    return shifted / (shifted.amax(dim=(2, 3), keepdim=True) + _MIN_MAX_EPS)


def upsample_heatmap(heatmap: Tensor, size: Sequence[int], normalize: bool = False) -> Tensor:
    """Bilinear resize (``align_corners=False``) of ``[N, 1, h, w]`` maps to ``size = (H, W)``.

    With ``normalize=True`` each map is min-max scaled to [0, 1) before and after the resize,
    as pytorch-grad-cam does: ``upsample_heatmap(grad_cam(...), (H, W), normalize=True)``
    equals ``GradCAM(model, [layer])(inputs, [ClassifierOutputTarget(c), ...])``.

    Returns:
        Tensor[N, 1, H, W].
    """
    heatmap = check_tensor(heatmap, "heatmap", ndim=4, floating=True)
    if heatmap.shape[1] != 1:
        raise ValueError(f"heatmap must have shape [N, 1, h, w], got {tuple(heatmap.shape)}")
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
        raise TypeError(f"size must be a pair (H, W), got {size!r}")
    size = (check_positive_int(size[0], "size[0]"), check_positive_int(size[1], "size[1]"))
    if normalize:
        heatmap = _min_max(heatmap)
    resized = F.interpolate(heatmap, size=size, mode="bilinear", align_corners=False)
    return _min_max(resized) if normalize else resized
