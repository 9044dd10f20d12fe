"""A small convolutional backbone for the course's detectors: one feature map with an ``out_channels`` attribute."""

from __future__ import annotations

from torch import nn

from ..validation import check_positive_int

__all__ = ["SmallBackbone"]


class SmallBackbone(nn.Sequential):
    """Five conv(3x3)-BatchNorm-ReLU blocks, strides 2, 2, 2, 1, 1: [N, 3, H, W] -> [N, width, H/8, W/8].

    Channels ``width/2, width, width, width, width``; receptive field 47 pixels, enough for the
    course's 16-48 pixel objects. ``out_channels`` (= ``width``) is what the detector reads.
    Each of ``extra_blocks`` more blocks halves the resolution and doubles the channels:
    [N, width · 2^e, H / (8 · 2^e), W / (8 · 2^e)] (YOLO's 8×8 grid on 128 px images uses e = 1).
    """

    def __init__(self, width: int = 32, in_channels: int = 3, extra_blocks: int = 0) -> None:
        width = check_positive_int(width, "width")
        extra = check_positive_int(extra_blocks, "extra_blocks", allow_zero=True)
        channels = [check_positive_int(in_channels, "in_channels"), max(width // 2, 1), width, width, width, width]
        channels += [width * 2**i for i in range(1, extra + 1)]
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip(channels[:-1], channels[1:], (2, 2, 2, 1, 1) + (2,) * extra):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)
        self.out_channels = channels[-1]
