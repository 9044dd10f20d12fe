"""The detector's input and output transform: normalize, optionally resize and pad the images into one batch,
then scale the detected boxes back to the original image sizes (torchvision's ``transform.py``)."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..validation import check_positive_int
from ._utils import _check_sizes

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageBatch", "DetectionTransform", "resize_boxes", "to_torchvision_transform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's defaults for its detectors
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_boxes(boxes: Tensor, original_size: Sequence[int], new_size: Sequence[int]) -> Tensor:
    """Scale xyxy boxes (Tensor[N, 4]) from an image of ``original_size`` (h, w) to ``new_size``."""
    ratio_h, ratio_w = (
        torch.tensor(s, dtype=torch.float32, device=boxes.device)
        / torch.tensor(s_orig, dtype=torch.float32, device=boxes.device)
        for s, s_orig in zip(new_size, original_size)
    )
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=1)


class ImageBatch(NamedTuple):
    """Images padded into one tensor, with the size of each before padding (torchvision's ``ImageList``).

    ``tensors``: Tensor[N, 3, H, W]; ``image_sizes``: list of N ``(h, w)`` (after any resize).
    """

    tensors: Tensor
    image_sizes: list[tuple[int, int]]


class DetectionTransform(nn.Module):
    """Normalize, optionally resize, and batch images; map detections back (``GeneralizedRCNNTransform``).

    1. ``(image - mean) / std`` per channel.
    2. Resize: none by default (``min_size=None``: each image keeps its size). With ``min_size``
       and ``max_size``, torchvision's rule: scale by ``min(min_size / min(h, w), max_size / max(h, w))``
       (bilinear); in training ``min_size`` may be a tuple and one is drawn at random per image.
       Target boxes are scaled with the image. A scale of exactly 1 leaves the pixels unchanged.
    3. Pad (zeros, bottom and right) to the largest height and width of the batch, rounded up to
       a multiple of ``size_divisible``, so that the backbone's strides divide the batch exactly.

    ``postprocess`` scales the predicted boxes from the resized sizes back to the original ones.
    """

    def __init__(
        self,
        min_size: int | Sequence[int] | None = None,
        max_size: int | None = None,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        size_divisible: int = 32,
    ) -> None:
        super().__init__()
        if (min_size is None) != (max_size is None):
            raise ValueError(
                "min_size and max_size go together: give both (torchvision's resize) or neither (no resize)"
            )
        if min_size is not None:
            if isinstance(min_size, Integral) and not isinstance(min_size, bool):
                min_size = (min_size,)
            if not isinstance(min_size, Sequence) or not min_size:
                raise TypeError(f"min_size must be an int or a non-empty tuple of ints, got {min_size!r}")
            min_size = tuple(check_positive_int(s, f"min_size[{i}]") for i, s in enumerate(min_size))
            max_size = check_positive_int(max_size, "max_size")
        self.min_size = min_size
        self.max_size = max_size
        self.image_mean = [float(m) for m in _check_finite_list(image_mean, "image_mean")]
        self.image_std = [float(s) for s in _check_sizes(image_std, "image_std")]
        if len(self.image_mean) != len(self.image_std):
            raise ValueError(
                f"image_mean and image_std must have the same length, got {len(self.image_mean)} and {len(self.image_std)}"
            )
        self.size_divisible = check_positive_int(size_divisible, "size_divisible")

    def normalize(self, image: Tensor) -> Tensor:
        """``(image - mean) / std`` for a Tensor[C, H, W]."""
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor] | None]:
        """Resize a Tensor[C, H, W] and its target's boxes and masks (torchvision's rule); identity without ``min_size``."""
        if self.min_size is None:
            return image, target
        h, w = image.shape[-2:]
        if self.training:  # torchvision's torch_choice: one draw from torch's generator
            size = self.min_size[int(torch.empty(1).uniform_(0.0, float(len(self.min_size))).item())]
        else:
            size = self.min_size[-1]
        scale = min(size / min(h, w), self.max_size / max(h, w))
        image = F.interpolate(
            image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
        )[0]
        if target is None:
            return image, target
        target = dict(target)
        target["boxes"] = resize_boxes(target["boxes"], (h, w), image.shape[-2:])
        if "masks" in target:
            masks = F.interpolate(target["masks"][:, None].float(), scale_factor=scale, recompute_scale_factor=True)
            target["masks"] = masks[:, 0].byte()
        return image, target

    def batch_images(self, images: Sequence[Tensor]) -> Tensor:
        """Zero-pad Tensors[C, H_i, W_i] into one Tensor[N, C, H, W] (H, W multiples of ``size_divisible``)."""
        stride = float(self.size_divisible)
        height = int(math.ceil(max(img.shape[1] for img in images) / stride) * stride)
        width = int(math.ceil(max(img.shape[2] for img in images) / stride) * stride)
        batch = images[0].new_full((len(images), images[0].shape[0], height, width), 0)
        for padded, img in zip(batch, images):
            padded[:, : img.shape[1], : img.shape[2]].copy_(img)
        return batch

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None
    ) -> tuple[ImageBatch, list[dict[str, Tensor]] | None]:
        """Images (Tensors[C, H_i, W_i]) -> ``(ImageBatch, targets with resized boxes)``."""
        out_images, out_targets = [], None if targets is None else []
        for i, image in enumerate(images):
            image, target = self.resize(self.normalize(image), None if targets is None else dict(targets[i]))
            out_images.append(image)
            if out_targets is not None:
                out_targets.append(target)
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in out_images]
        return ImageBatch(self.batch_images(out_images), sizes), out_targets

    def postprocess(
        self,
        detections: list[dict[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Scale each detection's boxes from its image's (resized) size back to its original size."""
        for det, size, original in zip(detections, image_sizes, original_sizes):
            det["boxes"] = resize_boxes(det["boxes"], size, original)
        return detections


def to_torchvision_transform(transform: DetectionTransform) -> nn.Module:
    """torchvision's ``GeneralizedRCNNTransform`` with the settings of ``transform``.

    Without resizing (``min_size=None``) torchvision's ``resize`` step is skipped (at a scale of
    exactly 1 it is the identity anyway). torchvision is imported here, not at the module's import.
    """
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    mean, std = list(transform.image_mean), list(transform.image_std)
    if transform.min_size is not None:
        return GeneralizedRCNNTransform(
            transform.min_size, transform.max_size, mean, std, size_divisible=transform.size_divisible
        )

    class _KeepSizeTransform(GeneralizedRCNNTransform):
        """torchvision's transform without its resize step (the course's ``min_size=None``)."""

        def resize(self, image: Tensor, target: Any = None) -> tuple[Tensor, Any]:
            return image, target

    return _KeepSizeTransform(1, 1, mean, std, size_divisible=transform.size_divisible)


def _check_finite_list(value: object, name: str) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise TypeError(f"{name} must be a non-empty list or tuple of numbers, got {value!r}")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v):
            raise ValueError(f"{name}[{i}] must be a finite number, got {v!r}")
    return tuple(float(v) for v in value)
