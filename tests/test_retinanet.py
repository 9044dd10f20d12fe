"""course_utils.detection's RetinaNet against torchvision's RetinaNet holding the same weights.

Eval mode: the same detections (boxes and scores to 1e-4, same labels, same order) over random-weight
models, heads with and without GroupNorm, image sizes (multiples of 32 or not), batches, resizing,
the top-k and detections-per-image cuts, and the zoo's trained model on its test scenes. Training:
the two losses equal torchvision's (which has no random sampling), images without objects
included. Plus: the pyramid, the head's layout and prior init, the anchors, plain BCE when the
focal terms are off, ``assign_anchors``, bad input, a short run that learns, the lazy import.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import data, detection, zoo
from course_utils.detection.retinanet import (
    DEFAULT_ANCHOR_SIZES, RETINANET_LOSS_NAMES, FPNBackbone, RetinaNet, assign_anchors, to_torchvision,
)
from course_utils.training import fit

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-4
NUM_CLASSES = 4


def random_model(seed: int, *, width: int = 8, spread: float = 1.0, **kwargs) -> RetinaNet:
    """A seeded random-weight model whose scores vary enough to give many detections of every class."""
    torch.manual_seed(seed)
    kwargs.setdefault("score_thresh", 0.05)
    kwargs.setdefault("norm_groups", 4)
    model = RetinaNet(NUM_CLASSES, FPNBackbone(width), **kwargs)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):  # non-trivial eval-mode statistics
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
            if isinstance(module, nn.GroupNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        for layer in model.head.classification_head.conv.modules():
            if isinstance(layer, nn.Conv2d):
                layer.weight.normal_(0, 0.3 * spread)
        model.head.classification_head.cls_logits.weight.normal_(0, 0.3 * spread)
        model.head.classification_head.cls_logits.bias.uniform_(-3, -1)
        model.head.regression_head.bbox_reg.weight.normal_(0, 0.05 * spread)
    return model.eval()


def images_of(sizes, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=g) for h, w in sizes]


def assert_same_detections(ours, theirs) -> int:
    """Same number of detections per image, scores and boxes to ATOL, the same labels in the same order."""
    assert len(ours) == len(theirs)
    count = 0
    for a, b in zip(ours, theirs):
        assert set(a) == {"boxes", "labels", "scores"}
        assert a["labels"].dtype == torch.int64 and a["boxes"].dtype == a["scores"].dtype == torch.float32
        assert a["boxes"].shape == b["boxes"].shape, (a["boxes"].shape, b["boxes"].shape)
        torch.testing.assert_close(a["scores"], b["scores"], atol=ATOL, rtol=0)
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=ATOL, rtol=0)
        assert torch.equal(a["labels"], b["labels"])
        count += len(a["scores"])
    return count


@pytest.fixture(scope="module")
def scenes():
    samples = [data.make_scene(seed, classes=data.SHAPES[: NUM_CLASSES - 1]) for seed in range(4)]
    return [image for image, _ in samples], [{"boxes": t["boxes"], "labels": t["labels"]} for _, t in samples]


# ---------------------------------------------------------------- the parts


def test_pyramid_levels_have_one_width_and_mix_top_down():
    backbone = FPNBackbone(width=8, levels=3)
    assert backbone.out_channels == 8 and backbone.strides == [8, 16, 32]
    features = backbone.eval()(torch.rand(2, 3, 100, 128))
    assert list(features) == ["0", "1", "2"]
    assert [tuple(f.shape) for f in features.values()] == [(2, 8, 13, 16), (2, 8, 7, 8), (2, 8, 4, 4)]
    # the coarse stage reaches the fine level through the top-down path
    with torch.no_grad():
        before = backbone(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))["0"].clone()
        backbone.lateral[-1].weight.add_(1.0)
        after = backbone(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))["0"]
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("norm_groups", [None, 2])
def test_head_has_torchvisions_layout_and_prior_init(norm_groups):
    from torchvision.models.detection.retinanet import RetinaNetHead

    torch.manual_seed(0)
    model = RetinaNet(NUM_CLASSES, FPNBackbone(8), norm_groups=norm_groups, prior_probability=0.02)
    norm = None if norm_groups is None else (lambda c: nn.GroupNorm(norm_groups, c))
    reference = RetinaNetHead(8, 9, NUM_CLASSES, norm_layer=norm)
    ours, theirs = model.head.state_dict(), reference.state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)
    bias = model.head.classification_head.cls_logits.bias
    torch.testing.assert_close(torch.sigmoid(bias), torch.full_like(bias, 0.02))
    assert model.head.regression_head.bbox_reg.bias.abs().max() == 0
    conv = model.head.classification_head.conv[0][0]
    assert (conv.bias is None) == (norm_groups is not None)
    assert 0.005 < float(conv.weight.detach().std()) < 0.015


def test_default_anchors_cover_the_objects_three_scales_per_octave():
    assert [len(level) for level in DEFAULT_ANCHOR_SIZES] == [3, 3]
    assert DEFAULT_ANCHOR_SIZES[0][0] == 16 and DEFAULT_ANCHOR_SIZES[1][0] == 32
    assert DEFAULT_ANCHOR_SIZES[1][2] == pytest.approx(32 * 2 ** (2 / 3))
    assert RetinaNet(NUM_CLASSES).num_anchors_per_location == 9


def test_anchors_equal_torchvisions_generator():
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    model = random_model(0)
    batch = torch.zeros(2, 3, 96, 160)
    features = model.features(batch)
    ours = model.anchors(batch.shape[-2:], features)
    generator = AnchorGenerator(model.anchor_sizes, (model.aspect_ratios,) * 2)
    (theirs,) = generator(ImageList(batch[:1], [(96, 160)]), features)[:1]
    assert [len(a) for a in ours] == [12 * 20 * 9, 6 * 10 * 9]
    torch.testing.assert_close(torch.cat(ours), theirs, atol=0, rtol=0)


# ---------------------------------------------------------------- eval mode equals torchvision's


CASES = [
    dict(seed=0, sizes=[(128, 128)]),
    dict(seed=1, sizes=[(128, 128), (96, 120)]),  # padded batch, a size that is not a multiple of 32
    dict(seed=2, sizes=[(70, 90)], norm_groups=None),
    dict(seed=3, sizes=[(128, 128)] * 2, score_thresh=0.0, topk_candidates=50),  # the top-k cut binds
    dict(seed=4, sizes=[(128, 128)], detections_per_img=7, nms_thresh=0.3),
    dict(seed=5, sizes=[(100, 150), (64, 64)], min_size=96, max_size=160),  # torchvision's resize
    dict(seed=6, sizes=[(128, 128)], width=16, aspect_ratios=(1.0,), spread=0.5),
]


@pytest.mark.parametrize("case", CASES, ids=[f"seed{c['seed']}" for c in CASES])
def test_eval_outputs_equal_torchvisions(case):
    case = dict(case)
    seed, sizes = case.pop("seed"), case.pop("sizes")
    model = random_model(seed, **case)
    reference = to_torchvision(model).eval()
    images = images_of(sizes, seed)
    with torch.no_grad():
        count = assert_same_detections(model(images), reference(images))
    assert count > 0


def test_one_feature_map_backbone_equals_torchvision():
    torch.manual_seed(0)
    model = RetinaNet(NUM_CLASSES, detection.SmallBackbone(8), anchor_sizes=((16, 32),), norm_groups=None).eval()
    with torch.no_grad():
        model.head.classification_head.cls_logits.bias.fill_(-1.0)
        model.head.classification_head.cls_logits.weight.normal_(0, 0.3)
        images = images_of([(96, 96)], 0)
        assert assert_same_detections(model(images), to_torchvision(model).eval()(images)) > 0


def test_zoo_model_equals_torchvision_on_its_test_scenes():
    model = zoo.load("retinanet")
    reference = to_torchvision(model).eval()
    test_set = zoo.load_test_set("retinanet")
    images = [test_set[i][0] for i in range(12)]
    with torch.no_grad():
        assert assert_same_detections(model(images), reference(images)) >= 12


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("norm_groups", [None, 4])
def test_losses_equal_torchvisions(scenes, norm_groups):
    images, targets = scenes
    targets = targets[:3] + [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    model = random_model(1, norm_groups=norm_groups).train()
    reference = to_torchvision(model).train()
    ours, theirs = model(images, targets), reference(images, targets)
    assert tuple(ours) == RETINANET_LOSS_NAMES == tuple(theirs)
    for name in RETINANET_LOSS_NAMES:
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=1e-5)
    sum(ours.values()).backward()
    assert model.head.classification_head.cls_logits.weight.grad.abs().sum() > 0


def test_no_focusing_is_binary_cross_entropy(scenes):
    images, targets = scenes
    model = random_model(2, focal_gamma=0.0, focal_alpha=None)
    assigned = assign_anchors(model, images, targets)
    valid = assigned.matched != -2
    expected = torch.stack([
        F.binary_cross_entropy_with_logits(logits[v], cls[v], reduction="sum") / max(1, int((m >= 0).sum()))
        for logits, cls, v, m in zip(assigned.cls_logits, assigned.cls_targets, valid, assigned.matched)
    ]).mean()
    with torch.no_grad():  # the same eval-mode outputs as assign_anchors saw
        batch, checked = model.transform(images, targets)
        features = model.features(batch.tensors)
        outputs = model.head(features)
        anchors = torch.cat(model.anchors(batch.tensors.shape[-2:], features))
        bce = model.compute_loss(checked, outputs, anchors)["classification"]
        focal = random_model(2).compute_loss(checked, outputs, anchors)["classification"]
    torch.testing.assert_close(bce, expected, atol=1e-5, rtol=1e-5)
    assert focal < bce / 3  # the focal terms quiet the easy negatives


def test_assign_anchors_matches_as_the_loss(scenes):
    images, targets = scenes
    model = random_model(3)
    assigned = assign_anchors(model, images, targets)
    anchors_per_image = 16 * 16 * 9 + 8 * 8 * 9
    assert assigned.matched.shape == (4, anchors_per_image)
    assert assigned.cls_logits.shape == assigned.cls_targets.shape == (4, anchors_per_image, NUM_CLASSES)
    fractions = [assigned.fraction(kind) for kind in ("positive", "ignored", "background")]
    assert sum(fractions) == pytest.approx(1.0)
    assert fractions[2] > 0.9 and 0 < fractions[0] < 0.05
    # each matched anchor's target is its object's label; every object has at least one anchor
    for matched, cls_targets, target in zip(assigned.matched, assigned.cls_targets, targets):
        positive = matched >= 0
        assert torch.equal(cls_targets[positive].argmax(1), target["labels"][matched[positive]])
        assert cls_targets[~positive].sum() == 0
        assert set(matched[positive].tolist()) == set(range(len(target["boxes"])))
    assert model.training is False
    with pytest.raises(ValueError, match="kind must be one of"):
        assigned.fraction("negative")


def test_a_short_run_learns(scenes):
    images, targets = scenes
    torch.manual_seed(0)
    model = RetinaNet(NUM_CLASSES, FPNBackbone(8), norm_groups=4)
    loader = [(images, targets)] * 30
    before = sum(model.train()(images, targets).values()).item()
    fit(model, loader, None, torch.optim.AdamW(model.parameters(), lr=3e-3), epochs=1, progress=False)
    after = sum(model.train()(images, targets).values()).item()
    assert after < 0.6 * before, (before, after)


# ---------------------------------------------------------------- bad input and the twin


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(num_classes=1), ValueError, "num_classes must be >= 2"),
        (dict(num_classes=2.0), TypeError, "num_classes must be an int"),
        (dict(backbone=nn.ReLU()), TypeError, "backbone.out_channels"),
        (dict(backbone="resnet"), TypeError, "backbone must be a torch.nn.Module"),
        (dict(norm_groups=3), ValueError, "norm_groups .* must divide"),
        (dict(anchor_sizes=((16, 20), (32,))), ValueError, "same number of anchor sizes"),
        (dict(anchor_sizes=((16, -1.0),)), ValueError, r"anchor_sizes\[0\]"),
        (dict(aspect_ratios=()), TypeError, "aspect_ratios"),
        (dict(focal_gamma=-1.0), ValueError, "focal_gamma"),
        (dict(focal_alpha=1.5), ValueError, "focal_alpha"),
        (dict(prior_probability=0.0), ValueError, "prior_probability"),
        (dict(fg_iou_thresh=0.3, bg_iou_thresh=0.4), ValueError, "bg_iou_thresh"),
        (dict(topk_candidates=0), ValueError, "topk_candidates"),
    ],
)
def test_bad_settings_are_named(kwargs, error, match):
    kwargs = {"num_classes": NUM_CLASSES, **kwargs}
    with pytest.raises(error, match=match):
        RetinaNet(**kwargs)


def test_bad_inputs_are_named(scenes):
    images, targets = scenes
    model = random_model(0)
    with pytest.raises(ValueError, match=r"images\[0\] must have 3 channels"):
        model([torch.rand(1, 64, 64)])
    with pytest.raises(ValueError, match="images must be a list"):
        model(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="targets is required in training mode"):
        model.train()(images)
    model.eval()
    degenerate = [{"boxes": torch.tensor([[10.0, 10.0, 10.0, 30.0]]), "labels": torch.tensor([1])}]
    with pytest.raises(ValueError, match="degenerate"):
        model.train()(images[:1], degenerate)
    with pytest.raises(ValueError, match=r"out of range: labels must be in \[1, 4\)"):
        model.train()(images[:1], [{"boxes": targets[0]["boxes"], "labels": torch.full_like(targets[0]["labels"], 4)}])
    model = RetinaNet(NUM_CLASSES, FPNBackbone(8, levels=3), norm_groups=None)
    with pytest.raises(ValueError, match="returned 3 feature maps but anchor_sizes has 2 levels"):
        model.eval()(images[:1])
    with pytest.raises(TypeError, match="model must be a course_utils RetinaNet"):
        assign_anchors(nn.Conv2d(3, 3, 1), images, targets)


def test_to_torchvision_keeps_the_mode_and_dispatches():
    from torchvision.models.detection import RetinaNet as TorchvisionRetinaNet

    model = random_model(0).train()
    twin = detection.to_torchvision(model)
    assert isinstance(twin, TorchvisionRetinaNet) and twin.training
    assert twin.backbone is not model.backbone
    assert not to_torchvision(model.eval()).training
    with pytest.raises(TypeError, match="model must be a course_utils FasterRCNN, MaskRCNN or RetinaNet"):
        detection.to_torchvision(nn.Conv2d(3, 3, 1))
    with pytest.raises(TypeError, match="model must be a course_utils RetinaNet"):
        to_torchvision(detection.FasterRCNN(num_classes=3))


def test_never_imports_torchvision_detection():
    code = (
        "import sys, torch\n"
        "from course_utils.detection.retinanet import RetinaNet, FPNBackbone, to_torchvision\n"
        "m = RetinaNet(3, FPNBackbone(8), norm_groups=4)\n"
        "m.train()([torch.rand(3, 64, 64)], [{'boxes': torch.tensor([[4.0, 4.0, 30.0, 30.0]]), 'labels': torch.tensor([1])}])\n"
        "m.eval()([torch.rand(3, 64, 64)])\n"
        "assert 'torchvision.models.detection' not in sys.modules, sorted(sys.modules)\n"
        "to_torchvision(m)\n"
        "assert 'torchvision.models.detection' in sys.modules  # the check above can fail\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_prior_bias_is_the_log_odds():
    model = RetinaNet(NUM_CLASSES, FPNBackbone(8), prior_probability=0.01)
    assert float(model.head.classification_head.cls_logits.bias.detach()[0]) == pytest.approx(-math.log(99))
