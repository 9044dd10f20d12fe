"""course_utils.boxes against torchvision.ops, on random and edge cases, plus properties."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.ops as tv
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils import boxes as cb

FORMATS = ("xyxy", "xywh", "cxcywh")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def random_boxes(n: int, seed: int, *, low: float = 0.0, high: float = 1000.0, max_size: float = 200.0,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """n xyxy boxes with top-left corners in [low, high) and sizes in [0, max_size)."""
    g = torch.Generator().manual_seed(seed)
    top_left = low + torch.rand(n, 2, generator=g, dtype=torch.float64) * (high - low)
    size = torch.rand(n, 2, generator=g, dtype=torch.float64) * max_size
    return torch.cat([top_left, top_left + size], dim=1).to(dtype)


def random_scores(n: int, seed: int, *, dtype: torch.dtype = torch.float32, ties: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1000)
    if ties:
        return torch.randint(0, 4, (n,), generator=g).to(dtype)
    return torch.rand(n, generator=g, dtype=torch.float64).to(dtype)


# Hand-built edge cases: touching, nested, identical, zero-area (points and lines), disjoint.
EDGE_BOXES = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],
        [10.0, 0.0, 20.0, 10.0],  # touches box 0 along an edge
        [10.0, 10.0, 20.0, 20.0],  # touches box 0 at a corner
        [2.0, 2.0, 5.0, 5.0],  # nested in box 0
        [0.0, 0.0, 10.0, 10.0],  # identical to box 0
        [3.0, 3.0, 3.0, 3.0],  # a point inside box 0
        [3.0, 3.0, 3.0, 3.0],  # the same point again
        [4.0, 0.0, 4.0, 8.0],  # a vertical segment inside box 0
        [50.0, 50.0, 60.0, 55.0],  # far away
        [1.0, 1.0, 11.0, 11.0],  # the course's worked example partner of box 0
    ]
)


def tv_iou_without_nan(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """torchvision's IoU, with its 0/0 = NaN (zero union) replaced by our documented 0."""
    return torch.nan_to_num(tv.box_iou(boxes1, boxes2), nan=0.0)


def per_class_nms(boxes, scores, idxs, threshold, nms_fn):
    """The definition of batched NMS: NMS per class, union, by decreasing score (index breaks ties)."""
    kept = []
    for c in idxs.unique().tolist():
        members = (idxs == c).nonzero().flatten()
        kept += members[nms_fn(boxes[members], scores[members], threshold)].tolist()
    score = scores.tolist()
    return sorted(kept, key=lambda i: (-score[i], i))



# ---------------------------------------------------------------- box_area / box_convert


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(3))
def test_box_area_equals_torchvision(dtype, seed):
    boxes = random_boxes(300, seed, dtype=dtype)
    assert torch.equal(cb.box_area(boxes), tv.box_area(boxes))
    assert torch.equal(cb.box_area(EDGE_BOXES), tv.box_area(EDGE_BOXES))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.uint8, torch.float16])
def test_box_area_dtype_follows_torchvision(dtype):
    boxes = torch.tensor([[0, 0, 10, 10], [1, 2, 30, 40], [5, 5, 5, 9]]).to(dtype)
    ours, ref = cb.box_area(boxes), tv.box_area(boxes)
    assert ours.dtype == ref.dtype
    assert torch.equal(ours, ref)


def test_box_area_empty():
    area = cb.box_area(torch.zeros(0, 4))
    assert area.shape == (0,) and area.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("in_fmt", FORMATS)
@pytest.mark.parametrize("out_fmt", FORMATS)
def test_box_convert_equals_torchvision(in_fmt, out_fmt, dtype):
    xyxy = torch.cat([random_boxes(200, 7, dtype=dtype), EDGE_BOXES.to(dtype)])
    boxes = tv.box_convert(xyxy, "xyxy", in_fmt)  # valid boxes in in_fmt
    ours, ref = cb.box_convert(boxes, in_fmt, out_fmt), tv.box_convert(boxes, in_fmt, out_fmt)
    assert ours.dtype == ref.dtype
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("in_fmt", FORMATS)
@pytest.mark.parametrize("out_fmt", FORMATS)
def test_box_convert_integer_dtype_follows_torchvision(in_fmt, out_fmt):
    boxes = torch.tensor([[0, 0, 10, 10], [3, 4, 7, 9], [2, 2, 2, 2]])
    ours, ref = cb.box_convert(boxes, in_fmt, out_fmt), tv.box_convert(boxes, in_fmt, out_fmt)
    assert ours.dtype == ref.dtype
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("fmt", FORMATS)
def test_box_convert_same_format_is_a_copy(fmt):
    boxes = tv.box_convert(random_boxes(5, 0), "xyxy", fmt)
    out = cb.box_convert(boxes, fmt, fmt)
    assert torch.equal(out, boxes)
    out[0, 0] = -123.0
    assert boxes[0, 0] != -123.0


def test_box_convert_worked_example_and_round_trip():
    xyxy = torch.tensor([[1.0, 2.0, 5.0, 10.0]])
    assert cb.box_convert(xyxy, "xyxy", "xywh").tolist() == [[1.0, 2.0, 4.0, 8.0]]
    assert cb.box_convert(xyxy, "xyxy", "cxcywh").tolist() == [[3.0, 6.0, 4.0, 8.0]]
    boxes = random_boxes(100, 3, dtype=torch.float64)
    for fmt in FORMATS:
        torch.testing.assert_close(cb.box_convert(cb.box_convert(boxes, "xyxy", fmt), fmt, "xyxy"), boxes)


def test_box_convert_empty():
    out = cb.box_convert(torch.zeros(0, 4), "xyxy", "cxcywh")
    assert out.shape == (0, 4)


# ---------------------------------------------------------------- IoU / GIoU


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(3))
def test_box_iou_equals_torchvision_random(dtype, seed):
    boxes1 = random_boxes(150, seed, dtype=dtype)
    boxes2 = random_boxes(170, seed + 50, dtype=dtype)
    ours = cb.box_iou(boxes1, boxes2)
    assert ours.shape == (150, 170) and ours.dtype == dtype
    assert torch.equal(ours, tv.box_iou(boxes1, boxes2))
    assert (ours > 0).any()  # the random sets do overlap: the comparison is not trivially all zeros


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_iou_large_coordinates(dtype):
    boxes1 = random_boxes(200, 11, low=1e4, high=1e5, max_size=2e4, dtype=dtype)
    boxes2 = random_boxes(200, 12, low=1e4, high=1e5, max_size=2e4, dtype=dtype)
    assert torch.equal(cb.box_iou(boxes1, boxes2), tv.box_iou(boxes1, boxes2))
    assert torch.equal(cb.generalized_box_iou(boxes1, boxes2), tv.generalized_box_iou(boxes1, boxes2))


def test_box_iou_edge_cases():
    ours = cb.box_iou(EDGE_BOXES, EDGE_BOXES)
    assert not ours.isnan().any()
    assert torch.equal(ours, tv_iou_without_nan(EDGE_BOXES, EDGE_BOXES))
    # torchvision really does produce NaN for the zero-union pairs we define as 0.
    assert tv.box_iou(EDGE_BOXES, EDGE_BOXES)[5, 6].isnan()
    assert ours[5, 6] == 0 and ours[5, 5] == 0 and ours[7, 7] == 0
    assert ours[0, 1] == 0 and ours[0, 2] == 0  # touching boxes do not overlap
    assert ours[0, 4] == 1  # identical
    assert ours[0, 3] == 9 / 100  # nested: the small box's area over the large one's


def test_box_iou_worked_example():
    # A = (0,0,10,10), B = (1,1,11,11): intersection 9 * 9 = 81, union 100 + 100 - 81 = 119.
    a, b = EDGE_BOXES[[0]], EDGE_BOXES[[9]]
    assert cb.box_iou(a, b).item() == pytest.approx(81 / 119)


def test_box_iou_integer_and_half_dtypes():
    ints = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [3, 3, 3, 3]])
    ours, ref = cb.box_iou(ints, ints), tv_iou_without_nan(ints, ints)
    assert ours.dtype == ref.dtype == torch.float32
    assert torch.equal(ours, ref)
    half = random_boxes(50, 5).half()
    ours, ref = cb.box_iou(half, half), tv.box_iou(half, half)
    assert ours.dtype == ref.dtype == torch.float32
    torch.testing.assert_close(ours, ref, atol=2e-3, rtol=0)


@pytest.mark.parametrize("n, m", [(0, 3), (3, 0), (0, 0)])
def test_box_iou_empty(n, m):
    for fn in (cb.box_iou, cb.generalized_box_iou):
        out = fn(random_boxes(n, 0), random_boxes(m, 1))
        assert out.shape == (n, m) and out.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(3))
def test_generalized_box_iou_equals_torchvision(dtype, seed):
    boxes1 = random_boxes(120, seed, dtype=dtype, max_size=100) + torch.tensor([0, 0, 1, 1], dtype=dtype)
    boxes2 = random_boxes(130, seed + 9, dtype=dtype, max_size=100) + torch.tensor([0, 0, 1, 1], dtype=dtype)
    ours = cb.generalized_box_iou(boxes1, boxes2)
    assert torch.equal(ours, tv.generalized_box_iou(boxes1, boxes2))
    assert (ours < 0).any() and (ours > 0).any()


def test_generalized_box_iou_edge_cases():
    ours = cb.generalized_box_iou(EDGE_BOXES, EDGE_BOXES)
    ref = tv.generalized_box_iou(EDGE_BOXES, EDGE_BOXES)
    defined = ~ref.isnan()
    assert torch.equal(ours[defined], ref[defined])
    assert not ours.isnan().any()
    # Zero-union pairs, derived by hand: identical points -> IoU 0 and an empty enclosing box -> 0.
    assert ours[5, 6] == 0
    # Point (3,3) vs segment x=4, y in [0,8]: IoU 0, enclosing box 1 x 8, union 0 -> 0 - 8/8 = -1.
    assert ours[5, 7] == -1
    # Touching boxes: IoU 0, enclosing 20 x 10 = union -> GIoU 0; corner contact: 0 - (400-200)/400.
    assert ours[0, 1] == 0 and ours[0, 2] == -0.5


def test_iou_and_giou_gradients_are_finite_for_zero_area_pairs():
    boxes = EDGE_BOXES.clone().requires_grad_(True)
    (cb.box_iou(boxes, boxes).sum() + cb.generalized_box_iou(boxes, boxes).sum()).backward()
    assert torch.isfinite(boxes.grad).all()


# ---------------------------------------------------------------- NMS


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("seed", range(3))
def test_nms_equals_torchvision_random(seed, threshold, dtype):
    boxes = random_boxes(400, seed, dtype=dtype, high=500)
    scores = random_scores(400, seed, dtype=dtype)
    keep = cb.nms(boxes, scores, threshold)
    assert keep.dtype == torch.int64
    assert torch.equal(keep, tv.nms(boxes, scores, threshold))
    if 0 < threshold < 1:
        assert 0 < len(keep) < 400  # some boxes were suppressed, some kept


@pytest.mark.parametrize("seed", range(3))
def test_nms_ties_in_score_keep_torchvision_order(seed):
    boxes = random_boxes(500, seed, high=600)
    scores = random_scores(500, seed, ties=True)
    assert torch.equal(cb.nms(boxes, scores, 0.4), tv.nms(boxes, scores, 0.4))
    same = torch.zeros(500)
    assert torch.equal(cb.nms(boxes, same, 0.4), tv.nms(boxes, same, 0.4))


def test_nms_identical_boxes_equal_scores_keeps_first_index():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0]] * 4)
    scores = torch.tensor([0.2, 0.9, 0.9, 0.1])
    assert cb.nms(boxes, scores, 0.5).tolist() == [1] == tv.nms(boxes, scores, 0.5).tolist()
    # IoU 1 is not > 1: at threshold 1 nothing is suppressed, order by score then index.
    assert cb.nms(boxes, scores, 1.0).tolist() == [1, 2, 0, 3] == tv.nms(boxes, scores, 1.0).tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nms_iou_exactly_at_threshold_is_kept(dtype):
    # IoU(A, B) = 2 / (3 + 3 - 2) = 0.5 and IoU(A, C) = 1 / 2 (C nested in A): exact in binary.
    boxes = torch.tensor([[0, 0, 3, 1], [1, 0, 4, 1], [0, 0, 1.5, 1]], dtype=dtype)
    scores = torch.tensor([0.9, 0.8, 0.7], dtype=dtype)
    assert cb.box_iou(boxes, boxes)[0, 1] == 0.5 and cb.box_iou(boxes, boxes)[0, 2] == 0.5
    for threshold, expected in [(0.5, [0, 1, 2]), (0.4999, [0])]:
        assert cb.nms(boxes, scores, threshold).tolist() == expected
        assert tv.nms(boxes, scores, threshold).tolist() == expected


def test_nms_threshold_compared_in_double_like_torchvision():
    # float32(3 / 10) = 0.30000001192... > 0.3 (a double): torchvision suppresses, so must we.
    boxes = torch.tensor([[0.0, 0.0, 10.0, 1.0], [0.0, 0.0, 3.0, 1.0]])
    scores = torch.tensor([1.0, 0.5])
    assert cb.box_iou(boxes, boxes)[0, 1].item() > 0.3
    assert cb.nms(boxes, scores, 0.3).tolist() == [0] == tv.nms(boxes, scores, 0.3).tolist()


@pytest.mark.parametrize("seed", range(4))
def test_nms_threshold_equal_to_an_actual_iou(seed):
    # The most sensitive threshold: exactly one of the pairwise IoUs (as a double).
    boxes = random_boxes(300, seed, high=400)
    scores = random_scores(300, seed)
    iou = cb.box_iou(boxes, boxes)
    candidates = iou[(iou > 0.1) & (iou < 0.9)]
    for threshold in candidates[:: max(1, len(candidates) // 5)].tolist():
        assert torch.equal(cb.nms(boxes, scores, threshold), tv.nms(boxes, scores, threshold))


def test_nms_edge_boxes_zero_area_and_touching():
    scores = torch.linspace(1, 0.1, len(EDGE_BOXES))
    for threshold in (0.0, 0.5, 1.0):
        assert torch.equal(cb.nms(EDGE_BOXES, scores, threshold), tv.nms(EDGE_BOXES, scores, threshold))
    keep = cb.nms(EDGE_BOXES, scores, 0.0).tolist()
    assert {1, 2, 5, 6, 7, 8} <= set(keep)  # touching and zero-area boxes never overlap anything


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nms_large_coordinates(dtype):
    boxes = random_boxes(500, 21, low=1e4, high=1e5, max_size=1e4, dtype=dtype)
    scores = random_scores(500, 21, dtype=dtype)
    assert torch.equal(cb.nms(boxes, scores, 0.5), tv.nms(boxes, scores, 0.5))


def test_nms_empty():
    keep = cb.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.int64
    keep = cb.batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.int64


@pytest.mark.parametrize("n", [300, 1100])  # torchvision: offset trick below 1000 boxes, per-class loop above
@pytest.mark.parametrize("num_classes", [1, 3, 80])
@pytest.mark.parametrize("ties", [False, True])
def test_batched_nms_equals_torchvision(n, num_classes, ties):
    boxes = random_boxes(n, n + num_classes, high=300)
    scores = random_scores(n, n, ties=ties)
    idxs = torch.randint(0, num_classes, (n,), generator=torch.Generator().manual_seed(n))
    keep, ref = cb.batched_nms(boxes, scores, idxs, 0.5), tv.batched_nms(boxes, scores, idxs, 0.5)
    if ties and n > 1000:
        # torchvision's per-class path re-sorts the kept boxes with an unstable sort, so equal
        # scores come out in an arbitrary order there: same boxes, same score sequence.
        assert sorted(keep.tolist()) == sorted(ref.tolist())
        assert torch.equal(scores[keep], scores[ref])
        assert keep.tolist() == per_class_nms(boxes, scores, idxs, 0.5, tv.nms)  # stable order, as tv.nms
    else:
        assert torch.equal(keep, ref)
    assert len(keep) > len(cb.nms(boxes, scores, 0.5)) or num_classes == 1  # classes do not suppress each other


def test_batched_nms_large_coordinates_many_classes():
    boxes = random_boxes(800, 5, low=1e4, high=1e5, max_size=2e4, dtype=torch.float64)
    scores = random_scores(800, 5, dtype=torch.float64)
    idxs = torch.randint(-3, 40, (800,), generator=torch.Generator().manual_seed(0))  # negative labels too
    keep = cb.batched_nms(boxes, scores, idxs, 0.3)
    assert keep.tolist() == per_class_nms(boxes, scores, idxs, 0.3, tv.nms)
    assert torch.equal(keep, tv.batched_nms(boxes, scores, idxs, 0.3))


def test_batched_nms_at_threshold_per_class():
    boxes = torch.tensor([[0, 0, 3, 1], [1, 0, 4, 1], [1, 0, 4, 1.5], [0, 0, 3, 1]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.85, 0.7])
    idxs = torch.tensor([0, 0, 1, 1])
    for threshold in (0.5, 0.45):
        assert torch.equal(cb.batched_nms(boxes, scores, idxs, threshold),
                           tv.batched_nms(boxes, scores, idxs, threshold))
    assert cb.batched_nms(boxes, scores, idxs, 0.5).tolist() == [0, 2, 1, 3]


def test_nms_accepts_integer_boxes_and_mixed_score_dtype():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]])
    scores = torch.tensor([0.5, 0.9, 0.1], dtype=torch.float64)
    assert cb.nms(boxes, scores, 0.5).tolist() == [1, 2]  # IoU(0, 1) = 81/119 > 0.5


@pytest.mark.parametrize("block, first_block, max_rounds", [(1, 1, 1), (3, 2, 1), (7, 7, 2), (64, 16, 8),
                                                            (10_000, 32, 8), (256, 32, 0)])
def test_nms_result_does_not_depend_on_the_blocking(monkeypatch, block, first_block, max_rounds):
    # _greedy_nms walks the boxes in blocks and settles a block in rounds: any choice, same result.
    monkeypatch.setattr(cb, "NMS_BLOCK", block)
    monkeypatch.setattr(cb, "NMS_FIRST_BLOCK", first_block)
    monkeypatch.setattr(cb, "NMS_MAX_ROUNDS", max_rounds)
    boxes, scores = random_boxes(400, 3, high=300), random_scores(400, 3, ties=True)
    idxs = torch.randint(0, 5, (400,), generator=torch.Generator().manual_seed(3))
    for threshold in (0.0, 0.3, 0.7):
        assert torch.equal(cb.nms(boxes, scores, threshold), tv.nms(boxes, scores, threshold))
        assert torch.equal(cb.batched_nms(boxes, scores, idxs, threshold),
                           tv.batched_nms(boxes, scores, idxs, threshold))


def test_nms_long_suppression_chain_across_blocks():
    # Box i overlaps box i + 1 by IoU 8/12 > 0.5 and box i + 2 by 6/14 < 0.5: greedy keeps every
    # other box, a chain far longer than a block and than the rounds of _resolve_block.
    n = 3 * cb.NMS_BLOCK + 5
    boxes = torch.tensor([[2.0 * i, 0.0, 2.0 * i + 10, 10.0] for i in range(n)])
    scores = torch.linspace(1, 0, n)
    keep = cb.nms(boxes, scores, 0.5)
    assert keep.tolist() == list(range(0, n, 2)) == tv.nms(boxes, scores, 0.5).tolist()


def test_nms_crowd_of_near_duplicates():
    # The top boxes remove almost everything (what an RPN's proposals look like around objects).
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(5, 2, generator=g) * 500
    members = torch.randint(0, 5, (1500,), generator=g)
    xy = centres[members] + torch.randn(1500, 2, generator=g) * 4
    boxes = torch.cat([xy - 40, xy + 40], dim=1)
    scores = torch.rand(1500, generator=g)
    for threshold in (0.3, 0.7, 0.9):
        keep = cb.nms(boxes, scores, threshold)
        assert torch.equal(keep, tv.nms(boxes, scores, threshold))
    assert len(cb.nms(boxes, scores, 0.3)) <= 10


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float_below_compares_like_double(dtype):
    # x > _float_below(t) must agree with float(x) > t for the dtype's numbers next to t.
    for t in [0.0, 0.3, 0.5, 1 / 3, 0.7, 1.0, 0.1, 2 / 3, 0.999999] + torch.rand(20).tolist():
        below = cb._float_below(t, dtype)
        assert below <= t and torch.tensor(below, dtype=dtype).item() == below
        x = torch.tensor(t, dtype=dtype)
        neighbours = torch.stack([torch.nextafter(x, torch.tensor(-1.0, dtype=dtype)), x,
                                  torch.nextafter(x, torch.tensor(2.0, dtype=dtype))])
        assert ((neighbours > below) == (neighbours.double() > t)).all()


def test_nms_half_precision_boxes():
    boxes, scores = random_boxes(300, 4, high=400).half(), random_scores(300, 4)
    assert torch.equal(cb.nms(boxes, scores, 0.5), cb.nms(boxes.float(), scores, 0.5))


@CUDA
def test_cuda_outputs_stay_on_device():
    boxes, scores = random_boxes(200, 0).cuda(), random_scores(200, 0).cuda()
    idxs = torch.randint(0, 5, (200,)).cuda()
    assert cb.box_iou(boxes, boxes).device == boxes.device
    for keep, ref in [(cb.nms(boxes, scores, 0.5), tv.nms(boxes, scores, 0.5)),
                      (cb.batched_nms(boxes, scores, idxs, 0.5), tv.batched_nms(boxes, scores, idxs, 0.5))]:
        assert keep.device == ref.device and keep.dtype == ref.dtype
        assert torch.equal(keep, ref)
    assert torch.equal(cb.nms(boxes, scores, 0.5).cpu(), cb.nms(boxes.cpu(), scores.cpu(), 0.5))


# ---------------------------------------------------------------- bad input


GOOD = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
SCORES = torch.tensor([0.5, 0.4])
IDXS = torch.tensor([0, 1])


def bad_box_cases():
    nan = GOOD.clone()
    nan[0, 1] = math.nan
    inf = GOOD.clone()
    inf[1, 2] = math.inf
    degenerate = GOOD.clone()
    degenerate[1, 2] = -1.0  # x2 < x1
    return [
        ([[0, 0, 1, 1]], TypeError, "must be a torch.Tensor"),
        (torch.zeros(2, 3), ValueError, r"\[N, 4\]"),
        (torch.zeros(4), ValueError, "2 dimensions"),
        (nan, ValueError, "NaN"),
        (inf, ValueError, "NaN or infinite"),
        (degenerate, ValueError, "degenerate"),
    ]


@pytest.mark.parametrize("bad, error, message", bad_box_cases())
def test_bad_boxes_are_rejected_by_every_function(bad, error, message):
    calls = {
        "boxes": [lambda b: cb.box_area(b), lambda b: cb.box_convert(b, "xyxy", "xywh"),
                  lambda b: cb.nms(b, SCORES, 0.5), lambda b: cb.batched_nms(b, SCORES, IDXS, 0.5)],
        "boxes1": [lambda b: cb.box_iou(b, GOOD), lambda b: cb.generalized_box_iou(b, GOOD)],
        "boxes2": [lambda b: cb.box_iou(GOOD, b), lambda b: cb.generalized_box_iou(GOOD, b)],
    }
    for name, fns in calls.items():
        for fn in fns:
            with pytest.raises(error, match=message) as info:
                fn(bad)
            assert name in str(info.value)


@pytest.mark.parametrize("fmt", ["xywh", "cxcywh"])
def test_box_convert_rejects_negative_size(fmt):
    with pytest.raises(ValueError, match=r"boxes\[1\].*negative width or height"):
        cb.box_convert(torch.tensor([[0.0, 0.0, 1.0, 1.0], [5.0, 5.0, -1.0, 2.0]]), fmt, "xyxy")


def test_box_convert_rejects_unknown_format():
    with pytest.raises(ValueError, match="in_fmt"):
        cb.box_convert(GOOD, "xywhr", "xyxy")
    with pytest.raises(ValueError, match="out_fmt"):
        cb.box_convert(GOOD, "xyxy", "yxyx")


@pytest.mark.parametrize("threshold, error", [(-0.1, ValueError), (1.5, ValueError), (math.nan, ValueError),
                                              ("0.5", TypeError), (None, TypeError)])
def test_nms_rejects_bad_threshold(threshold, error):
    with pytest.raises(error, match="iou_threshold"):
        cb.nms(GOOD, SCORES, threshold)
    with pytest.raises(error, match="iou_threshold"):
        cb.batched_nms(GOOD, SCORES, IDXS, threshold)


@pytest.mark.parametrize("scores, error", [
    (torch.tensor([0.5]), ValueError),  # length mismatch
    (torch.tensor([[0.5, 0.4]]), ValueError),  # 2-D
    (torch.tensor([0.5, math.nan]), ValueError),
    ([0.5, 0.4], TypeError),
])
def test_nms_rejects_bad_scores(scores, error):
    for call in (lambda: cb.nms(GOOD, scores, 0.5), lambda: cb.batched_nms(GOOD, scores, IDXS, 0.5)):
        with pytest.raises(error, match="scores"):
            call()


@pytest.mark.parametrize("idxs, error", [
    (torch.tensor([0]), ValueError),  # length mismatch
    (torch.tensor([0.0, 1.0]), TypeError),  # float labels
    (torch.tensor([True, False]), TypeError),
    (torch.tensor([[0, 1]]), ValueError),
    ([0, 1], TypeError),
])
def test_batched_nms_rejects_bad_idxs(idxs, error):
    with pytest.raises(error, match="idxs"):
        cb.batched_nms(GOOD, SCORES, idxs, 0.5)


# ---------------------------------------------------------------- properties (hypothesis)


@st.composite
def box_tensors(draw, min_size=0.0, max_n=12, min_n=0):
    n = draw(st.integers(min_n, max_n))
    coord = st.floats(0, 100, allow_nan=False, allow_infinity=False)
    size = st.floats(min_size, 40, allow_nan=False, allow_infinity=False)
    rows = draw(st.lists(st.tuples(coord, coord, size, size), min_size=n, max_size=n))
    xywh = torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)
    return cb.box_convert(xywh, "xywh", "xyxy")


@settings(max_examples=80, deadline=None)
@given(box_tensors(), box_tensors())
def test_iou_symmetric_bounded(boxes1, boxes2):
    iou = cb.box_iou(boxes1, boxes2)
    assert torch.equal(iou, cb.box_iou(boxes2, boxes1).T)
    assert ((iou >= 0) & (iou <= 1)).all()
    assert torch.equal(iou, tv_iou_without_nan(boxes1, boxes2))


@settings(max_examples=60, deadline=None)
@given(box_tensors(min_size=0.01, min_n=1))
def test_iou_with_itself_is_one(boxes):
    assert (cb.box_iou(boxes, boxes).diagonal() == 1).all()


@settings(max_examples=80, deadline=None)
@given(box_tensors(), box_tensors())
def test_giou_below_iou_and_bounded(boxes1, boxes2):
    giou, iou = cb.generalized_box_iou(boxes1, boxes2), cb.box_iou(boxes1, boxes2)
    assert (giou <= iou + 1e-12).all()  # float64 rounding of C - union
    assert ((giou >= -1) & (giou <= 1)).all()


@st.composite
def nms_problems(draw):
    boxes = draw(box_tensors(max_n=25))
    scores = torch.tensor(draw(st.lists(st.integers(0, 5), min_size=len(boxes), max_size=len(boxes))),
                          dtype=torch.float64)
    idxs = torch.tensor(draw(st.lists(st.integers(0, 3), min_size=len(boxes), max_size=len(boxes))),
                        dtype=torch.int64)
    threshold = draw(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]) | st.floats(0, 1))
    return boxes, scores, idxs, threshold


@settings(max_examples=100, deadline=None)
@given(nms_problems())
def test_nms_properties(problem):
    boxes, scores, _, threshold = problem
    keep = cb.nms(boxes, scores, threshold)
    kept = keep.tolist()
    assert len(set(kept)) == len(kept) and all(0 <= i < len(boxes) for i in kept)
    assert (scores[keep].diff() <= 0).all()  # decreasing score
    iou = cb.box_iou(boxes[keep], boxes[keep])
    assert not (iou.triu(diagonal=1) > threshold).any()  # no kept pair above the threshold
    for i in set(range(len(boxes))) - set(kept):  # each dropped box overlaps some kept box
        assert (cb.box_iou(boxes[[i]], boxes[keep])[0] > threshold).any()
    assert torch.equal(keep, tv.nms(boxes, scores, threshold))


@settings(max_examples=100, deadline=None)
@given(nms_problems())
def test_batched_nms_is_union_of_per_class_nms(problem):
    boxes, scores, idxs, threshold = problem
    keep = cb.batched_nms(boxes, scores, idxs, threshold)
    assert keep.tolist() == per_class_nms(boxes, scores, idxs, threshold, cb.nms)
