"""course_utils.detection.ops against torchvision.ops and torch.nn.functional, plus properties.

Tolerances: roi_align forward and input-gradient to 1e-5 absolute in float32 and 1e-12 in
float64 (feature values are O(1); the only difference from torchvision's kernel is the order
of the float additions and where the 1 / count of the mean is applied). roi_pool,
sigmoid_focal_loss and smooth_l1_loss are bit-identical (torch.equal), and so is roi_pool's
gradient when the output gradient is all ones.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tv
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils import detection as cd

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: extra threads only wait
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

ATOL = {torch.float32: 1e-5, torch.float64: 1e-12}
SAMPLING_RATIOS = [-1, 0, 1, 2, 3]


def features(n: int, c: int, h: int, w: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def random_rois(k: int, batch: int, seed: int, *, low: float, high: float, max_size: float,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Tensor[k, 5]: a batch index, then xyxy boxes with top-left in [low, high) and sizes in [0, max_size)."""
    g = torch.Generator().manual_seed(seed)
    top_left = low + torch.rand(k, 2, generator=g, dtype=torch.float64) * (high - low)
    size = torch.rand(k, 2, generator=g, dtype=torch.float64) * max_size
    index = torch.randint(0, batch, (k, 1), generator=g).double()
    return torch.cat([index, top_left, top_left + size], dim=1).to(dtype)


# Hand-built RoIs in the coordinates of an 8 x 10 (H x W) map, batch index first.
EDGE_ROIS = torch.tensor(
    [
        [0, 0.0, 0.0, 9.0, 7.0],  # the whole map
        [1, -5.0, -5.0, 3.0, 3.0],  # past the top-left border
        [0, 6.0, 5.0, 14.0, 12.0],  # past the bottom-right border
        [1, -20.0, -20.0, -10.0, -10.0],  # entirely outside (above and left)
        [0, 12.0, 9.5, 30.0, 20.0],  # entirely outside (below and right)
        [1, -1.5, -1.5, -0.5, -0.5],  # partly in the band [-1, 0] where the border pixel is still sampled
        [0, 9.5, 7.5, 10.2, 8.6],  # straddling the bottom-right corner
        [1, 2.2, 3.1, 2.5, 3.3],  # tiny: far smaller than one bin
        [0, 4.0, 4.0, 4.0, 4.0],  # zero size
        [1, 3.0, 1.0, 3.0, 6.0],  # zero width
        [0, 1.0, 2.0, 8.7, 2.01],  # a thin sliver
        [1, 2.5, 3.5, 5.5, 6.5],  # half-integers: roi_pool rounds them away from zero
        [0, -0.5, -1.5, 0.5, 1.5],  # negative halves
        [1, 0.5, 0.5, 1.5, 1.5],
    ]
)


def edge_maps(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return features(2, 3, 8, 10, seed=5, dtype=dtype)


def scaled(rois: torch.Tensor, factor: float) -> torch.Tensor:
    """The same RoIs with coordinates multiplied by ``factor`` (the batch index unchanged)."""
    return torch.cat([rois[:, :1], rois[:, 1:] * factor], dim=1)


def as_list(rois: torch.Tensor, batch: int) -> list[torch.Tensor]:
    return [rois[rois[:, 0] == i, 1:] for i in range(batch)]


def assert_close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    torch.testing.assert_close(ours, ref, atol=ATOL[ref.dtype], rtol=0)


# ---------------------------------------------------------------- roi_align: forward


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", SAMPLING_RATIOS)
def test_roi_align_equals_torchvision_random(sampling_ratio, aligned, dtype):
    # A stride-16 feature map of a 256 x 320 image; RoIs up to 200 px, many past the border.
    x = features(3, 4, 16, 20, seed=sampling_ratio + 10, dtype=dtype)
    rois = random_rois(150, 3, seed=sampling_ratio + 20, low=-40, high=300, max_size=200, dtype=dtype)
    for output_size in [7, (3, 5)]:
        ours = cd.roi_align(x, rois, output_size, 1 / 16, sampling_ratio, aligned)
        ref = tv.roi_align(x, rois, output_size, 1 / 16, sampling_ratio, aligned)
        assert ours.is_contiguous()
        assert_close(ours, ref)
        assert ref.abs().max() > 0.1  # not a comparison of zeros


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.25, 1 / 3])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", SAMPLING_RATIOS)
def test_roi_align_edge_rois(sampling_ratio, aligned, spatial_scale):
    x = edge_maps()
    rois = scaled(EDGE_ROIS, 1 / spatial_scale)  # the same places on the map at every scale
    for output_size in [(2, 3), (7, 7), (1, 4)]:
        ours = cd.roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
        assert_close(ours, tv.roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned))


def test_roi_align_edge_rois_known_values():
    x = edge_maps()
    outside = cd.roi_align(x, EDGE_ROIS[[3, 4]], 3, sampling_ratio=2)
    assert (outside == 0).all()  # every sample more than a pixel outside the map counts as 0
    band = torch.tensor([[1, -1.0, -1.0, 0.0, 0.0]])  # samples at -0.75 and -0.25: clamped to the corner pixel
    torch.testing.assert_close(cd.roi_align(x, band, 1, sampling_ratio=2)[0], x[1, :, :1, :1], atol=1e-6, rtol=0)
    zero = EDGE_ROIS[[8]]  # zero size: aligned + adaptive has no sample at all and gives 0
    assert (cd.roi_align(x, zero, 2, sampling_ratio=-1, aligned=True) == 0).all()
    assert (tv.roi_align(x, zero, 2, sampling_ratio=-1, aligned=True) == 0).all()


def test_roi_align_adaptive_mixes_sample_counts():
    # One large RoI (5 x 5 samples per bin) padded together with 1 x 1 ones: the padding must not count.
    x = features(1, 2, 32, 32, seed=3)
    rois = torch.tensor([[0, 0.0, 0.0, 31.0, 31.0], [0, 3.0, 4.0, 5.0, 6.0], [0, 10.0, 2.0, 11.0, 30.0]])
    ours = cd.roi_align(x, rois, 7, sampling_ratio=-1)
    assert_close(ours, tv.roi_align(x, rois, 7, sampling_ratio=-1))
    for i in range(3):  # alone (no padding) gives the same
        assert_close(cd.roi_align(x, rois[[i]], 7, sampling_ratio=-1), ours[[i]])


def test_roi_align_float64_is_tighter_than_float32():
    x = features(2, 3, 12, 12, seed=1, dtype=torch.float64)
    rois = random_rois(60, 2, seed=2, low=-3, high=12, max_size=8, dtype=torch.float64)
    diff64 = (cd.roi_align(x, rois, 4, 1.0, 2) - tv.roi_align(x, rois, 4, 1.0, 2)).abs().max()
    assert diff64 < 1e-13


@pytest.mark.parametrize("op", ["roi_align", "roi_pool"])
def test_list_of_boxes_form_and_empty_image(op):
    ours_fn, ref_fn = getattr(cd, op), getattr(tv, op)
    x = features(3, 2, 9, 11, seed=4)
    rois = random_rois(40, 3, seed=6, low=-2, high=10, max_size=6)
    rois = rois[rois[:, 0] != 1]  # image 1 has no RoI
    boxes = as_list(rois, 3)
    assert boxes[1].shape == (0, 4)
    ours = ours_fn(x, boxes, (3, 2))
    assert_close(ours, ref_fn(x, boxes, (3, 2)))
    order = torch.sort(rois[:, 0], stable=True).indices  # the list form is grouped by image
    assert_close(ours, ours_fn(x, rois[order], (3, 2)))
    assert_close(ours_fn(x, tuple(boxes), (3, 2)), ours)
    # Integer and float64 boxes are converted to the map's dtype.
    ints = [b.round().long() for b in boxes]
    assert_close(ours_fn(x, ints, (3, 2)), ref_fn(x, [b.float() for b in ints], (3, 2)))


@pytest.mark.parametrize("op", ["roi_align", "roi_pool"])
def test_no_rois(op):
    fn = getattr(cd, op)
    x = features(2, 3, 5, 5, seed=0).requires_grad_(True)
    for boxes in (torch.zeros(0, 5), [torch.zeros(0, 4), torch.zeros(0, 4)]):
        out = fn(x, boxes, (2, 3))
        assert out.shape == (0, 3, 2, 3) and out.dtype == torch.float32
        out.sum().backward()  # still part of the graph
        assert (x.grad == 0).all()


# ---------------------------------------------------------------- roi_align: gradients


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_roi_align_gradcheck(sampling_ratio, aligned):
    x = features(2, 2, 5, 6, seed=1, dtype=torch.float64).requires_grad_(True)
    rois = torch.tensor([[0, 0.3, 0.2, 4.1, 3.7], [1, -1.2, 2.5, 3.3, 6.4], [1, 2.0, 1.0, 2.4, 1.3],
                         [0, 4.5, 3.5, 7.0, 5.2]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: cd.roi_align(t, rois, (3, 2), 1.0, sampling_ratio, aligned), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 2])
def test_roi_align_input_gradient_equals_torchvision(sampling_ratio, aligned, dtype):
    x = features(2, 3, 12, 14, seed=7, dtype=dtype)
    rois = random_rois(80, 2, seed=8, low=-30, high=220, max_size=120, dtype=dtype)
    grad_out = torch.randn(80, 3, 4, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64).to(dtype)
    grads = []
    for fn in (cd.roi_align, tv.roi_align):
        xx = x.clone().requires_grad_(True)
        fn(xx, rois, (4, 5), 1 / 16, sampling_ratio, aligned).backward(grad_out)
        grads.append(xx.grad)
    assert_close(*grads)
    assert grads[1].abs().max() > 0.1


def test_roi_align_gives_no_gradient_to_boxes():
    x = features(1, 2, 6, 6, seed=0).requires_grad_(True)
    boxes = torch.tensor([[0, 1.0, 1.0, 4.0, 4.0]], requires_grad=True)
    cd.roi_align(x, boxes, 2).sum().backward()
    assert boxes.grad is None and x.grad is not None


# ---------------------------------------------------------------- roi_pool


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(3))
def test_roi_pool_equals_torchvision_random(seed, dtype):
    x = features(3, 4, 16, 20, seed=seed, dtype=dtype)
    rois = random_rois(150, 3, seed=seed + 30, low=-40, high=300, max_size=200, dtype=dtype)
    for output_size, scale in [(7, 1 / 16), ((3, 5), 1 / 16), ((2, 9), 1 / 8)]:
        ours = cd.roi_pool(x, rois, output_size, scale)
        assert ours.is_contiguous() and ours.dtype == dtype
        assert torch.equal(ours, tv.roi_pool(x, rois, output_size, scale))


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 1 / 3])
def test_roi_pool_edge_rois(spatial_scale):
    x = edge_maps()
    rois = scaled(EDGE_ROIS, 1 / spatial_scale)
    for output_size in [(2, 3), (7, 7), (1, 4), (12, 1)]:  # more bins than pixels too
        assert torch.equal(cd.roi_pool(x, rois, output_size, spatial_scale),
                           tv.roi_pool(x, rois, output_size, spatial_scale))
    outside = cd.roi_pool(x, EDGE_ROIS[[3, 4]], 3)
    assert (outside == 0).all()  # empty bins give 0


def test_roi_pool_rounds_halves_away_from_zero():
    # x1 = 2.5 -> pixel 3 (C's round), not 2 (torch.round); x1 = -0.5 -> -1.
    x = torch.arange(40.0).reshape(1, 1, 4, 10)
    assert cd.roi_pool(x, torch.tensor([[0, 2.5, 0.0, 2.5, 0.0]]), 1).item() == 3.0
    assert torch.equal(cd.roi_pool(x, EDGE_ROIS[[11, 12]] * torch.tensor([0, 1, 1, 1, 1]), 2),
                       tv.roi_pool(x, EDGE_ROIS[[11, 12]] * torch.tensor([0, 1, 1, 1, 1]), 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_roi_pool_gradient_equals_torchvision(dtype):
    x = features(2, 3, 12, 14, seed=11, dtype=dtype)
    rois = random_rois(80, 2, seed=12, low=-30, high=220, max_size=120, dtype=dtype)
    grad_out = torch.randn(80, 3, 4, 5, generator=torch.Generator().manual_seed(13), dtype=torch.float64).to(dtype)
    for g in (grad_out, torch.ones_like(grad_out)):
        grads = []
        for fn in (cd.roi_pool, tv.roi_pool):
            xx = x.clone().requires_grad_(True)
            fn(xx, rois, (4, 5), 1 / 16).backward(g)
            grads.append(xx.grad)
        assert_close(*grads)  # the same pixels receive; only the order of the additions differs
    assert torch.equal(*grads)  # all-ones: integer sums, exact


def test_roi_pool_ties_send_the_gradient_to_the_first_pixel_like_torchvision():
    x = torch.randint(0, 3, (1, 2, 9, 9), generator=torch.Generator().manual_seed(0)).float()
    rois = random_rois(30, 1, seed=1, low=-2, high=8, max_size=7)
    grads = []
    for fn in (cd.roi_pool, tv.roi_pool):
        xx = x.clone().requires_grad_(True)
        fn(xx, rois, 3).sum().backward()
        grads.append(xx.grad)
    assert torch.equal(*grads)


def test_roi_pool_gradcheck():
    # Distinct, well-separated values: the max of every bin is stable under gradcheck's perturbation.
    perm = torch.randperm(2 * 2 * 6 * 7, generator=torch.Generator().manual_seed(0))
    x = perm.double().reshape(2, 2, 6, 7).requires_grad_(True)
    rois = torch.tensor([[0, 0.0, 0.0, 5.0, 4.0], [1, -2.0, 1.0, 3.0, 7.0], [1, 2.0, 2.0, 2.0, 2.0]],
                        dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: cd.roi_pool(t, rois, (2, 3)), (x,))


# ---------------------------------------------------------------- RoI properties (hypothesis)


@st.composite
def map_and_inside_boxes(draw, min_size=0.0):
    """A map size, then 1-6 RoIs inside [0, W - 1] x [0, H - 1] (feature coordinates)."""
    h, w = draw(st.integers(2, 12)), draw(st.integers(2, 12))
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        x1 = draw(st.floats(0, w - 1 - min_size))
        y1 = draw(st.floats(0, h - 1 - min_size))
        x2 = draw(st.floats(x1 + min_size, w - 1))
        y2 = draw(st.floats(y1 + min_size, h - 1))
        rows.append([0.0, x1, y1, x2, y2])
    return h, w, torch.tensor(rows, dtype=torch.float64)


output_sizes = st.tuples(st.integers(1, 5), st.integers(1, 5))


@settings(max_examples=60, deadline=None)
@given(map_and_inside_boxes(), output_sizes, st.sampled_from([-1, 1, 2, 3]), st.booleans(),
       st.floats(-5, 5), st.sampled_from([1.0, 0.5, 2.0]))
def test_roi_align_of_a_constant_map_is_that_constant(problem, output_size, sampling_ratio, aligned, value,
                                                      scale):
    h, w, rois = problem
    if aligned and sampling_ratio == -1:  # a zero-size aligned RoI has no sample (and gives 0)
        sampling_ratio = 2
    x = torch.full((1, 2, h, w), value, dtype=torch.float64)
    rois = scaled(rois, 1 / scale)
    out = cd.roi_align(x, rois, output_size, scale, sampling_ratio, aligned)
    torch.testing.assert_close(out, torch.full_like(out, value), atol=1e-12, rtol=1e-12)
    assert_close(out, tv.roi_align(x, rois, output_size, scale, sampling_ratio, aligned))


@settings(max_examples=60, deadline=None)
@given(map_and_inside_boxes(min_size=1.0), output_sizes, st.sampled_from([-1, 1, 2, 4]),
       st.floats(-3, 3), st.floats(-3, 3))
def test_roi_align_of_a_linear_ramp_is_the_ramp_at_the_bin_centres(problem, output_size, sampling_ratio, a, b):
    # Bilinear interpolation is exact for a linear function, and the mean of a symmetric grid of
    # samples of it is its value at the grid's centre: the bin centre.
    h, w, rois = problem
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    x = (a * ys + b * xs + 1.0)[None, None]
    out = cd.roi_align(x, rois, output_size, 1.0, sampling_ratio)[:, 0]  # [K, out_h, out_w]
    out_h, out_w = output_size
    x1, y1, x2, y2 = rois[:, 1:].unbind(1)
    cy = y1[:, None] + (torch.arange(out_h) + 0.5)[None, :] * ((y2 - y1) / out_h)[:, None]  # [K, out_h]
    cx = x1[:, None] + (torch.arange(out_w) + 0.5)[None, :] * ((x2 - x1) / out_w)[:, None]
    expected = a * cy[:, :, None] + b * cx[:, None, :] + 1.0
    torch.testing.assert_close(out, expected, atol=1e-9, rtol=0)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.data(), output_sizes)
def test_roi_pool_of_a_one_pixel_roi_returns_that_pixel(h, w, data, output_size):
    y, x = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    maps = features(2, 3, h, w, seed=h * 10 + w)
    rois = torch.tensor([[1, x, y, x, y]], dtype=torch.float32)
    out = cd.roi_pool(maps, rois, output_size)
    assert torch.equal(out[0], maps[1, :, y, x][:, None, None].expand(3, *output_size))


@settings(max_examples=60, deadline=None)
@given(map_and_inside_boxes(), output_sizes)
def test_roi_pool_max_over_bins_is_max_over_the_rounded_box(problem, output_size):
    # The bins cover the (rounded) RoI exactly, overlapping where its size is not a multiple of the grid.
    h, w, rois = problem
    maps = features(1, 2, h, w, seed=h + 100 * w, dtype=torch.float64)
    out = cd.roi_pool(maps, rois, output_size)
    assert torch.equal(out, tv.roi_pool(maps, rois, output_size))
    for roi, pooled in zip(rois, out):
        x1, y1, x2, y2 = (math.floor(v + 0.5) for v in roi[1:].tolist())  # non-negative: C round
        window = maps[0, :, y1:y2 + 1, x1:x2 + 1]
        assert torch.equal(pooled.amax(dim=(1, 2)), window.amax(dim=(1, 2)))


# ---------------------------------------------------------------- losses


def logits_and_targets(shape, seed, dtype=torch.float32, soft=False):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=g, dtype=torch.float64) * 6).to(dtype)
    logits.view(-1)[:4] = torch.tensor([30.0, -30.0, 0.0, 100.0], dtype=dtype)  # saturated sigmoid too
    targets = torch.rand(shape, generator=g, dtype=torch.float64) if soft else \
        torch.randint(0, 2, shape, generator=g).double()
    return logits, targets.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2), (0.5, 0), (-1, 2), (0.0, 1), (1.0, 2.5), (0.75, 0.5)])
def test_sigmoid_focal_loss_equals_torchvision(alpha, gamma, reduction, dtype):
    for soft in (False, True):
        inputs, targets = logits_and_targets((64, 9), seed=int(10 * gamma) + soft, dtype=dtype, soft=soft)
        ours = cd.sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction)
        ref = tv.sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        assert torch.equal(ours, ref)


def test_sigmoid_focal_loss_defaults_and_gradient_equal_torchvision():
    inputs, targets = logits_and_targets((5, 7, 3), seed=1)
    assert torch.equal(cd.sigmoid_focal_loss(inputs, targets), tv.sigmoid_focal_loss(inputs, targets))
    grads = []
    for fn in (cd.sigmoid_focal_loss, tv.sigmoid_focal_loss):
        x = inputs.clone().requires_grad_(True)
        fn(x, targets, reduction="mean").backward()
        grads.append(x.grad)
    assert torch.equal(*grads)
    assert torch.isfinite(grads[0]).all()


def test_sigmoid_focal_loss_accepts_integer_targets():
    inputs, targets = logits_and_targets((10,), seed=2)
    assert torch.equal(cd.sigmoid_focal_loss(inputs, targets.long()), cd.sigmoid_focal_loss(inputs, targets))


def test_sigmoid_focal_loss_empty():
    assert cd.sigmoid_focal_loss(torch.zeros(0, 3), torch.zeros(0, 3), reduction="sum").item() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("beta", [1.0, 0.0, 1 / 9, 0.1, 5.0])
def test_smooth_l1_loss_equals_torch(beta, reduction, dtype):
    g = torch.Generator().manual_seed(int(beta * 100))
    pred = (torch.randn(100, 4, generator=g, dtype=torch.float64) * 3).to(dtype)
    target = (torch.randn(100, 4, generator=g, dtype=torch.float64) * 3).to(dtype)
    target[:3] = pred[:3]  # d = 0
    target[3, 0] = pred[3, 0] + beta  # d = beta exactly (the switch point)
    ours = cd.smooth_l1_loss(pred, target, beta, reduction)
    ref = F.smooth_l1_loss(pred, target, beta=beta, reduction=reduction)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    assert torch.equal(ours, ref)
    # Gradients: torch's kernel computes d / beta * g, autograd here (g / beta) * d: last-bit differences.
    grads = []
    for fn in (lambda p: cd.smooth_l1_loss(p, target, beta, reduction),
               lambda p: F.smooth_l1_loss(p, target, beta=beta, reduction=reduction)):
        p = pred.clone().requires_grad_(True)
        out = fn(p)
        (out if reduction != "none" else out.sum()).backward()
        grads.append(p.grad)
    torch.testing.assert_close(*grads, atol=0, rtol=4 * torch.finfo(dtype).eps)


def test_smooth_l1_loss_defaults_and_worked_values():
    pred, target = torch.tensor([0.0, 0.5, 3.0]), torch.zeros(3)
    # d = 0 -> 0; d = 0.5 < 1 -> 0.5 * 0.25 = 0.125; d = 3 -> 3 - 0.5 = 2.5.
    assert cd.smooth_l1_loss(pred, target, reduction="none").tolist() == [0.0, 0.125, 2.5]
    assert cd.smooth_l1_loss(pred, target).item() == pytest.approx(2.625 / 3)
    assert torch.equal(cd.smooth_l1_loss(pred, target, beta=0.0, reduction="none"), pred.abs())  # L1


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=1, max_size=20), st.floats(0, 5))
def test_smooth_l1_between_l1_minus_half_beta_and_l1(diffs, beta):
    d = torch.tensor(diffs, dtype=torch.float64)
    loss = cd.smooth_l1_loss(d, torch.zeros_like(d), beta, reduction="none")
    assert (loss <= d.abs() + 1e-12).all() and (loss >= d.abs() - 0.5 * beta - 1e-12).all()
    assert (loss >= 0).all()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.floats(-30, 30), st.sampled_from([0.0, 1.0])), min_size=1, max_size=20),
       st.floats(0, 5))
def test_focal_loss_is_bce_scaled_down(pairs, gamma):
    x = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    t = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    focal = cd.sigmoid_focal_loss(x, t, alpha=-1, gamma=gamma)
    assert (focal <= bce + 1e-12).all() and (focal >= 0).all()
    assert torch.equal(cd.sigmoid_focal_loss(x, t, alpha=-1, gamma=0), bce)


# ---------------------------------------------------------------- CUDA


@CUDA
def test_cuda_roi_ops_match_torchvision_and_stay_on_device():
    x = features(2, 4, 16, 20, seed=0).cuda()
    rois = random_rois(100, 2, seed=1, low=-40, high=300, max_size=200).cuda()
    for sampling_ratio in (-1, 2):
        ours = cd.roi_align(x, rois, 7, 1 / 16, sampling_ratio)
        assert ours.device == x.device
        torch.testing.assert_close(ours, tv.roi_align(x, rois, 7, 1 / 16, sampling_ratio), atol=1e-5, rtol=0)
    assert torch.equal(cd.roi_pool(x, rois, 7, 1 / 16), tv.roi_pool(x, rois, 7, 1 / 16))


# ---------------------------------------------------------------- bad input


X = features(2, 3, 6, 6, seed=0)
ROIS = torch.tensor([[0, 0.0, 0.0, 3.0, 3.0], [1, 1.0, 1.0, 4.0, 5.0]])
ROI_OPS = [cd.roi_align, cd.roi_pool]


def with_value(rois: torch.Tensor, row: int, col: int, value: float) -> torch.Tensor:
    out = rois.clone()
    out[row, col] = value
    return out


@pytest.mark.parametrize("op", ROI_OPS)
@pytest.mark.parametrize("boxes, error, message", [
    (torch.zeros(2, 4), ValueError, r"boxes must have shape \[K, 5\]"),
    (torch.zeros(5), ValueError, r"boxes must have shape \[K, 5\]"),
    ([[0, 0, 1, 1], ROIS[:1, 1:]], TypeError, r"boxes\[0\] must be a torch.Tensor"),
    ("boxes", TypeError, "boxes must be a Tensor"),
    (with_value(ROIS, 1, 0, 2.0), ValueError, r"boxes\[1, 0\] = 2.0 is not a batch index"),
    (with_value(ROIS, 0, 0, -1.0), ValueError, r"boxes\[0, 0\].*integer in \[0, 1\]"),
    (with_value(ROIS, 1, 0, 0.5), ValueError, r"boxes\[1, 0\] = 0.5 is not a batch index"),
    (with_value(ROIS, 0, 2, math.nan), ValueError, "boxes contains NaN"),
    (with_value(ROIS, 1, 3, math.inf), ValueError, "boxes contains NaN or infinite"),
    (with_value(ROIS, 1, 3, 0.5), ValueError, r"boxes\[:, 1:\]\[1\].*degenerate"),
    ([ROIS[:1, 1:]], ValueError, "list of 1 tensors but input holds 2 images"),
    ([ROIS[:1, 1:]] * 3, ValueError, "list of 3 tensors"),
    ([ROIS[:1, 1:], ROIS[:1]], ValueError, r"boxes\[1\] must have shape \[L, 4\]"),
    ([ROIS[:1, 1:], torch.zeros(4)], ValueError, r"boxes\[1\] must have 2 dimensions"),
    ([ROIS[:1, 1:], torch.tensor([[0.0, math.nan, 1.0, 1.0]])], ValueError, "boxes.*NaN"),
])
def test_roi_ops_reject_bad_boxes(op, boxes, error, message):
    with pytest.raises(error, match=message):
        op(X, boxes, 2)


@pytest.mark.parametrize("op", ROI_OPS)
@pytest.mark.parametrize("kwargs, error, message", [
    ({"input": X[0]}, ValueError, "input must be a 4-D feature map"),
    ({"input": X[None]}, ValueError, "input must be a 4-D"),
    ({"input": X.long()}, TypeError, "input must have a floating-point dtype"),
    ({"input": X.numpy()}, TypeError, "input must be a torch.Tensor"),
    ({"output_size": 0}, ValueError, "output_size must be positive"),
    ({"output_size": (7, -1)}, ValueError, "output_size must be positive"),
    ({"output_size": (7,)}, TypeError, "output_size must be an int or a pair"),
    ({"output_size": 7.0}, TypeError, "output_size"),
    ({"output_size": True}, TypeError, "output_size"),
    ({"spatial_scale": -0.5}, ValueError, "spatial_scale must be a finite number > 0"),
    ({"spatial_scale": 0}, ValueError, "spatial_scale"),
    ({"spatial_scale": math.nan}, ValueError, "spatial_scale"),
    ({"spatial_scale": "1/16"}, TypeError, "spatial_scale"),
])
def test_roi_ops_reject_bad_arguments(op, kwargs, error, message):
    args = {"input": X, "boxes": ROIS, "output_size": 2, "spatial_scale": 1.0} | kwargs
    with pytest.raises(error, match=message):
        op(**args)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"sampling_ratio": 1.5}, TypeError, "sampling_ratio must be an int"),
    ({"sampling_ratio": None}, TypeError, "sampling_ratio"),
    ({"aligned": 1}, TypeError, "aligned must be True or False"),
])
def test_roi_align_rejects_bad_sampling_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        cd.roi_align(X, ROIS, 2, **kwargs)


LOGITS, TARGETS = torch.zeros(4, 3), torch.ones(4, 3)


@pytest.mark.parametrize("call, error, message", [
    (lambda: cd.sigmoid_focal_loss(LOGITS, TARGETS[:2]), ValueError, r"inputs and targets must have the same shape"),
    (lambda: cd.sigmoid_focal_loss(LOGITS, TARGETS[0]), ValueError, "same shape"),  # no silent broadcast
    (lambda: cd.sigmoid_focal_loss(LOGITS.long(), TARGETS), TypeError, "inputs must have a floating"),
    (lambda: cd.sigmoid_focal_loss(LOGITS, TARGETS.tolist()), TypeError, "targets must be a torch.Tensor"),
    (lambda: cd.sigmoid_focal_loss(LOGITS, TARGETS, reduction="avg"), ValueError, "reduction must be one of"),
    (lambda: cd.sigmoid_focal_loss(LOGITS, TARGETS, alpha=1.5), ValueError, r"alpha must be in \[0, 1\]"),
    (lambda: cd.sigmoid_focal_loss(LOGITS, TARGETS, alpha=-0.5), ValueError, "alpha"),
    (lambda: cd.sigmoid_focal_loss(LOGITS, TARGETS, alpha=math.nan), ValueError, "alpha"),
    (lambda: cd.sigmoid_focal_loss(LOGITS, TARGETS, alpha="0.25"), TypeError, "alpha"),
    (lambda: cd.sigmoid_focal_loss(LOGITS, TARGETS, gamma=-1), ValueError, "gamma must be >= 0"),
    (lambda: cd.sigmoid_focal_loss(LOGITS, TARGETS, gamma=math.inf), ValueError, "gamma"),
    (lambda: cd.smooth_l1_loss(LOGITS, TARGETS[:, :2]), ValueError, "input and target must have the same shape"),
    (lambda: cd.smooth_l1_loss(LOGITS, TARGETS, beta=-1.0), ValueError, "beta must be >= 0"),
    (lambda: cd.smooth_l1_loss(LOGITS, TARGETS, beta=None), TypeError, "beta"),
    (lambda: cd.smooth_l1_loss(LOGITS, TARGETS, reduction="batchmean"), ValueError, "reduction"),
    (lambda: cd.smooth_l1_loss([0.0], TARGETS), TypeError, "input must be a torch.Tensor"),
])
def test_losses_reject_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
