"""course_utils.data: seeded synthetic scenes, their target format and invariants, COCO export/import.

Cross-checked against torchvision.ops.masks_to_boxes / box_iou and pycocotools (COCO, mask, COCOeval).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader
from torchvision.ops import box_iou
from torchvision.ops import masks_to_boxes as tv_masks_to_boxes

from course_utils.data import (
    three_cats,
    ALL_CLASSES,
    DIGITS,
    SHAPES,
    SyntheticScenes,
    collate_detection,
    from_coco,
    make_scene,
    masks_to_boxes,
    rle_decode,
    rle_encode,
    to_coco,
)

pytestmark = pytest.mark.filterwarnings(  # raised inside pycocotools.mask.decode under NumPy 2
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

TARGET_KEYS = {"boxes", "labels", "masks", "semantic_mask", "area", "iscrowd", "image_id"}


def assert_scenes_equal(a, b) -> None:
    assert torch.equal(a[0], b[0])
    assert a[1].keys() == b[1].keys()
    for key in a[1]:
        assert torch.equal(a[1][key], b[1][key]), key


def check_scene(image, target, *, image_size=128, classes=SHAPES, num_objects=(1, 4), object_size=(16, 48), image_id=0):
    """Every invariant the module docstring promises, for one scene."""
    n = len(target["labels"])
    h = w = image_size
    assert set(target) == TARGET_KEYS
    # formats and dtypes
    assert image.dtype == torch.float32 and image.shape == (3, h, w)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (n, 4)
    assert target["labels"].dtype == torch.int64 and target["labels"].shape == (n,)
    assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (n, h, w)
    assert target["semantic_mask"].dtype == torch.int64 and target["semantic_mask"].shape == (h, w)
    assert target["area"].dtype == torch.float32 and target["area"].shape == (n,)
    assert target["iscrowd"].dtype == torch.int64 and torch.equal(target["iscrowd"], torch.zeros(n, dtype=torch.int64))
    assert target["image_id"].dtype == torch.int64 and target["image_id"].ndim == 0 and int(target["image_id"]) == image_id
    # object count (never more than asked; fewer only when they do not fit)
    assert n <= num_objects[1]
    # labels: 1 + index into classes, 0 kept for the background
    assert bool(((target["labels"] >= 1) & (target["labels"] <= len(classes))).all())
    masks = target["masks"]
    assert bool((masks <= 1).all())
    if n == 0:
        assert not bool(target["semantic_mask"].any())
        return
    # masks: non-empty (no object is fully hidden), disjoint (occlusion leaves one owner per pixel)
    assert bool(masks.flatten(1).any(1).all())
    assert bool((masks.sum(0, dtype=torch.int32) <= 1).all())
    # every visible mask fits in an object patch no larger than the biggest object size
    boxes = target["boxes"]
    assert bool((boxes[:, 2:] - boxes[:, :2] <= object_size[1]).all())
    # boxes: tight around the mask, in pixel-edge coordinates
    torch.testing.assert_close(boxes, tv_masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0]), rtol=0, atol=0)
    for box, mask in zip(boxes.long().tolist(), masks.bool()):
        x1, y1, x2, y2 = box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        inside = torch.zeros_like(mask)
        inside[y1:y2, x1:x2] = True
        assert not bool((mask & ~inside).any())  # nothing outside the box
        assert bool(mask[y1, x1:x2].any()) and bool(mask[y2 - 1, x1:x2].any())  # touches top and bottom edges
        assert bool(mask[y1:y2, x1].any()) and bool(mask[y1:y2, x2 - 1].any())  # touches left and right edges
    # area = mask pixels
    torch.testing.assert_close(target["area"], masks.flatten(1).sum(1).float(), rtol=0, atol=0)
    # semantic mask = each instance's label on its pixels, background elsewhere
    expected = (masks.long() * target["labels"][:, None, None]).sum(0)
    assert torch.equal(target["semantic_mask"], expected)


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_scene():
    assert_scenes_equal(make_scene(7), make_scene(7))
    assert_scenes_equal(make_scene(7, image_size=64, classes=DIGITS), make_scene(7, image_size=64, classes=DIGITS))


def test_scenes_do_not_depend_on_or_change_the_global_random_state():
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    first = make_scene(3)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    second = make_scene(3)
    assert_scenes_equal(first, second)
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    make_scene(3)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]


def test_different_seeds_give_different_scenes():
    images = [make_scene(s, image_size=48)[0] for s in range(6)]
    assert all(not torch.equal(images[i], images[j]) for i in range(6) for j in range(i + 1, 6))


def test_dataset_items_do_not_depend_on_access_order():
    a = SyntheticScenes(6, seed=3, image_size=48)
    b = SyntheticScenes(6, seed=3, image_size=48)
    forward = [a[i] for i in range(6)]
    backward = [b[i] for i in reversed(range(6))][::-1]
    for x, y in zip(forward, backward):
        assert_scenes_equal(x, y)
    assert_scenes_equal(a[2], forward[2])  # repeated access
    assert_scenes_equal(a[-1], forward[5])
    for i in range(6):
        assert int(forward[i][1]["image_id"]) == i
    # items differ from one another, and from another seed's
    c = SyntheticScenes(6, seed=4, image_size=48)
    assert all(not torch.equal(forward[i][0], forward[j][0]) for i in range(6) for j in range(i + 1, 6))
    assert all(not torch.equal(forward[i][0], c[i][0]) for i in range(6))


def test_dataset_through_a_dataloader_matches_direct_access():
    scenes = SyntheticScenes(5, seed=1, image_size=40, object_size=(8, 16))
    images, targets = [], []
    for batch_images, batch_targets in DataLoader(scenes, batch_size=2, collate_fn=collate_detection):
        images += batch_images
        targets += batch_targets
    assert len(images) == len(targets) == 5
    for i in range(5):
        assert_scenes_equal((images[i], targets[i]), scenes[i])


def test_dataset_attributes():
    scenes = SyntheticScenes(3, classes=("cross", "digit 7"))
    assert len(scenes) == 3
    assert scenes.class_names == ("background", "cross", "digit 7")


# --------------------------------------------------------------------------- invariants


def test_default_scenes_have_every_documented_property():
    counts = set()
    for seed in range(24):
        image, target = make_scene(seed)
        check_scene(image, target)
        assert 1 <= len(target["labels"]) <= 4  # the defaults always fit
        counts.add(len(target["labels"]))
    assert counts == {1, 2, 3, 4}


def test_dataset_scenes_have_every_documented_property():
    scenes = SyntheticScenes(12, seed=5, image_size=64, classes=ALL_CLASSES, object_size=(10, 30))
    for i in range(len(scenes)):
        check_scene(*scenes[i], image_size=64, classes=ALL_CLASSES, object_size=(10, 30), image_id=i)


def test_digit_classes():
    labels = []
    for seed in range(15):
        image, target = make_scene(seed, image_size=64, classes=DIGITS, object_size=(14, 28))
        check_scene(image, target, image_size=64, classes=DIGITS, object_size=(14, 28))
        labels += target["labels"].tolist()
    assert len(set(labels)) >= 6  # many different digits show up
    assert max(labels) <= 10


def test_each_class_is_drawn_as_asked():
    for name in ALL_CLASSES:
        _, target = make_scene(0, image_size=40, classes=(name,), num_objects=(2, 2), object_size=(12, 20))
        assert target["labels"].tolist() == [1, 1]


def test_single_object_is_the_unoccluded_shape_patch():
    """One object of the 'square' class: its mask is a solid square of about 80 % of its side."""
    for seed in range(10):
        _, target = make_scene(seed, image_size=64, classes=("square",), num_objects=(1, 1), object_size=(20, 20))
        x1, y1, x2, y2 = target["boxes"][0].tolist()
        assert x2 - x1 == y2 - y1 == 16  # |u| <= 0.8 of a 20-pixel patch keeps its 16 middle pixels
        assert float(target["area"][0]) == 16 * 16


def test_max_overlap_zero_gives_disjoint_boxes():
    for seed in range(30):
        _, target = make_scene(seed, image_size=48, num_objects=(3, 6), object_size=(8, 20), max_overlap=0.0)
        boxes = target["boxes"]
        iou = box_iou(boxes, boxes)
        assert torch.equal(iou - torch.diag(torch.diag(iou)), torch.zeros_like(iou))


@pytest.mark.parametrize("max_overlap", [0.05, 0.2, 0.5])
def test_max_overlap_bounds_the_overlap_of_the_object_patches(max_overlap):
    """Placed patches (s×s squares) have IoU <= t, i.e. intersect on at most 2 t s² / (1 + t) pixels.

    Visible boxes lie inside their patches, so their intersections obey the same bound (their IoU
    itself is not bounded: occlusion shrinks a box and can raise its IoU).
    """
    s = 16
    bound = 2 * max_overlap * s * s / (1 + max_overlap)
    largest = 0.0
    for seed in range(40):
        _, target = make_scene(seed, image_size=40, num_objects=(4, 6), object_size=(s, s), max_overlap=max_overlap)
        b = target["boxes"]
        wh = (torch.min(b[:, None, 2:], b[None, :, 2:]) - torch.max(b[:, None, :2], b[None, :, :2])).clamp(min=0)
        inter = wh.prod(-1)
        inter.fill_diagonal_(0)
        largest = max(largest, float(inter.max()))
    assert largest <= bound
    assert largest > 0  # overlaps do happen: the bound is what limits them


def test_max_overlap_one_allows_overlaps_beyond_a_small_bound():
    """Control for the test above: with max_overlap=1 the intersections exceed the bound for t = 0.05."""
    s = 16
    largest = 0.0
    for seed in range(20):
        _, target = make_scene(seed, image_size=40, num_objects=(4, 6), object_size=(s, s), max_overlap=1.0)
        b = target["boxes"]
        wh = (torch.min(b[:, None, 2:], b[None, :, 2:]) - torch.max(b[:, None, :2], b[None, :, :2])).clamp(min=0)
        largest = max(largest, float((wh.prod(-1) - torch.diag(wh.prod(-1).diag())).max()))
    assert largest > 2 * 0.05 * s * s / 1.05


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    image_size=st.integers(8, 72),
    classes=st.lists(st.sampled_from(ALL_CLASSES), min_size=1, max_size=6, unique=True),
    lo_n=st.integers(0, 3),
    extra_n=st.integers(0, 3),
    size_fracs=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
    max_overlap=st.floats(0.0, 1.0),
)
def test_scene_properties_hold_for_any_options(seed, image_size, classes, lo_n, extra_n, size_fracs, max_overlap):
    lo_s = 1 + int(size_fracs[0] * (image_size - 1))
    hi_s = lo_s + int(size_fracs[1] * (image_size - lo_s))
    options = dict(image_size=image_size, classes=classes, num_objects=(lo_n, lo_n + extra_n), object_size=(lo_s, hi_s))
    image, target = make_scene(seed, max_overlap=max_overlap, image_id=seed % 1000, **options)
    check_scene(image, target, image_id=seed % 1000, **options)


def test_tiny_objects_never_give_empty_masks():
    """Digits, crosses and diamonds only a few pixels wide can draw nothing: such objects are skipped."""
    for seed in range(30):
        for classes in (DIGITS, ("diamond", "cross")):
            image, target = make_scene(seed, image_size=16, classes=classes, num_objects=(1, 3), object_size=(1, 3))
            check_scene(image, target, image_size=16, classes=classes, num_objects=(1, 3), object_size=(1, 3))


def test_no_objects():
    image, target = make_scene(0, image_size=20, num_objects=(0, 0), object_size=(4, 8))
    check_scene(image, target, image_size=20, num_objects=(0, 0), object_size=(4, 8))
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 20, 20)


# --------------------------------------------------------------------------- masks_to_boxes, collate


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 4), st.integers(1, 15), st.integers(1, 15))))
def test_masks_to_boxes_is_torchvision_plus_one(masks):
    masks = torch.from_numpy(masks)
    masks[:, 0, 0] |= ~masks.flatten(1).any(1)  # no empty mask
    expected = tv_masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert torch.equal(masks_to_boxes(masks.to(torch.uint8)), expected)


def test_masks_to_boxes_edge_cases():
    one = torch.zeros(1, 5, 7, dtype=torch.uint8)
    one[0, 4, 6] = 1
    assert masks_to_boxes(one).tolist() == [[6.0, 4.0, 7.0, 5.0]]
    assert masks_to_boxes(torch.ones(1, 5, 7)).tolist() == [[0.0, 0.0, 7.0, 5.0]]
    assert masks_to_boxes(torch.zeros(0, 5, 7)).shape == (0, 4)
    with pytest.raises(ValueError, match="empty mask"):
        masks_to_boxes(torch.zeros(2, 5, 7))
    with pytest.raises(ValueError, match="masks"):
        masks_to_boxes(torch.ones(5, 7))
    with pytest.raises(TypeError, match="masks"):
        masks_to_boxes(np.ones((1, 5, 7)))


def test_collate_detection():
    samples = [make_scene(s, image_size=24, object_size=(4, 8)) for s in range(3)]
    images, targets = collate_detection(samples)
    assert isinstance(images, list) and isinstance(targets, list)
    assert all(images[i] is samples[i][0] and targets[i] is samples[i][1] for i in range(3))
    # images of different sizes are fine (no stacking)
    small, large = make_scene(0, image_size=24, object_size=(4, 8)), make_scene(0, image_size=32, object_size=(4, 8))
    mixed = collate_detection([small, large])
    assert [im.shape[-1] for im in mixed[0]] == [24, 32]


# --------------------------------------------------------------------------- COCO


@pytest.fixture(scope="module")
def samples():
    scenes = SyntheticScenes(6, seed=11, image_size=48, classes=ALL_CLASSES, num_objects=(1, 4), object_size=(8, 24))
    return [scenes[i] for i in range(len(scenes))], scenes.class_names


def test_coco_round_trip(samples):
    items, class_names = samples
    coco = json.loads(json.dumps(to_coco(items, class_names)))  # plain JSON, nothing numpy/torch inside
    assert [c["name"] for c in coco["categories"]] == list(class_names[1:])
    assert [c["id"] for c in coco["categories"]] == list(range(1, len(class_names)))
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"]) == sum(len(t["labels"]) for _, t in items)
    back = from_coco(coco)
    assert len(back) == len(items)
    for (image, target), restored in zip(items, back):
        for key in ("boxes", "labels", "masks", "area", "iscrowd", "image_id"):
            assert restored[key].dtype == target[key].dtype, key
            assert torch.equal(restored[key], target[key]), key


def test_coco_round_trip_keeps_masks_for_an_image_without_objects(samples):
    items, class_names = samples
    image, target = items[0]
    empty = {k: (v[:0] if k in ("boxes", "labels", "masks", "area", "iscrowd") else v) for k, v in target.items()}
    empty["image_id"] = torch.tensor(99)
    back = from_coco(to_coco([items[1], (image, empty)], class_names))
    assert back[1]["masks"].shape == (0, *image.shape[-2:]) and back[1]["masks"].dtype == torch.uint8
    assert back[1]["boxes"].shape == (0, 4)


def test_coco_export_is_read_by_pycocotools(samples):
    items, class_names = samples
    gt = COCO()
    gt.dataset = to_coco(items, class_names)
    gt.createIndex()
    assert sorted(gt.getImgIds()) == [int(t["image_id"]) for _, t in items]
    for image, target in items:
        ann_ids = gt.getAnnIds(imgIds=[int(target["image_id"])])
        anns = gt.loadAnns(ann_ids)
        assert [a["category_id"] for a in anns] == target["labels"].tolist()
        for ann, mask, box, area in zip(anns, target["masks"], target["boxes"], target["area"]):
            assert np.array_equal(gt.annToMask(ann), mask.numpy())
            x, y, w, h = ann["bbox"]
            assert [x, y, x + w, y + h] == box.tolist()
            # pycocotools' own area and box of the RLE agree with ours
            rle = gt.annToRLE(ann)
            assert float(mask_utils.area(rle)) == float(area)
            assert mask_utils.toBbox(rle).tolist() == ann["bbox"]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_cocoeval_of_the_ground_truth_against_itself_is_perfect(samples, iou_type, capsys):
    items, class_names = samples
    gt = COCO()
    gt.dataset = to_coco(items, class_names)
    gt.createIndex()
    detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]),
         "segmentation": dict(a["segmentation"]), "score": 1.0}
        for a in gt.dataset["annotations"]
    ]
    evaluator = COCOeval(gt, gt.loadRes(detections), iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]
    assert evaluator.stats[1] == pytest.approx(1.0)  # AP@.5
    assert evaluator.stats[8] == pytest.approx(1.0)  # AR@100


def test_from_coco_rejects_bad_input():
    with pytest.raises(ValueError, match="images"):
        from_coco({"annotations": []})
    with pytest.raises(ValueError, match="image_id"):
        from_coco({"images": [{"id": 1, "height": 2, "width": 2}], "annotations": [{"id": 5, "image_id": 2, "bbox": [0, 0, 1, 1],
                                                                                    "category_id": 1, "area": 1}]})


# --------------------------------------------------------------------------- RLE


def assert_rle_matches_pycocotools(mask: np.ndarray) -> None:
    ours = rle_encode(torch.from_numpy(mask))
    h, w = mask.shape
    assert ours["size"] == [h, w]
    assert sum(ours["counts"]) == h * w
    reference = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    compressed = mask_utils.frPyObjects(ours, h, w)  # pycocotools' reading of our uncompressed RLE
    assert compressed["counts"] == reference["counts"]
    assert np.array_equal(mask_utils.decode(compressed), mask.astype(np.uint8))
    assert np.array_equal(rle_decode(ours).numpy(), mask.astype(np.uint8))
    assert rle_decode(ours).dtype == torch.uint8


@settings(max_examples=100, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 16), st.integers(1, 16))))
def test_rle_encode_matches_pycocotools(mask):
    assert_rle_matches_pycocotools(mask)


def test_rle_edge_cases():
    empty = np.zeros((4, 6), dtype=bool)
    full = np.ones((4, 6), dtype=bool)
    first = empty.copy()
    first[0, 0] = True
    last = empty.copy()
    last[-1, -1] = True
    column = empty.copy()
    column[:, 2] = True  # one run in column-major order
    row = empty.copy()
    row[1, :] = True  # one pixel per column
    for mask in (empty, full, first, last, column, row, np.ones((1, 1), bool), np.zeros((1, 1), bool)):
        assert_rle_matches_pycocotools(mask)
    assert rle_encode(torch.from_numpy(empty))["counts"] == [24]
    assert rle_encode(torch.from_numpy(full))["counts"] == [0, 24]  # COCO counts always start with zeros
    assert rle_encode(torch.from_numpy(first))["counts"] == [0, 1, 23]
    assert rle_encode(torch.from_numpy(column))["counts"] == [8, 4, 12]


def test_rle_rejects_bad_input():
    with pytest.raises(ValueError, match="mask"):
        rle_encode(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="rle"):
        rle_decode({"size": [2, 2], "counts": "compressed"})
    with pytest.raises(ValueError, match="counts"):
        rle_decode({"size": [2, 2], "counts": [1, 2]})


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(image_size=0), ValueError, "image_size"),
        (dict(image_size=-8), ValueError, "image_size"),
        (dict(image_size=32.0), TypeError, "image_size"),
        (dict(classes=("circle", "hexagon")), ValueError, "classes"),
        (dict(classes=("circle", "circle")), ValueError, "classes"),
        (dict(classes="circle"), TypeError, "classes"),
        (dict(classes=()), TypeError, "classes"),
        (dict(object_size=(16, 200)), ValueError, "object_size"),
        (dict(object_size=(0, 8)), ValueError, "object_size"),
        (dict(object_size=(-4, 8)), ValueError, "object_size"),
        (dict(object_size=(20, 10)), ValueError, "object_size"),
        (dict(object_size=16), TypeError, "object_size"),
        (dict(num_objects=(3, 1)), ValueError, "num_objects"),
        (dict(num_objects=(-1, 2)), ValueError, "num_objects"),
        (dict(num_objects=(1, 2, 3)), TypeError, "num_objects"),
        (dict(max_overlap=-0.1), ValueError, "max_overlap"),
        (dict(max_overlap=1.5), ValueError, "max_overlap"),
        (dict(max_overlap=float("nan")), ValueError, "max_overlap"),
        (dict(max_overlap="0.3"), TypeError, "max_overlap"),
    ],
)
def test_bad_options_are_rejected_with_the_argument_named(kwargs, error, name):
    with pytest.raises(error, match=name):
        make_scene(0, **kwargs)
    with pytest.raises(error, match=name):
        SyntheticScenes(4, **kwargs)  # at construction, not at the first access


@pytest.mark.parametrize(
    "seed, error", [(1.5, TypeError), ("1", TypeError), (True, TypeError), (None, TypeError), (-1, ValueError)]
)
def test_bad_seeds_are_rejected(seed, error):
    with pytest.raises(error, match="seed"):
        make_scene(seed)
    with pytest.raises(error, match="seed"):
        SyntheticScenes(4, seed=seed)


def test_dataset_rejects_bad_length_and_index():
    with pytest.raises(ValueError, match="length"):
        SyntheticScenes(0)
    scenes = SyntheticScenes(3, image_size=24, object_size=(4, 8))
    for index in (3, -4, 100):
        with pytest.raises(IndexError, match="index"):
            scenes[index]
    for index in (1.0, "0", True):
        with pytest.raises(TypeError, match="index"):
            scenes[index]


# --------------------------------------------------------------------------- the three cats


@pytest.mark.parametrize("image_size", [64, 128, 200])
@pytest.mark.parametrize("seed", [0, 5])
def test_three_cats_one_semantic_blob_for_two_touching_instances(seed, image_size):
    from scipy import ndimage

    image, target = three_cats(seed, image_size=image_size)
    check_scene(image, target, image_size=image_size, num_objects=(4, 4), object_size=(1, image_size))
    assert target["labels"].tolist() == [2, 1, 1, 1]  # a square, then three circles (SHAPES' labels)
    cats = target["labels"] == 1
    # three cat instances, but their class's pixels form only two connected blobs: two of them touch
    assert int(cats.sum()) == 3
    assert ndimage.label((target["semantic_mask"] == 1).numpy())[1] == 2
    assert all(ndimage.label(m.numpy())[1] == 1 for m in target["masks"])  # each instance is one piece


def test_three_cats_options():
    a, b = three_cats(1), three_cats(1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["masks"], b[1]["masks"])
    assert not torch.equal(three_cats(2)[0], a[0])  # the seed changes background and colours...
    assert torch.equal(three_cats(2)[1]["masks"], a[1]["masks"])  # ... not the layout
    _, alone = three_cats(other=None)
    assert alone["labels"].tolist() == [1, 1, 1]
    _, digits = three_cats(cat="digit 3", other="digit 8", classes=DIGITS)
    assert digits["labels"].tolist() == [9, 4, 4, 4]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(cat="dog"), ValueError, r"cat must be one of classes"),
        (dict(other="digit 1"), ValueError, r"other must be one of classes"),
        (dict(image_size=16), ValueError, r"image_size must be >= 32"),
        (dict(seed=-1), ValueError, r"seed"),
        (dict(classes="circle"), TypeError, r"classes must be a non-empty sequence"),
    ],
)
def test_three_cats_bad_input(kwargs, error, message):
    with pytest.raises(error, match=message):
        three_cats(**kwargs)
