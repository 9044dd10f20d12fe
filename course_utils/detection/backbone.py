"""A small convolutional backbone for the course's detectors: one feature map with an ``out_channels`` attribute."""

from __future__ import annotations

from torch import nn

from ..validation import check_positive_int

__all__ = ["SmallBackbone"]


class SmallBackbone(nn.Sequential):
    """Five conv(3x3)-BatchNorm-ReLU blocks, strides 2, 2, 2, 1, 1: [N, 3, H, W] -> [N, width, H/8, W/8].

    Channels ``width/2, width, width, width, width``; receptive field 47 pixels, enough for the
    course's 16-48 pixel objects. ``out_channels`` (= ``width``) is what the detector reads.
    """

    def __init__(self, width: int = 32, in_channels: int = 3) -> None:
        width = check_positive_int(width, "width")
        channels = [check_positive_int(in_channels, "in_channels"), max(width // 2, 1), width, width, width, width]
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip(channels[:-1], channels[1:], (2, 2, 2, 1, 1)):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)
        self.out_channels = width
