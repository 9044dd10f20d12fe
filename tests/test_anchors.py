"""course_utils.anchors against torchvision's AnchorGenerator, Matcher and BoxCoder."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from course_utils import anchors as ca


def torchvision_anchors(image_size, feature_size, sizes, aspect_ratios):
    """torchvision's anchors for one image and one feature map of the given (h, w) sizes."""
    generator = AnchorGenerator(sizes=(tuple(sizes),), aspect_ratios=(tuple(aspect_ratios),))
    images = ImageList(torch.zeros(1, 3, *image_size), [tuple(image_size)])
    feature_map = torch.zeros(1, 8, *feature_size)
    return generator(images, [feature_map])[0]


def random_boxes(n: int, seed: int, *, dtype=torch.float32, high=1000.0, min_size=1.0, max_size=200.0):
    g = torch.Generator().manual_seed(seed)
    top_left = torch.rand(n, 2, generator=g, dtype=torch.float64) * high
    size = min_size + torch.rand(n, 2, generator=g, dtype=torch.float64) * (max_size - min_size)
    return torch.cat([top_left, top_left + size], dim=1).to(dtype)


# ---------------------------------------------------------------- generate_anchors


@pytest.mark.parametrize(
    "image_size, feature_size, sizes, aspect_ratios",
    [
        ((800, 800), (50, 50), (32, 64, 128), (0.5, 1.0, 2.0)),
        ((300, 401), (19, 25), (32, 64, 128, 256, 512), (0.5, 1.0, 2.0)),  # strides 15 and 16 (floor)
        ((64, 96), (64, 96), (8,), (1.0,)),  # feature map as large as the image: stride 1
        ((128, 128), (1, 1), (100, 200), (0.25, 0.7, 3.0)),
        ((224, 160), (7, 5), (45.3, 17.5, 3), (0.33, 1.0, 1.5, 4.0)),  # float sizes, rounding at .5
        ((37, 53), (5, 3), (16,), (1.0, 2.0)),
    ],
)
def test_generate_anchors_equals_torchvision(image_size, feature_size, sizes, aspect_ratios):
    ours = ca.generate_anchors(image_size, feature_size, list(sizes), list(aspect_ratios))
    ref = torchvision_anchors(image_size, feature_size, sizes, aspect_ratios)
    assert ours.dtype == ref.dtype == torch.float32
    assert ours.shape == ref.shape == (feature_size[0] * feature_size[1] * len(sizes) * len(aspect_ratios), 4)
    assert torch.equal(ours, ref)


def test_generate_anchors_int_sizes_mean_square():
    assert torch.equal(ca.generate_anchors(64, 8, [16], [0.5, 2.0]),
                       ca.generate_anchors((64, 64), (8, 8), [16], [0.5, 2.0]))


def test_generate_anchors_worked_example():
    # Image 8 x 8, feature map 2 x 2 -> stride 4; one 4 x 4 anchor centred on each cell's top-left
    # pixel: (0, 0), (4, 0), (0, 4), (4, 4) in (x, y), row by row.
    anchors = ca.generate_anchors((8, 8), (2, 2), [4], [1.0])
    assert anchors.tolist() == [[-2, -2, 2, 2], [2, -2, 6, 2], [-2, 2, 2, 6], [2, 2, 6, 6]]


def test_generate_anchors_order_and_rounding_of_cell_anchors():
    # Ratio-major, then size. r = h / w, w = s / sqrt(r), h = s * sqrt(r):
    # (r=0.25, s=2): 4 x 1, (r=0.25, s=4): 8 x 2, (r=4, s=2): 1 x 4, (r=4, s=4): 2 x 8.
    # Half-extents are rounded half-to-even, so a half-extent of 0.5 becomes 0: 1-pixel sides vanish.
    anchors = ca.generate_anchors((10, 10), (1, 1), [2, 4], [0.25, 4.0])
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    assert widths.tolist() == [4, 8, 0, 2]
    assert heights.tolist() == [0, 2, 4, 8]
    assert torch.equal(anchors, torchvision_anchors((10, 10), (1, 1), (2, 4), (0.25, 4.0)))


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(image_size=0), ValueError, "image_size"),
        (dict(image_size=(64, -1)), ValueError, r"image_size\[1\]"),
        (dict(image_size=(64, 64, 3)), ValueError, "image_size"),
        (dict(image_size=64.0), TypeError, "image_size"),
        (dict(feature_size=(0, 4)), ValueError, r"feature_size\[0\]"),
        (dict(feature_size=(65, 8)), ValueError, "feature_size"),  # larger than the image
        (dict(feature_size=(8, 100)), ValueError, "feature_size"),
        (dict(sizes=[]), ValueError, "sizes"),
        (dict(sizes=[32, 0]), ValueError, r"sizes\[1\]"),
        (dict(sizes=[-32]), ValueError, r"sizes\[0\]"),
        (dict(sizes=[math.nan]), ValueError, r"sizes\[0\]"),
        (dict(sizes=32), TypeError, "sizes"),
        (dict(aspect_ratios=[1.0, 0.0]), ValueError, r"aspect_ratios\[1\]"),
        (dict(aspect_ratios=[-0.5]), ValueError, r"aspect_ratios\[0\]"),
        (dict(aspect_ratios=[math.inf]), ValueError, r"aspect_ratios\[0\]"),
        (dict(aspect_ratios=["1"]), TypeError, r"aspect_ratios\[0\]"),
    ],
)
def test_generate_anchors_rejects_bad_input(kwargs, error, name):
    args = dict(image_size=(64, 64), feature_size=(8, 8), sizes=[32], aspect_ratios=[1.0]) | kwargs
    with pytest.raises(error, match=name):
        ca.generate_anchors(**args)


# ---------------------------------------------------------------- match_anchors


def test_match_anchors_worked_example():
    iou = torch.tensor([[0.9, 0.5, 0.1, 0.0],
                        [0.2, 0.6, 0.35, 0.25]])
    # Best GT per anchor: (0.9, gt0) matched; (0.6, gt1) and (0.35, gt1) in [0.3, 0.7) -> -2;
    # (0.25, gt1) < 0.3 -> -1.
    assert ca.match_anchors(iou, 0.7, 0.3).tolist() == [0, -2, -2, -1]
    # gt1's best anchor is anchor 1 (0.6): a low-quality match gives it back.
    assert ca.match_anchors(iou, 0.7, 0.3, allow_low_quality_matches=True).tolist() == [0, 1, -2, -1]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("high, low", [(0.7, 0.3), (0.5, 0.4), (0.5, 0.5), (1.0, 0.0), (0.6, 0.0)])
@pytest.mark.parametrize("allow_low", [False, True])
def test_match_anchors_equals_torchvision_random(seed, high, low, allow_low):
    g = torch.Generator().manual_seed(seed)
    iou = torch.rand(1 + seed * 3, 150, generator=g)
    ours = ca.match_anchors(iou, high, low, allow_low)
    assert ours.dtype == torch.int64
    assert torch.equal(ours, Matcher(high, low, allow_low)(iou))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("allow_low", [False, True])
def test_match_anchors_ties_and_zero_rows(seed, allow_low):
    # Quantised values make ties within rows and columns; a ground truth that overlaps no anchor
    # (a row of zeros) is torchvision's quirk: every anchor with 0 IoU "ties" for its maximum.
    g = torch.Generator().manual_seed(seed)
    iou = torch.randint(0, 5, (6, 40), generator=g).float() / 4
    iou[seed % 6] = 0
    ours = ca.match_anchors(iou, 0.75, 0.25, allow_low)
    assert torch.equal(ours, Matcher(0.75, 0.25, allow_low)(iou))


def test_match_anchors_on_real_iou_matrix():
    anchors = ca.generate_anchors((256, 256), (16, 16), [32, 64], [0.5, 1.0, 2.0])
    gt = random_boxes(5, 3, high=200, min_size=10, max_size=80)
    iou = box_iou(gt, anchors)
    for allow_low in (False, True):
        ours = ca.match_anchors(iou, 0.7, 0.3, allow_low)
        assert torch.equal(ours, Matcher(0.7, 0.3, allow_low)(iou))
    best_anchor_of_each_gt = iou.argmax(dim=1)
    assert (ca.match_anchors(iou, 0.7, 0.3, True)[best_anchor_of_each_gt] >= 0).all()
    assert (ca.match_anchors(iou, 0.7, 0.3, False)[best_anchor_of_each_gt] < 0).any()  # needed it


def test_match_anchors_float64_input():
    iou = torch.rand(4, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(ca.match_anchors(iou, 0.6, 0.2, True), Matcher(0.6, 0.2, True)(iou))


@pytest.mark.parametrize(
    "args, error, name",
    [
        ((torch.zeros(0, 5), 0.7, 0.3), ValueError, "iou_matrix"),
        ((torch.zeros(3, 0), 0.7, 0.3), ValueError, "iou_matrix"),
        ((torch.zeros(5), 0.7, 0.3), ValueError, "iou_matrix"),
        ((torch.tensor([[0.5, math.nan]]), 0.7, 0.3), ValueError, "iou_matrix"),
        (([[0.5]], 0.7, 0.3), TypeError, "iou_matrix"),
        ((torch.rand(2, 3), 1.2, 0.3), ValueError, "high_threshold"),
        ((torch.rand(2, 3), 0.7, -0.1), ValueError, "low_threshold"),
        ((torch.rand(2, 3), 0.3, 0.7), ValueError, "low_threshold"),  # low > high
        ((torch.rand(2, 3), "0.7", 0.3), TypeError, "high_threshold"),
        ((torch.rand(2, 3), 0.7, 0.3, 1), TypeError, "allow_low_quality_matches"),
    ],
)
def test_match_anchors_rejects_bad_input(args, error, name):
    with pytest.raises(error, match=name):
        ca.match_anchors(*args)


# ---------------------------------------------------------------- encode / decode


WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (0.3, 1.7, 2.9, 0.11)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("seed", range(2))
def test_encode_equals_torchvision(seed, weights, dtype):
    gt, proposals = random_boxes(300, seed, dtype=dtype), random_boxes(300, seed + 7, dtype=dtype)
    ours = ca.encode_boxes(gt, proposals, weights)
    ref = BoxCoder(weights).encode_single(gt, proposals)
    assert ours.dtype == ref.dtype and ours.shape == (300, 4)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("groups", [1, 3])
def test_decode_equals_torchvision(groups, weights, dtype):
    g = torch.Generator().manual_seed(groups)
    boxes = random_boxes(300, groups, dtype=dtype, min_size=0.0)  # zero-size anchors are fine here
    codes = (torch.randn(300, 4 * groups, generator=g, dtype=torch.float64) * 4).to(dtype)
    ours = ca.decode_boxes(codes, boxes, weights)
    ref = BoxCoder(weights).decode_single(codes, boxes)
    assert ours.dtype == ref.dtype and ours.shape == (300, 4 * groups)
    assert torch.equal(ours, ref)


def test_encode_decode_large_coordinates():
    gt = random_boxes(200, 1, high=1e5, min_size=1e3, max_size=2e4)
    anchors = random_boxes(200, 2, high=1e5, min_size=1e3, max_size=2e4)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    codes = ca.encode_boxes(gt, anchors, (10, 10, 5, 5))
    assert torch.equal(codes, coder.encode_single(gt, anchors))
    assert torch.equal(ca.decode_boxes(codes, anchors, (10, 10, 5, 5)), coder.decode_single(codes, anchors))


def test_decode_clamps_dw_dh():
    # dw = dh = 10 is clamped to log(1000 / 16): a 2 x 4 box becomes 125 x 250, same centre.
    box = torch.tensor([[0.0, 0.0, 2.0, 4.0]])
    out = ca.decode_boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), box)
    torch.testing.assert_close(out, torch.tensor([[1 - 62.5, 2 - 125.0, 1 + 62.5, 2 + 125.0]]))
    assert torch.equal(out, BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), box))


def test_encode_worked_example():
    # Anchor centred at (5, 5), 10 x 10; target centred at (7, 4), 20 x 5.
    anchor = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    target = torch.tensor([[-3.0, 1.5, 17.0, 6.5]])
    expected = torch.tensor([[0.2, -0.1, math.log(2.0), math.log(0.5)]])
    torch.testing.assert_close(ca.encode_boxes(target, anchor), expected)


def test_encode_decode_empty():
    assert ca.encode_boxes(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)
    assert ca.decode_boxes(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)


def test_decode_casts_boxes_to_codes_dtype():
    boxes = random_boxes(10, 0, dtype=torch.float32)
    codes = torch.zeros(10, 4, dtype=torch.float64)
    out = ca.decode_boxes(codes, boxes)
    ref = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(codes, boxes)
    assert out.dtype == ref.dtype == torch.float64
    assert torch.equal(out, ref)


FLAT = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 1.0, 5.0]])  # second box has zero width
GOOD = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 3.0, 5.0]])


@pytest.mark.parametrize(
    "call, error, name",
    [
        (lambda: ca.encode_boxes(GOOD, FLAT), ValueError, r"proposals\[1\].*zero width"),
        (lambda: ca.encode_boxes(FLAT, GOOD), ValueError, r"reference_boxes\[1\].*zero width"),
        (lambda: ca.encode_boxes(GOOD, GOOD[:1]), ValueError, "same length"),
        (lambda: ca.encode_boxes(GOOD, GOOD.flip(1)), ValueError, "proposals.*degenerate"),
        (lambda: ca.encode_boxes(GOOD[:, :3], GOOD), ValueError, "reference_boxes"),
        (lambda: ca.encode_boxes(GOOD, GOOD, (1, 1, 1)), ValueError, "weights"),
        (lambda: ca.encode_boxes(GOOD, GOOD, (1, 1, 0, 1)), ValueError, r"weights\[2\]"),
        (lambda: ca.encode_boxes(GOOD, GOOD, (1, 1, -5, 1)), ValueError, r"weights\[2\]"),
        (lambda: ca.encode_boxes(GOOD, GOOD, "1111"), ValueError, "weights"),
        (lambda: ca.decode_boxes(torch.zeros(2, 5), GOOD), ValueError, "rel_codes"),
        (lambda: ca.decode_boxes(torch.zeros(2, 0), GOOD), ValueError, "rel_codes"),
        (lambda: ca.decode_boxes(torch.zeros(3, 4), GOOD), ValueError, "same length"),
        (lambda: ca.decode_boxes(torch.tensor([[0.0, math.nan, 0, 0]] * 2), GOOD), ValueError, "rel_codes"),
        (lambda: ca.decode_boxes(torch.zeros(2, 4, dtype=torch.int64), GOOD), TypeError, "rel_codes"),
        (lambda: ca.decode_boxes(torch.zeros(2, 4), GOOD.flip(1)), ValueError, "boxes.*degenerate"),
        (lambda: ca.decode_boxes(torch.zeros(2, 4), GOOD, (1, 1, 1, math.inf)), ValueError, r"weights\[3\]"),
    ],
)
def test_encode_decode_reject_bad_input(call, error, name):
    with pytest.raises(error, match=name):
        call()


# ---------------------------------------------------------------- properties (hypothesis)


@st.composite
def box_pairs(draw):
    """Matching (target, anchor) float64 boxes whose sizes differ by less than the decode clamp."""
    n = draw(st.integers(0, 10))
    coord = st.floats(-200, 200, allow_nan=False)
    size = st.floats(1, 50, allow_nan=False)
    def boxes():
        rows = draw(st.lists(st.tuples(coord, coord, size, size), min_size=n, max_size=n))
        t = torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)
        return torch.cat([t[:, :2], t[:, :2] + t[:, 2:]], dim=1)
    return boxes(), boxes()


positive_weights = st.tuples(*[st.floats(0.1, 20, allow_nan=False)] * 4)


@settings(max_examples=80, deadline=None)
@given(box_pairs(), positive_weights)
def test_encode_decode_round_trip(pair, weights):
    target, anchors = pair
    codes = ca.encode_boxes(target, anchors, weights)
    torch.testing.assert_close(ca.decode_boxes(codes, anchors, weights), target, rtol=1e-9, atol=1e-9)
    assert torch.equal(ca.encode_boxes(anchors, anchors, weights), torch.zeros_like(anchors))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.floats(0, 1), st.floats(0, 1), st.booleans(), st.integers(0, 2**31))
def test_match_anchors_properties(num_gt, num_anchors, t1, t2, allow_low, seed):
    low, high = min(t1, t2), max(t1, t2)
    iou = torch.rand(num_gt, num_anchors, generator=torch.Generator().manual_seed(seed))
    matches = ca.match_anchors(iou, high, low, allow_low)
    assert torch.equal(matches, Matcher(high, low, allow_low)(iou))
    best = iou.max(dim=0).values
    assert ((matches >= 0) | (matches == -1) | (matches == -2)).all()
    assert (matches[best >= high] >= 0).all()
    if not allow_low:
        assert torch.equal(matches == -1, best < low)
