"""course_utils.segmentation: the bilinear transposed convolution against F.interpolate, the conv-ified
classifier against the classifier, FCN / U-Net shapes and errors, the boundary band against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from torch import nn
from torch.nn import functional as F

from course_utils.metrics import confusion_matrix, segmentation_evaluate, segmentation_scores
from course_utils.segmentation import (
    FCN, UNet, bilinear_kernel, boundary_band, boundary_iou, conv_from_linear, lesion_dice, segmentation_loss,
)
from course_utils.zoo import SmallCNN


def bilinear_upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, channels, 2 * factor))
    return up


@pytest.mark.parametrize("factor", [2, 4, 8])
@pytest.mark.parametrize("seed", range(4))
def test_bilinear_transposed_conv_equals_interpolate_away_from_the_border(factor, seed):
    g = torch.Generator().manual_seed(seed)
    channels, h, w = 1 + seed, 3 + seed, 5 + 2 * seed
    x = torch.randn(2, channels, h, w, generator=g)
    with torch.no_grad():
        out = bilinear_upsampler(channels, factor)(x)
    expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert out.shape == expected.shape == (2, channels, h * factor, w * factor)
    inner = (..., slice(factor, -factor), slice(factor, -factor))
    torch.testing.assert_close(out[inner], expected[inner], atol=1e-5, rtol=1e-5)
    # at the border the transposed conv sees zeros: on a constant image its edge is darker
    with torch.no_grad():
        ones = bilinear_upsampler(1, factor)(torch.ones(1, 1, h, w))
    assert ones[0, 0, 0, 0] < 0.9 and torch.allclose(ones[inner], torch.ones_like(ones[inner]))


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_bilinear_transposed_conv_equals_interpolate_everywhere_on_an_edge_padded_input(factor):
    # interpolation repeats the edge pixel: give the transposed conv that edge and crop it away again
    x = torch.randn(1, 3, 6, 4, generator=torch.Generator().manual_seed(factor))
    with torch.no_grad():
        out = bilinear_upsampler(3, factor)(F.pad(x, (1, 1, 1, 1), mode="replicate"))[..., factor:-factor, factor:-factor]
    torch.testing.assert_close(out, F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False), atol=1e-5, rtol=1e-5)


def test_bilinear_kernel_values():
    k = bilinear_kernel(2, 3, 4)
    assert k.shape == (2, 3, 4, 4)
    tent = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(k[1, 1], tent[:, None] * tent[None, :])
    assert k[0, 1].abs().sum() == 0 and k[1, 2].abs().sum() == 0  # channel c only feeds channel c
    odd = bilinear_kernel(1, 1, 3)[0, 0]
    torch.testing.assert_close(odd, torch.tensor([0.5, 1.0, 0.5])[:, None] * torch.tensor([0.5, 1.0, 0.5])[None, :])
    for bad in (0, -1):
        with pytest.raises(ValueError, match="kernel_size"):
            bilinear_kernel(1, 1, bad)
    with pytest.raises(TypeError, match="in_channels"):
        bilinear_kernel(1.5, 1, 4)


@pytest.mark.parametrize("seed", range(5))
def test_conv_from_linear_scores_every_position_like_the_linear_layer(seed):
    g = torch.Generator().manual_seed(seed)
    linear = nn.Linear(6 + seed, 3 + seed, bias=seed % 2 == 0)
    features = torch.randn(2, linear.in_features, 4 + seed, 3, generator=g)
    with torch.no_grad():
        out = conv_from_linear(linear)(features)
        expected = linear(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="linear"):
        conv_from_linear(nn.Conv2d(3, 3, 1))


@pytest.mark.parametrize("size", [8, 64, 96])
def test_conv_ified_classifier_gives_the_classifier_scores(size):
    torch.manual_seed(size)
    cnn = SmallCNN(5).eval()
    fcn = FCN.from_classifier(cnn.features, cnn.fc).eval()
    x = torch.rand(3, 3, size, size)
    with torch.no_grad():
        scores = fcn.score_map(x)
        logits = cnn(x)
    assert scores.shape == (3, 5, size // 8, size // 8)
    # GAP and a linear layer commute: the mean of the score map is the classifier's output
    torch.testing.assert_close(scores.mean((2, 3)), logits, atol=1e-4, rtol=1e-4)
    if size == 8:  # one position: the score at the centre is the classifier's, exactly
        torch.testing.assert_close(scores[..., 0, 0], logits, atol=1e-5, rtol=1e-5)
    assert fcn(x).shape == (3, 5, size, size)


def test_fcn_at_init_upsamples_its_score_map_bilinearly():
    torch.manual_seed(0)
    fcn = FCN(4, width=4).eval()
    x = torch.rand(2, 3, 64, 48)
    with torch.no_grad():
        logits, coarse = fcn(x), fcn.score_map(x)
    assert logits.shape == (2, 4, 64, 48) and coarse.shape == (2, 4, 8, 6)
    expected = F.interpolate(coarse, scale_factor=8, mode="bilinear", align_corners=False)
    torch.testing.assert_close(logits[..., 8:-8, 8:-8], expected[..., 8:-8, 8:-8], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("levels, size", [(2, 6), (3, 16), (3, 40), (4, 64)])
@pytest.mark.parametrize("skips", [True, False])
def test_unet_maps_images_to_logits_of_the_same_size(levels, size, skips):
    torch.manual_seed(0)
    net = UNet(3, base_channels=4, levels=levels, skip_connections=skips)
    assert net.stride == 2 ** (levels - 1)
    out = net(torch.rand(2, 3, size, 2 * size))
    assert out.shape == (2, 3, size, 2 * size)
    out.sum().backward()  # every parameter takes part
    assert all(p.grad is not None for p in net.parameters())


def test_unet_without_skips_is_the_same_network_less_the_skip_channels():
    with_skips, without = UNet(6), UNet(6, skip_connections=False)
    assert [type(m) for m in with_skips.modules()] == [type(m) for m in without.modules()]
    first_decoder_conv = lambda net: net.decode[0][0]  # noqa: E731
    assert first_decoder_conv(with_skips).in_channels == 2 * first_decoder_conv(without).in_channels
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    with_skips(x)[0, 1, 5, 5].backward()
    assert x.grad[0, :, 5, 5].abs().sum() > 0  # a pixel's own input reaches its output through the first skip


@pytest.mark.parametrize("net", [FCN(3, width=4), UNet(3, levels=3)], ids=["fcn", "unet"])
def test_segmenters_reject_bad_images(net):
    stride = net.stride
    with pytest.raises(ValueError, match=f"total stride {stride}"):
        net(torch.rand(1, 3, stride // 2, stride // 2))  # smaller than the total stride
    with pytest.raises(ValueError, match="multiples"):
        net(torch.rand(1, 3, 3 * stride + 1, 2 * stride))
    with pytest.raises(ValueError, match="3 channels"):
        net(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="4 dimensions"):
        net(torch.rand(3, 16, 16))
    with pytest.raises(TypeError, match="floating"):
        net(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


def test_segmenters_reject_bad_settings():
    for build in (FCN, UNet):
        with pytest.raises(ValueError, match="num_classes must be at least 2"):
            build(1)
        with pytest.raises(ValueError, match="num_classes"):
            build(0)
    with pytest.raises(TypeError, match="skip_connections"):
        UNet(3, skip_connections="no")
    with pytest.raises(ValueError, match="levels"):
        UNet(3, levels=1)


def test_segmentation_loss_is_cross_entropy_and_checks_its_target():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 8, 8))
    torch.testing.assert_close(segmentation_loss(logits, target), F.cross_entropy(logits, target))
    with pytest.raises(ValueError, match="does not match logits"):
        segmentation_loss(logits, target[:, :4])
    with pytest.raises(ValueError, match="does not match logits"):
        segmentation_loss(logits, target[:1])
    with pytest.raises(TypeError, match="int64"):
        segmentation_loss(logits, target.float())
    with pytest.raises(TypeError, match="int64"):
        segmentation_loss(logits, target.to(torch.uint8))
    with pytest.raises(ValueError, match="target must have 3 dimensions"):
        segmentation_loss(logits, target[0])


def scipy_band(mask: np.ndarray, width: int) -> np.ndarray:
    eroded = ndimage.binary_erosion(mask, structure=np.ones((3, 3), bool), iterations=width, border_value=1)
    return mask & ~eroded


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 20), st.integers(1, 20))), st.integers(1, 4))
def test_boundary_band_equals_scipy_erosion(mask, width):
    band = boundary_band(torch.from_numpy(mask), width)
    assert band.dtype == torch.bool
    assert np.array_equal(band.numpy(), scipy_band(mask, width))


def test_boundary_band_of_a_square():
    mask = torch.zeros(12, 12, dtype=torch.bool)
    mask[2:10, 2:10] = True
    band = boundary_band(mask, 2)
    assert int(band.sum()) == 64 - 16  # an 8×8 square minus its 4×4 interior
    full = boundary_band(torch.ones(5, 5, dtype=torch.bool), 1)
    assert not full.any()  # the image border is not an edge
    batch = torch.stack([mask, ~mask])
    assert torch.equal(boundary_band(batch, 2)[0], band)
    with pytest.raises(ValueError, match="mask must be"):
        boundary_band(torch.ones(5), 1)
    with pytest.raises(ValueError, match="width"):
        boundary_band(mask, 0)


def reference_boundary_iou(pred: np.ndarray, target: np.ndarray, num_classes: int, width: int) -> float:
    ious = []
    for c in range(1, num_classes):
        bp = np.stack([scipy_band(p == c, width) for p in pred])
        bt = np.stack([scipy_band(t == c, width) for t in target])
        union = (bp | bt).sum()
        if union:
            ious.append((bp & bt).sum() / union)
    return float(np.mean(ious)) if ious else 0.0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("width", [1, 3])
def test_boundary_iou_equals_a_scipy_reference(seed, width):
    rng = np.random.default_rng(seed)
    num_classes = 2 + seed % 3
    coarse = rng.integers(0, num_classes, size=(2, 6, 6))
    target = np.kron(coarse, np.ones((4, 4), dtype=np.int64))  # blobs, so that the bands are thin
    pred = np.where(rng.random(target.shape) < 0.1, rng.integers(0, num_classes, size=target.shape), np.roll(target, seed % 3, axis=2))
    result = boundary_iou(torch.from_numpy(pred), torch.from_numpy(target), num_classes, width)
    assert result["mean_iou"] == pytest.approx(reference_boundary_iou(pred, target, num_classes, width), abs=1e-12)
    assert result["iou"].shape == (num_classes,)


def test_boundary_iou_scores_edges_not_interiors():
    target = torch.zeros(1, 64, 64, dtype=torch.int64)
    target[0, 8:56, 8:56] = 1
    assert boundary_iou(target, target, 2)["mean_iou"] == 1.0
    shifted = torch.roll(target, 2, dims=2)
    region_iou = segmentation_scores(confusion_matrix(shifted, target, 2))["iou"][1]
    edge_iou = boundary_iou(shifted, target, 2)["mean_iou"]
    assert region_iou > 0.9 and edge_iou < 0.4  # a 2-pixel shift barely changes the IoU, it ruins the edges
    assert boundary_iou(torch.zeros_like(target), torch.zeros_like(target), 2)["mean_iou"] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        boundary_iou(target, target[:, :32], 2)
    with pytest.raises(TypeError, match="pred must be an integer"):
        boundary_iou(target.float(), target, 2)
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        boundary_iou(target, target, 1)


@settings(max_examples=30, deadline=None)
@given(arrays(np.int64, (2, 10, 10), elements=st.integers(0, 2)), arrays(np.int64, (2, 10, 10), elements=st.integers(0, 2)))
def test_boundary_iou_is_symmetric_and_in_unit_interval(a, b):
    ab = boundary_iou(torch.from_numpy(a), torch.from_numpy(b), 3)["mean_iou"]
    ba = boundary_iou(torch.from_numpy(b), torch.from_numpy(a), 3)["mean_iou"]
    assert ab == pytest.approx(ba) and 0.0 <= ab <= 1.0


class ConstantSegmenter(nn.Module):
    def __init__(self, num_classes: int, label: int) -> None:
        super().__init__()
        self.num_classes, self.label = num_classes, label
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logits = torch.zeros(x.shape[0], self.num_classes, *x.shape[2:])
        logits[:, self.label] = 1.0
        return logits


def test_segmentation_evaluate_equals_the_scores_of_its_confusion_matrix():
    torch.manual_seed(0)
    images, masks = torch.rand(7, 3, 16, 16), torch.randint(0, 3, (7, 16, 16))
    data = torch.utils.data.TensorDataset(images, masks)
    net = UNet(3, base_channels=4)
    scores = segmentation_evaluate(net, data, 3, batch_size=3)
    with torch.no_grad():
        pred = net.eval()(images).argmax(1)
    expected = segmentation_scores(confusion_matrix(pred, masks, 3))
    assert torch.equal(scores["confmat"], confusion_matrix(pred, masks, 3))
    for key in ("pixel_accuracy", "mean_iou", "mean_dice"):
        assert scores[key] == pytest.approx(expected[key])
    assert scores["boundary_iou"] == pytest.approx(boundary_iou(pred, masks, 3)["mean_iou"])
    # the all-background predictor: pixel accuracy = background fraction, IoU 0 on every other class
    background = segmentation_evaluate(ConstantSegmenter(3, 0), data, 3)
    assert background["pixel_accuracy"] == pytest.approx(float((masks == 0).float().mean()))
    assert background["iou"][1:].sum() == 0


def test_lesion_dice_scores_each_lesion_in_its_neighbourhood():
    lesions = torch.zeros(2, 20, 20, dtype=torch.uint8)
    lesions[0, 2:6, 2:6] = 1  # 16 px
    lesions[1, 10:18, 10:18] = 1  # 64 px
    truth = lesions.bool().any(0)
    assert lesion_dice(truth, lesions).tolist() == [1.0, 1.0]
    only_big = lesions[1].bool()
    assert lesion_dice(only_big, lesions).tolist() == [0.0, 1.0]  # the small one missed, the big one untouched
    grown = truth.clone()
    grown[6, 2:6] = True  # 4 false-alarm pixels next to the small lesion
    grown[0, 19] = True  # a false alarm far from every lesion counts for none
    assert lesion_dice(grown, lesions).tolist() == pytest.approx([2 * 16 / (20 + 16), 1.0])
    assert lesion_dice(truth, lesions[:0]).shape == (0,)
    with pytest.raises(ValueError, match="must match pred"):
        lesion_dice(truth[:10], lesions)
