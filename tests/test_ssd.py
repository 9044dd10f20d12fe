"""course_utils.detection.ssd: torchvision's SSD on the course's backbone. Default boxes against the SSD
formula and the anchor generator, hard-negative mining against SSD.compute_loss, the input/output
contract, argument errors, a short run that learns, and the lazy import of torchvision's detection code."""

import math
import subprocess
import sys

import pytest
import torch

from course_utils import data
from course_utils.detection.ssd import (
    SSD_LOSS_NAMES, SSDBackbone, build_ssd, default_boxes, default_scales, hard_negatives,
)

pytestmark = pytest.mark.usefixtures("one_thread")

NUM_CLASSES = 4


def _model(**kwargs):
    torch.manual_seed(0)
    return build_ssd(NUM_CLASSES, width=8, **kwargs)


@pytest.fixture(scope="module")
def scenes():
    samples = [data.make_scene(seed, classes=data.SHAPES[: NUM_CLASSES - 1]) for seed in range(3)]
    return [image for image, _ in samples], [{"boxes": t["boxes"], "labels": t["labels"]} for _, t in samples]


def _formula_boxes(image_size, strides, scales, ratios):
    """SSD's default boxes written out: per map, per cell (row, then column), the boxes of side s_k,
    √(s_k s_k+1), then s_k·√r × s_k/√r and its transpose per ratio; sides clipped to the image."""
    boxes = []
    for k, stride in enumerate(strides):
        cells = math.ceil(image_size / stride)
        s, s_next = scales[k], scales[k + 1]
        sides = [(s, s), (math.sqrt(s * s_next),) * 2]
        for r in ratios[k]:
            sides += [(s * math.sqrt(r), s / math.sqrt(r)), (s / math.sqrt(r), s * math.sqrt(r))]
        for row in range(cells):
            for col in range(cells):
                cx, cy = (col + 0.5) / cells * image_size, (row + 0.5) / cells * image_size
                for w, h in sides:
                    w, h = min(w, 1.0) * image_size, min(h, 1.0) * image_size
                    boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return torch.tensor(boxes)


# ---------------------------------------------------------------- backbone and builder


def test_backbone_feature_maps():
    backbone = SSDBackbone(width=8, feature_maps=3)
    assert backbone.out_channels == [8, 16, 32] and backbone.strides == [8, 16, 32]
    features = backbone(torch.rand(2, 3, 100, 128))
    assert list(features) == ["0", "1", "2"]
    assert [tuple(f.shape) for f in features.values()] == [(2, 8, 13, 16), (2, 16, 7, 8), (2, 32, 4, 4)]


def test_builder_returns_torchvision_ssd():
    from torchvision.models.detection.ssd import SSD

    model = _model()
    assert isinstance(model, SSD) and isinstance(model.backbone, SSDBackbone)
    assert model.transform.fixed_size == (128, 128)
    assert model.anchor_generator.scales == [0.125, 0.25, 0.5] == list(default_scales(2))
    assert model.anchor_generator.num_anchors_per_location() == [4, 4]
    assert model.neg_to_pos_ratio == 3.0
    assert model.head.classification_head.num_columns == NUM_CLASSES
    assert (model.score_thresh, model.nms_thresh, model.detections_per_img) == (0.01, 0.45, 100)
    assert list(model.transform.image_mean) == pytest.approx([0.485, 0.456, 0.406])


@pytest.mark.parametrize(
    "kwargs, counts",
    [
        ({}, [16 * 16 * 4, 8 * 8 * 4]),
        ({"image_size": 96, "feature_maps": 3, "aspect_ratios": [[2.0], [2.0, 3.0], []]}, [12 * 12 * 4, 6 * 6 * 6, 3 * 3 * 2]),
        ({"image_size": 64, "feature_maps": 1, "aspect_ratios": (), "scales": (0.3, 0.6)}, [8 * 8 * 2]),
    ],
)
def test_default_boxes_follow_the_ssd_formula(kwargs, counts):
    model = _model(**kwargs)
    boxes, got_counts = default_boxes(model)
    assert got_counts == counts and boxes.shape == (sum(counts), 4)
    size, maps = kwargs.get("image_size", 128), kwargs.get("feature_maps", 2)
    ratios = kwargs.get("aspect_ratios", (2.0,))
    ratios = ratios if ratios and isinstance(ratios[0], list) else [list(ratios)] * maps
    scales = kwargs.get("scales", default_scales(maps))
    expected = _formula_boxes(size, [8 * 2**k for k in range(maps)], scales, ratios)
    torch.testing.assert_close(boxes, expected, atol=1e-4, rtol=0)
    assert model.training  # the probe forward left the mode as it was


def test_default_boxes_are_the_anchors_of_a_forward(scenes):
    model = _model().eval()
    seen = []
    model.anchor_generator.register_forward_hook(lambda module, args, output: seen.append(output))
    images, _ = scenes
    model(images[:2])
    boxes, _ = default_boxes(model)
    assert len(seen[0]) == 2
    for anchors in seen[0]:
        torch.testing.assert_close(anchors, boxes)


# ---------------------------------------------------------------- hard-negative mining


def _spy_compute_loss(model):
    """Record the arguments of every SSD.compute_loss call of ``model``."""
    calls = []
    original = model.compute_loss

    def spy(targets, head_outputs, anchors, matched_idxs):
        calls.append((targets, head_outputs, anchors, matched_idxs))
        return original(targets, head_outputs, anchors, matched_idxs)

    model.compute_loss = spy
    return calls


def test_matching_and_counts_are_those_of_a_training_step(scenes):
    images, targets = scenes
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    images, targets = images + [torch.rand(3, 128, 128)], targets + [empty]
    model = _model()
    mining = hard_negatives(model, images, targets)
    assert model.training
    calls = _spy_compute_loss(model)
    losses = model(images, targets)
    (_, head_outputs, anchors, matched_idxs), = calls
    logits = head_outputs["cls_logits"]
    cls_loss, num_positive = 0.0, 0
    for m, tv_matched, target, logits_i in zip(mining, matched_idxs, targets, logits):
        torch.testing.assert_close(m.matched, tv_matched, rtol=0, atol=0)
        positives = m.num_positives
        assert positives == int((tv_matched >= 0).sum())
        assert m.num_anchors == logits.shape[1] == 1280
        assert m.num_negatives == min(3 * positives, m.num_anchors - positives)
        # the training step's classification loss: its positives plus its 3·P highest-loss negatives
        classes = torch.zeros_like(tv_matched)
        classes[tv_matched >= 0] = target["labels"][tv_matched[tv_matched >= 0]]
        per_box = torch.nn.functional.cross_entropy(logits_i, classes, reduction="none")
        hardest = per_box[classes == 0].topk(m.num_negatives).values
        cls_loss = cls_loss + per_box[classes > 0].sum() + hardest.sum()
        num_positive += positives
    assert len(targets[0]["boxes"]) <= mining[0].num_positives  # every object has a default box
    assert (mining[-1].num_positives, mining[-1].num_negatives) == (0, 0)  # no object: nothing in the loss
    torch.testing.assert_close(losses["classification"], cls_loss / num_positive)


def test_hard_negatives_are_the_masks_of_compute_loss(scenes):
    images, targets = scenes
    model = _model().eval()
    mining = hard_negatives(model, images, targets)
    batch, resized = model.transform(images, targets)
    features = list(model.backbone(batch.tensors).values())
    head_outputs = model.head(features)
    losses = model.compute_loss(resized, head_outputs, model.anchor_generator(batch, features), [m.matched for m in mining])
    num_positive = sum(m.num_positives for m in mining)
    expected = sum(m.loss[m.positive].sum() + m.loss[m.negative].sum() for m in mining) / num_positive
    torch.testing.assert_close(losses["classification"], expected)
    for m in mining:
        assert not bool((m.positive & m.negative).any())
        assert bool((m.matched >= 0).eq(m.positive).all())
        # the kept negatives are the hardest ones
        assert float(m.loss[m.negative].min()) >= float(m.loss[~m.positive & ~m.negative].max())


def test_hard_negatives_checks_its_input(scenes):
    images, targets = scenes
    model = _model()
    with pytest.raises(TypeError, match="torchvision SSD"):
        hard_negatives(torch.nn.Linear(2, 2), images, targets)
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\]"):
        hard_negatives(model, images[:1], [{"boxes": targets[0]["boxes"], "labels": targets[0]["labels"] * 0 + NUM_CLASSES}])
    with pytest.raises(ValueError, match="targets has 3 entries"):
        hard_negatives(model, images[:2], targets)


# ---------------------------------------------------------------- input / output contract


def test_eval_output_contract():
    model = _model().eval()
    with torch.no_grad():
        outputs = model([torch.rand(3, 100, 150), torch.rand(3, 128, 128)])
    assert len(outputs) == 2
    for out, (h, w) in zip(outputs, [(100, 150), (128, 128)]):
        assert set(out) == {"boxes", "labels", "scores"}
        k = len(out["scores"])
        assert 0 < k <= 100 and out["boxes"].shape == (k, 4) and out["labels"].dtype == torch.int64
        assert bool(((out["labels"] >= 1) & (out["labels"] < NUM_CLASSES)).all())
        assert bool((out["scores"] > 0.01).all()) and bool((out["scores"].diff() <= 0).all())
        boxes = out["boxes"]
        assert bool((boxes[:, 2:] >= boxes[:, :2]).all())
        assert float(boxes[:, 0::2].max()) <= w and float(boxes[:, 1::2].max()) <= h


def test_training_losses_and_a_short_run_that_learns(scenes):
    images, targets = scenes
    model = _model()
    losses = model(images, targets)
    assert tuple(losses) == SSD_LOSS_NAMES
    assert all(v.ndim == 0 and bool(torch.isfinite(v)) for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.stages[0][0].weight.grad is not None
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = float(sum(losses.values()).detach())
    optimizer.step()
    for _ in range(15):
        optimizer.zero_grad()
        loss = sum(model(images, targets).values())
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.5 * first


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_classes": 1}, ValueError, "num_classes"),
        ({"num_classes": 2.0}, TypeError, "num_classes"),
        ({"num_classes": True}, TypeError, "num_classes"),
        ({"width": 0}, ValueError, "width"),
        ({"image_size": -128}, ValueError, "image_size"),
        ({"image_size": 128.0}, TypeError, "image_size"),
        ({"feature_maps": 0}, ValueError, "feature_maps"),
        ({"aspect_ratios": (2.0, -1.0)}, ValueError, r"aspect_ratios\[1\]"),
        ({"aspect_ratios": "2"}, TypeError, "aspect_ratios"),
        ({"aspect_ratios": [[2.0], [3.0], [2.0]]}, ValueError, "one list per feature map"),
        ({"scales": (0.1, 0.2)}, ValueError, "scales must have"),
        ({"scales": (0.1, 0.0, 0.4)}, ValueError, r"scales\[1\]"),
        ({"iou_thresh": 1.5}, ValueError, "iou_thresh"),
        ({"positive_fraction": 0.0}, ValueError, "positive_fraction"),
        ({"score_thresh": -0.1}, ValueError, "score_thresh"),
        ({"nms_thresh": 2}, ValueError, "nms_thresh"),
        ({"detections_per_img": 0}, ValueError, "detections_per_img"),
        ({"topk_candidates": 0}, ValueError, "topk_candidates"),
        ({"image_std": (0.2, 0.0, 0.2)}, ValueError, r"image_std\[1\]"),
        ({"image_mean": (0.5, 0.5)}, ValueError, "image_mean"),
    ],
)
def test_argument_errors(kwargs, error, match):
    kwargs = {"num_classes": NUM_CLASSES, **kwargs}
    with pytest.raises(error, match=match):
        build_ssd(**kwargs)


def test_helpers_reject_other_models():
    with pytest.raises(TypeError, match="torchvision SSD"):
        default_boxes(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="image_size"):
        default_boxes(_model(), image_size=0)


def test_importing_does_not_import_torchvision_detection():
    """torchvision's SSD is imported by build_ssd only, so importing the module keeps torchvision's detection code out."""
    code = (
        "import sys\n"
        "import course_utils.detection.ssd as ssd\n"
        "assert 'torchvision.models.detection' not in sys.modules, sorted(sys.modules)\n"
        "ssd.build_ssd(3)\n"
        "assert 'torchvision.models.detection' in sys.modules  # the check above can fail\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
