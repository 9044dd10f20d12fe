"""Semantic segmentation: a classifier made fully convolutional (FCN), U-Net, and an edge score.

A segmenter maps images ``[N, 3, H, W]`` to logits ``[N, C, H, W]``: one score per class and
pixel, class 0 the background. ``segmentation_loss`` is the pixel-wise cross-entropy.

* ``conv_from_linear`` turns the last linear layer of a classifier into a 1×1 convolution with
  the same weights, so that the classifier scores every position of a feature map;
* ``bilinear_kernel`` is the weight that makes a transposed convolution of stride ``f`` equal
  to bilinear up-sampling by ``f``: the FCN's up-sampling layer starts from it and is trained;
* ``UNet`` is an encoder-decoder whose decoder also sees the encoder's feature maps of the same
  resolution (``skip_connections=False`` removes them, for the ablation);
* ``boundary_iou`` scores only a thin band along the edges of each class (Cheng et al., 2021),
  where skips should help.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .validation import check_positive_int, check_tensor

__all__ = [
    "FCN", "UNet", "bilinear_kernel", "conv_from_linear", "boundary_band", "boundary_iou", "lesion_dice", "segmentation_loss",
    "check_images", "check_label_maps",
]


def check_images(images: object, stride: int, name: str = "images") -> Tensor:
    """Require float images ``[N, 3, H, W]`` whose height and width are multiples of ``stride`` (the
    network's total stride: a smaller image has no pixel left at the coarsest level)."""
    images = check_tensor(images, name, ndim=4, floating=True)
    if images.shape[1] != 3:
        raise ValueError(f"{name} must have 3 channels [N, 3, H, W], got shape {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if height < stride or width < stride or height % stride or width % stride:
        raise ValueError(
            f"{name} must have a height and width that are multiples of the network's total stride {stride}"
            f" (and at least {stride}), got {height}×{width}"
        )
    return images


def check_label_maps(target: object, logits: Tensor, name: str = "target") -> Tensor:
    """Require an int64 label map ``[N, H, W]`` that matches logits ``[N, C, H, W]``."""
    target = check_tensor(target, name, ndim=3)
    if target.dtype != torch.int64:
        raise TypeError(f"{name} must be an int64 label map [N, H, W], got {target.dtype}")
    if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"{name} of shape {tuple(target.shape)} does not match logits of shape {tuple(logits.shape)}"
            " (logits [N, C, H, W] need a target [N, H, W])"
        )
    return target


def _check_num_classes(num_classes: object) -> int:
    num_classes = check_positive_int(num_classes, "num_classes")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2 (the background and one class), got {num_classes}")
    return num_classes


def segmentation_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Mean pixel-wise cross-entropy of logits ``[N, C, H, W]`` against class indices ``[N, H, W]``."""
    logits = check_tensor(logits, "logits", ndim=4, floating=True)
    target = check_label_maps(target, logits)
    return F.cross_entropy(logits, target)


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> Tensor:
    """Weight ``[in_channels, out_channels, k, k]`` of a transposed convolution that up-samples bilinearly.

    Channel ``c`` is mapped to channel ``c`` (the others get zero) by the tent filter
    ``(1 - |x - centre| / f) (1 - |y - centre| / f)`` with ``f = ceil(k / 2)``. With ``k = 2s``,
    stride ``s`` and padding ``s / 2`` (``s`` even), the layer equals
    ``F.interpolate(scale_factor=s, mode="bilinear", align_corners=False)`` away from the border
    (at the border the transposed convolution sees zeros where interpolation repeats the edge).
    """
    in_channels = check_positive_int(in_channels, "in_channels")
    out_channels = check_positive_int(out_channels, "out_channels")
    kernel_size = check_positive_int(kernel_size, "kernel_size")
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    position = torch.arange(kernel_size, dtype=torch.float32)
    tent = 1 - (position - centre).abs() / factor
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    for c in range(min(in_channels, out_channels)):
        weight[c, c] = tent[:, None] * tent[None, :]
    return weight


def conv_from_linear(linear: nn.Linear) -> nn.Conv2d:
    """The 1×1 convolution that applies ``linear`` at every position of a feature map.

    Its weight is the linear weight ``[K, C]`` reshaped to ``[K, C, 1, 1]`` (a copy, same bias),
    so that for features ``[N, C, h, w]`` the output ``[N, K, h, w]`` at each position is
    ``linear`` of that position's feature vector; averaged over the positions it gives
    ``linear`` of the averaged features, which is what a GAP + FC classifier outputs.
    """
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1, bias=linear.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.reshape(linear.out_features, linear.in_features, 1, 1))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv.to(linear.weight.device)


def _conv_block(c_in: int, c_out: int, dilation: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, bias=False)
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(*_conv_block(c_in, c_out), *_conv_block(c_out, c_out))


class FCN(nn.Module):
    """Fully convolutional network: conv features at stride 8, a 1×1 conv classifier, a bilinear up-sampler.

    ``features``: ``[N, 3, H, W] -> [N, 4·width, H/8, W/8]`` (three conv + max-pool blocks, as the
    zoo's ``SmallCNN``, then a conv dilated by 2 that widens the receptive field to 70 px, larger
    than the 48-px objects); ``classifier``: 1×1 conv to ``num_classes`` coarse score maps;
    ``upsample``: transposed convolution (kernel 16, stride 8, padding 4, one filter per class)
    initialized by ``bilinear_kernel`` and trained with the rest. Output logits ``[N, C, H, W]``;
    ``H`` and ``W`` must be multiples of 8.
    """

    stride = 8

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.num_classes = num_classes = _check_num_classes(num_classes)
        width = check_positive_int(width, "width")
        self.features = nn.Sequential(
            *_conv_block(3, width), nn.MaxPool2d(2),
            *_conv_block(width, 2 * width), nn.MaxPool2d(2),
            *_conv_block(2 * width, 4 * width), nn.MaxPool2d(2),
            *_conv_block(4 * width, 4 * width), *_conv_block(4 * width, 4 * width, dilation=2),
        )
        self.classifier = nn.Conv2d(4 * width, num_classes, 1)
        self.upsample = nn.ConvTranspose2d(
            num_classes, num_classes, 2 * self.stride, self.stride, padding=self.stride // 2, bias=False
        )
        with torch.no_grad():
            self.upsample.weight.copy_(bilinear_kernel(num_classes, num_classes, 2 * self.stride))

    @classmethod
    def from_classifier(cls, features: nn.Module, fc: nn.Linear) -> FCN:
        """An FCN whose features are a GAP + FC classifier's (shared, not copied) and whose 1×1 classifier
        is ``conv_from_linear(fc)``: it scores every position with the classifier's own weights.
        ``features`` must have stride 8 (as ``SmallCNN.features``)."""
        if not isinstance(features, nn.Module):
            raise TypeError(f"features must be an nn.Module, got {type(features).__name__}")
        classifier = conv_from_linear(fc)
        fcn = cls(num_classes=fc.out_features, width=1)
        fcn.features, fcn.classifier = features, classifier
        return fcn

    def score_map(self, images: Tensor) -> Tensor:
        """Coarse class scores ``[N, C, H/8, W/8]`` (before up-sampling)."""
        return self.classifier(self.features(check_images(images, self.stride)))

    def forward(self, images: Tensor) -> Tensor:
        return self.upsample(self.score_map(images))


class UNet(nn.Module):
    """U-Net: ``levels`` resolutions with ``base_channels · 2^i`` channels, two 3×3 convs per level.

    The encoder halves the resolution ``levels - 1`` times (total stride ``2^(levels-1)``); the
    decoder doubles it back with 2×2 transposed convolutions and, with ``skip_connections``,
    concatenates the encoder's map of the same resolution before its two convs, so that the fine
    detail lost by pooling comes back. Logits ``[N, num_classes, H, W]``.
    """

    def __init__(
        self, num_classes: int, base_channels: int = 8, levels: int = 3, skip_connections: bool = True, in_channels: int = 3
    ) -> None:
        super().__init__()
        self.num_classes = num_classes = _check_num_classes(num_classes)
        base_channels = check_positive_int(base_channels, "base_channels")
        levels = check_positive_int(levels, "levels")
        if levels < 2:
            raise ValueError(f"levels must be at least 2 (one down- and one up-sampling), got {levels}")
        if not isinstance(skip_connections, bool):
            raise TypeError(f"skip_connections must be a bool, got {type(skip_connections).__name__}")
        self.skip_connections = skip_connections
        self.stride = 2 ** (levels - 1)
        widths = [base_channels * 2**i for i in range(levels)]
        self.down = nn.ModuleList(
            [_double_conv(check_positive_int(in_channels, "in_channels"), widths[0])]
            + [_double_conv(widths[i - 1], widths[i]) for i in range(1, levels)]
        )
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2) for i in range(levels - 1, 0, -1)])
        self.decode = nn.ModuleList(
            [_double_conv(widths[i - 1] * (2 if skip_connections else 1), widths[i - 1]) for i in range(levels - 1, 0, -1)]
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, images: Tensor) -> Tensor:
        x = check_images(images, self.stride)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, decode, skip in zip(self.up, self.decode, reversed(skips[:-1])):
            x = up(x)
            x = decode(torch.cat([skip, x], dim=1) if self.skip_connections else x)
        return self.head(x)


def _check_mask_pair(pred: object, target: object) -> tuple[Tensor, Tensor]:
    pred, target = check_tensor(pred, "pred"), check_tensor(target, "target")
    for name, value in (("pred", pred), ("target", target)):
        if value.is_floating_point() or value.is_complex():
            raise TypeError(f"{name} must be an integer or bool label map, got {value.dtype}")
        if value.ndim not in (2, 3):
            raise ValueError(f"{name} must be a label map [H, W] or [N, H, W], got shape {tuple(value.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    return pred, target


def boundary_band(mask: Tensor, width: int = 2) -> Tensor:
    """The pixels of a binary mask ``[H, W]`` or ``[N, H, W]`` within ``width`` pixels (chessboard
    distance) of its edge: ``mask`` minus its erosion by a ``(2·width + 1)``-square. The image
    border is not an edge (the erosion repeats the border pixels). Returns a bool tensor."""
    width = check_positive_int(width, "width")
    mask = check_tensor(mask, "mask")
    if mask.ndim not in (2, 3):
        raise ValueError(f"mask must be [H, W] or [N, H, W], got shape {tuple(mask.shape)}")
    m = mask.bool().reshape(-1, 1, *mask.shape[-2:]).float()
    padded = F.pad(m, (width,) * 4, mode="replicate")
    eroded = -F.max_pool2d(-padded, 2 * width + 1, stride=1)
    return (m.bool() & ~eroded.bool()).reshape(mask.shape)


def boundary_iou(pred: Tensor, target: Tensor, num_classes: int, width: int = 2) -> dict[str, float | Tensor]:
    """Boundary IoU: the IoU of the classes' edge bands, ``|B(P_c) ∩ B(G_c)| / |B(P_c) ∪ B(G_c)|``.

    ``B`` is ``boundary_band`` of width ``width``, ``P_c`` / ``G_c`` the pixels predicted / labelled
    ``c``; intersections and unions are summed over the images of a batch ``[N, H, W]`` before
    dividing. Interiors do not count, so a blurry but well-placed mask scores low.

    Returns:
        dict: ``iou`` (float64 Tensor[C], 0 for a class without band pixels) and ``mean_iou``, the
        mean over the foreground classes (1..C-1) that have band pixels in ``pred`` or ``target``
        (0.0 if none).
    """
    pred, target = _check_mask_pair(pred, target)
    num_classes = _check_num_classes(num_classes)
    inter = torch.zeros(num_classes, dtype=torch.float64)
    union = torch.zeros(num_classes, dtype=torch.float64)
    for c in range(num_classes):
        band_p, band_t = boundary_band(pred == c, width), boundary_band(target == c, width)
        inter[c] = float((band_p & band_t).sum())
        union[c] = float((band_p | band_t).sum())
    present = union > 0
    iou = inter / torch.where(present, union, 1.0)
    foreground = present.clone()
    foreground[0] = False
    return {"iou": iou, "mean_iou": float(iou[foreground].mean()) if bool(foreground.any()) else 0.0}


def lesion_dice(pred: Tensor, lesions: Tensor, margin: int = 3) -> Tensor:
    """Dice of each lesion on its own: float64 ``[K]``.

    Lesion ``k`` (mask ``L_k`` in ``lesions [K, H, W]``) is scored in its neighbourhood ``R_k``:
    ``L_k`` grown by ``margin`` pixels, less the other lesions, so that a miss next to it counts
    against it and a hit on another lesion does not: ``2 |P ∩ L_k| / (|P ∩ R_k| + |L_k|)`` for the
    predicted mask ``P`` (bool ``[H, W]``).
    """
    pred = check_tensor(pred, "pred", ndim=2).bool()
    lesions = check_tensor(lesions, "lesions", ndim=3).bool()
    if lesions.shape[1:] != pred.shape:
        raise ValueError(f"lesions [K, H, W] must match pred [H, W], got {tuple(lesions.shape)} and {tuple(pred.shape)}")
    margin = check_positive_int(margin, "margin", allow_zero=True)
    grown = F.max_pool2d(lesions[:, None].float(), 2 * margin + 1, stride=1, padding=margin)[:, 0].bool()
    others = lesions.sum(0, keepdim=True) - lesions.int() > 0
    region = grown & ~others
    hits = (pred & lesions).flatten(1).sum(1).double()
    return 2 * hits / ((pred & region).flatten(1).sum(1) + lesions.flatten(1).sum(1)).double()
