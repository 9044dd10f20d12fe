"""course_utils.detection's FasterRCNN (and its modules) against torchvision's FasterRCNN holding the same weights.

Eval mode: same detections (boxes and scores to 1e-4, same labels, same order) over random-weight
models, image sizes (multiples of 32 or not) and batches; the RPN's proposals are the same
numbers. Training mode: the four losses equal torchvision's under the same random state (the
course samples anchors and RoIs with the same calls to torch's generator, in the same order),
and also with sampling switched off (every anchor and RoI used), whatever the random state.
"""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
from torch import nn

from course_utils.data import SyntheticScenes, collate_detection
from course_utils.detection import faster_rcnn as fr
from course_utils.detection.backbone import SmallBackbone
from course_utils.detection.faster_rcnn import FasterRCNN, to_torchvision
from course_utils.detection.roi_heads import infer_spatial_scale
from course_utils.training import fit

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-4


def random_model(seed: int, num_classes: int = 6, *, spread: float = 1.0, **kwargs) -> FasterRCNN:
    """A seeded random-weight model whose scores vary enough to give many detections of every class."""
    torch.manual_seed(seed)
    kwargs.setdefault("box_score_thresh", 0.0)
    model = FasterRCNN(num_classes=num_classes, **kwargs)
    with torch.no_grad():
        for module in model.backbone.modules():
            if isinstance(module, nn.BatchNorm2d):  # non-trivial eval-mode statistics
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
        model.rpn.head.cls_logits.weight.normal_(0, 0.5 * spread)
        model.rpn.head.bbox_pred.weight.normal_(0, 0.2 * spread)
        model.roi_heads.box_predictor.cls_score.weight.normal_(0, 0.3 * spread)
        model.roi_heads.box_predictor.bbox_pred.weight.normal_(0, 0.1 * spread)
    return model.eval()


def images_of(sizes, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=g) for h, w in sizes]


def tie_groups(scores: list[float], tie: float) -> list[tuple[int, int]]:
    """Runs [start, end) of decreasing scores whose neighbours differ by at most ``tie``."""
    groups, start = [], 0
    for i in range(1, len(scores) + 1):
        if i == len(scores) or scores[i - 1] - scores[i] > tie:
            groups.append((start, i))
            start = i
    return groups


def assert_same_detections(ours, theirs, detections_per_img: int = 100, tie: float = 1e-6) -> int:
    """Same number of detections, scores to ATOL, and the same labels and boxes (to ATOL) in the same order.

    The one allowance: detections whose scores tie to within ``tie`` may come in either order
    (and a tie cut by ``detections_per_img`` may be cut differently). RoIAlign sums its samples in
    another order than torchvision's kernel, so scores differ by ~1e-8, which can swap two
    detections whose scores are that close (as happens in flat image regions). Returns the
    number of detections compared.
    """
    assert len(ours) == len(theirs)
    count = 0
    for a, b in zip(ours, theirs):
        assert set(a) == {"boxes", "labels", "scores"}
        assert a["labels"].dtype == torch.int64 and a["boxes"].dtype == a["scores"].dtype == torch.float32
        assert a["boxes"].shape == b["boxes"].shape, (a["boxes"].shape, b["boxes"].shape)
        torch.testing.assert_close(a["scores"], b["scores"], atol=ATOL, rtol=0)
        for start, end in tie_groups(b["scores"].tolist(), tie):
            if end - start > 1 and end == len(b["scores"]) == detections_per_img:
                continue  # a tie cut at the last place: which of the tied ones made it is arbitrary
            if end - start == 1:
                assert int(a["labels"][start]) == int(b["labels"][start]), start
                torch.testing.assert_close(a["boxes"][start], b["boxes"][start], atol=ATOL, rtol=0)
            else:
                group_a = sorted(zip(a["labels"][start:end].tolist(), a["boxes"][start:end].tolist()))
                group_b = sorted(zip(b["labels"][start:end].tolist(), b["boxes"][start:end].tolist()))
                assert [g[0] for g in group_a] == [g[0] for g in group_b], (start, end)
                torch.testing.assert_close(
                    torch.tensor([g[1] for g in group_a]), torch.tensor([g[1] for g in group_b]), atol=ATOL, rtol=0
                )
        count += len(a["boxes"])
    return count


BATCHES = [
    [(128, 128)],
    [(128, 128), (100, 77)],  # not multiples of 32: padded to 128 x 128
    [(96, 160), (130, 70), (64, 64)],  # padded to 160 x 160
]

MODELS = {
    "default": dict(seed=0),
    "2 classes, 1 ratio, wide head": dict(seed=1, num_classes=2, aspect_ratios=(1.0,), representation_size=64),
    "4 classes, more anchors, strict NMS": dict(
        seed=2,
        num_classes=4,
        anchor_sizes=(12, 24, 40, 64),
        rpn_nms_thresh=0.5,
        box_nms_thresh=0.3,
        rpn_post_nms_top_n_test=50,
    ),
    "resize 112..160, score 0.01": dict(
        seed=3, min_size=112, max_size=160, box_score_thresh=0.01, box_detections_per_img=40
    ),
    "narrow backbone, sharp scores": dict(
        seed=4, backbone=SmallBackbone(width=16), spread=3.0, box_roi_sampling_ratio=-1
    ),
}


@pytest.mark.parametrize("config", MODELS.values(), ids=MODELS.keys())
def test_eval_detections_equal_torchvision(config):
    config = dict(config)
    model = random_model(config.pop("seed"), **config)
    tv = to_torchvision(model)
    assert not tv.training
    total = 0
    with torch.no_grad():
        for i, sizes in enumerate(BATCHES):
            images = images_of(sizes, seed=10 + i)
            total += assert_same_detections(model(images), tv(images), model.roi_heads.detections_per_img)
    assert total >= 50  # the comparison is not vacuous


@pytest.mark.parametrize("seed", [0, 9])
def test_eval_detections_equal_torchvision_on_scenes(seed):
    """The course's own scenes (flat backgrounds: near-tied scores happen, see assert_same_detections)."""
    model = random_model(100 + seed, num_classes=2 + seed % 5)
    tv = to_torchvision(model)
    data = SyntheticScenes(6, seed=9)
    with torch.no_grad():
        for start in (0, 3):
            images = [data[i][0] for i in range(start, start + 3)]
            assert assert_same_detections(model(images), tv(images), model.roi_heads.detections_per_img) > 0


def rpn_proposals(model, images, targets=None):
    """The course's and torchvision's RPN proposals for the same images (and targets, in training)."""
    with torch.no_grad():
        batch, checked = model.transform(images, targets)
        ours = model.rpn(batch, model.backbone(batch.tensors), checked)[0]
    return batch, ours


def tv_rpn_proposals(tv, images, targets=None):
    with torch.no_grad():
        tv_images, tv_targets = tv.transform(images, targets)
        theirs = tv.rpn(tv_images, OrderedDict([("0", tv.backbone(tv_images.tensors))]), tv_targets)[0]
    return tv_images, theirs


@pytest.mark.parametrize("training", [False, True], ids=["eval 300-100", "training 600-200"])
def test_rpn_proposals_equal_torchvision(training):
    model = random_model(5).train(training)
    tv = to_torchvision(model)
    images, targets = scenes(3, seed=5)
    images[1] = images[1][:, :90, :120]
    targets[1] = {"boxes": torch.tensor([[10.0, 10.0, 50.0, 40.0]]), "labels": torch.tensor([2])}
    targets = targets if training else None
    batch, ours = rpn_proposals(model, images, targets)
    tv_images, theirs = tv_rpn_proposals(tv, images, targets)
    assert torch.equal(batch.tensors, tv_images.tensors) and batch.image_sizes == tv_images.image_sizes
    assert [len(p) for p in ours] == [len(p) for p in theirs]
    assert max(len(p) for p in ours) == (200 if training else 100)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)  # the same operations on the same numbers: bit for bit


def test_no_detection():
    model = random_model(0, box_score_thresh=0.99)
    tv = to_torchvision(model)
    images = images_of([(128, 128), (70, 90)], seed=1)
    with torch.no_grad():
        ours, theirs = model(images), tv(images)
    assert assert_same_detections(ours, theirs) == 0
    assert ours[0]["boxes"].shape == (0, 4) and ours[0]["labels"].shape == (0,)


def test_tied_proposals():
    """All objectness logits and deltas equal: top-k and NMS must break the ties the same way."""
    model = random_model(6)
    with torch.no_grad():
        model.rpn.head.cls_logits.weight.zero_()
        model.rpn.head.bbox_pred.weight.zero_()  # proposals = the anchors (clipped), all with score 0.5
    tv = to_torchvision(model)
    images = images_of([(128, 128), (100, 96)], seed=2)
    _, ours = rpn_proposals(model, images)
    _, theirs = tv_rpn_proposals(tv, images)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert assert_same_detections(model(images), tv(images), model.roi_heads.detections_per_img) > 0


def test_no_resize_equals_torchvision_resize_at_scale_one():
    """min_size=None keeps each image as is; torchvision's resize at scale 1 changes no pixel."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    model = random_model(7)
    tv = to_torchvision(model)
    tv.transform = GeneralizedRCNNTransform(128, 128, model.transform.image_mean, model.transform.image_std)  # scale 1
    images = images_of([(128, 128), (128, 128)], seed=4)
    with torch.no_grad():
        assert assert_same_detections(model(images), tv(images), model.roi_heads.detections_per_img) > 0


def test_spatial_scale_inferred_as_torchvision():
    """A 65-pixel-high image padded to 96 gives a 12-cell map: torchvision infers 1/4, not 1/8."""
    assert infer_spatial_scale(16, 128) == infer_spatial_scale(16, 100) == 1 / 8
    assert infer_spatial_scale(12, 65) == 1 / 4
    model = random_model(8)
    tv = to_torchvision(model)  # fresh: its pooler infers the scale at its first call, and keeps it
    images = images_of([(65, 80)], seed=5)
    with torch.no_grad():
        assert_same_detections(model(images), tv(images), model.roi_heads.detections_per_img)
    assert tv.roi_heads.box_roi_pool.scales == [0.25]


# ---------------------------------------------------------------- training mode


def scenes(n: int, seed: int = 0, **kwargs):
    data = SyntheticScenes(n, seed=seed, **kwargs)
    images, targets = collate_detection([data[i] for i in range(n)])
    return images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]


def losses_of(model, images, targets, seed):
    torch.manual_seed(seed)
    return model(images, targets)


TRAINING = {
    "no resize": dict(),
    "random resize": dict(min_size=(96, 112, 128), max_size=144),  # one torch draw per image
    "3 classes, small batches": dict(num_classes=3, rpn_batch_size_per_image=16, box_batch_size_per_image=8),
}


@pytest.mark.parametrize("config", TRAINING.values(), ids=TRAINING.keys())
def test_training_losses_equal_torchvision_same_seed(config):
    config = dict(config)
    num_classes = config.pop("num_classes", 6)
    classes = ("circle", "square", "triangle", "diamond", "cross")[: num_classes - 1]
    images, targets = scenes(3, seed=1, classes=classes)
    images[1] = images[1][:, :100, :90]  # another size; its boxes may now stick out: fine
    targets[1]["boxes"] = targets[1]["boxes"].clamp(max=89.0)
    keep = (targets[1]["boxes"][:, 2] > targets[1]["boxes"][:, 0] + 1) & (
        targets[1]["boxes"][:, 3] > targets[1]["boxes"][:, 1] + 1
    )
    targets[1] = {k: v[keep] for k, v in targets[1].items()}
    targets[2] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}  # background image
    model = random_model(11, num_classes=num_classes, **config).train()
    tv = to_torchvision(model)
    assert tv.training
    ours, theirs = losses_of(model, images, targets, 123), losses_of(tv, images, targets, 123)
    assert list(ours) == list(theirs) == list(fr.LOSS_NAMES)
    for name in fr.LOSS_NAMES:
        assert torch.isfinite(ours[name]) and ours[name].ndim == 0
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=1e-5)


def test_training_losses_equal_torchvision_without_sampling():
    """Batch sizes above the number of anchors / RoIs: every example is used, so the random
    order of the sampler does not matter (different seeds on the two sides)."""
    images, targets = scenes(2, seed=2)
    model = random_model(12, rpn_batch_size_per_image=100_000, box_batch_size_per_image=100_000).train()
    tv = to_torchvision(model)
    ours, theirs = losses_of(model, images, targets, 1), losses_of(tv, images, targets, 2)
    for name in fr.LOSS_NAMES:
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=1e-5)


def test_loss_weights_and_gradients():
    images, targets = scenes(2, seed=3)
    weights = {"loss_classifier": 2.0, "loss_rpn_box_reg": 0.5, "loss_objectness": 0.0}
    plain = random_model(13).train()
    weighted = random_model(13, loss_weights=weights).train()
    raw, scaled = losses_of(plain, images, targets, 7), losses_of(weighted, images, targets, 7)
    for name in fr.LOSS_NAMES:
        torch.testing.assert_close(scaled[name], raw[name] * weights.get(name, 1.0))
    # what fit(model, loader, None, ...) minimizes: the sum of the returned dict = the weighted total
    torch.testing.assert_close(
        sum(scaled.values()), 2.0 * raw["loss_classifier"] + raw["loss_box_reg"] + 0.5 * raw["loss_rpn_box_reg"]
    )
    total = sum(raw.values())
    total.backward()
    no_grad = [n for n, p in plain.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert no_grad == []


def test_fit_trains_it():
    images, targets = scenes(4, seed=4)
    loader = [(images[:2], targets[:2]), (images[2:], targets[2:])]
    torch.manual_seed(0)
    model = FasterRCNN(num_classes=6)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    history = fit(model, loader, None, optimizer, epochs=4, device="cpu", progress=False)
    losses = history["train_loss"]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert not model.training  # fit leaves the model in eval mode: it detects
    with torch.no_grad():
        out = model(images[:1])
    assert set(out[0]) == {"boxes", "labels", "scores"}


def test_to_torchvision_copies_weights_and_mode():
    model = random_model(14).train()
    tv = to_torchvision(model)
    assert tv.training
    ours_sd, tv_sd = model.state_dict(), tv.state_dict()
    assert torch.equal(ours_sd["rpn.head.conv.weight"], tv_sd["rpn.head.conv.0.0.weight"])
    for key in ("roi_heads.box_head.fc6.weight", "roi_heads.box_predictor.bbox_pred.bias", "backbone.0.weight"):
        assert torch.equal(ours_sd[key], tv_sd[key])
    assert tv.backbone is not model.backbone  # a copy: training one leaves the other alone
    assert tv.rpn.anchor_generator.sizes == ((16.0, 32.0, 48.0),)
    assert (tv.rpn._pre_nms_top_n, tv.rpn._post_nms_top_n) == (
        {"training": 600, "testing": 300},
        {"training": 200, "testing": 100},
    )
    assert tv.roi_heads.fg_bg_sampler.batch_size_per_image == tv.rpn.fg_bg_sampler.batch_size_per_image == 64
    assert (tv.roi_heads.score_thresh, tv.roi_heads.box_coder.weights) == (0.0, (10.0, 10.0, 5.0, 5.0))
    assert not to_torchvision(model.eval()).training
    with pytest.raises(TypeError, match="model must be a course_utils FasterRCNN"):
        to_torchvision(nn.Linear(2, 2))


def test_defaults():
    model = FasterRCNN(num_classes=6)
    rpn, heads = model.rpn, model.roi_heads
    assert model.backbone.out_channels == 32 and rpn.num_anchors_per_location == 9
    assert (rpn.sizes, rpn.aspect_ratios) == ((16.0, 32.0, 48.0), (0.5, 1.0, 2.0))
    assert rpn._pre_nms_top_n == {"training": 600, "testing": 300} and rpn._post_nms_top_n == {
        "training": 200,
        "testing": 100,
    }
    assert rpn.batch_size_per_image == heads.batch_size_per_image == 64
    assert heads.box_head.fc7.out_features == 128 and heads.score_thresh == 0.01
    assert model.loss_weights == dict.fromkeys(fr.LOSS_NAMES, 1.0)
    feature = model.backbone(torch.zeros(1, 3, 128, 96))
    assert feature.shape == (1, 32, 16, 12)  # stride 8


# ---------------------------------------------------------------- bad input


def _model():
    return FasterRCNN(num_classes=3)


BOX = {"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([1])}
IMAGE = torch.rand(3, 64, 64)

BAD_CALLS = {
    "image rank": (
        lambda: _model().eval()([torch.rand(64, 64)]),
        ValueError,
        r"images\[0\] must have shape \[3, H, W\]",
    ),
    "batch rank": (
        lambda: _model().eval()(torch.rand(3, 64, 64)),
        ValueError,
        r"images must be a list of Tensor\[3, H, W\]",
    ),
    "channels": (
        lambda: _model().eval()([IMAGE, torch.rand(4, 64, 64)]),
        ValueError,
        r"images\[1\] must have 3 channels",
    ),
    "int image": (
        lambda: _model().eval()([torch.zeros(3, 8, 8, dtype=torch.uint8)]),
        TypeError,
        r"images\[0\] must be a float tensor",
    ),
    "not a list": (lambda: _model().eval()("image"), TypeError, r"images must be a list"),
    "no images": (lambda: _model().eval()([]), ValueError, r"images is empty"),
    "NaN image": (
        lambda: _model().eval()([torch.full((3, 8, 8), float("nan"))]),
        ValueError,
        r"images\[0\] contains NaN",
    ),
    "no targets in training": (lambda: _model().train()([IMAGE]), ValueError, r"targets is required in training mode"),
    "targets length": (
        lambda: _model().train()([IMAGE, IMAGE], [BOX]),
        ValueError,
        r"targets has 1 entries but there are 2 images",
    ),
    "degenerate box": (
        lambda: _model().train()(
            [IMAGE],
            [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0], [5.0, 5.0, 5.0, 9.0]]), "labels": torch.tensor([1, 2])}],
        ),
        ValueError,
        r"targets\[0\]\['boxes'\]\[1\] = \[5.0, 5.0, 5.0, 9.0\] is degenerate",
    ),
    "inverted box": (
        lambda: _model().train()(
            [IMAGE], [{"boxes": torch.tensor([[9.0, 1.0, 1.0, 9.0]]), "labels": torch.tensor([1])}]
        ),
        ValueError,
        r"degenerate: boxes need x2 > x1",
    ),
    "label 0": (
        lambda: _model().train()([IMAGE], [{**BOX, "labels": torch.tensor([0])}]),
        ValueError,
        r"targets\[0\]\['labels'\]\[0\] = 0 is out of range: labels must be in \[1, 3\)",
    ),
    "label too big": (
        lambda: _model().train()([IMAGE], [{**BOX, "labels": torch.tensor([3])}]),
        ValueError,
        r"= 3 is out of range",
    ),
    "float labels": (
        lambda: _model().train()([IMAGE], [{**BOX, "labels": torch.tensor([1.0])}]),
        TypeError,
        r"targets\[0\]\['labels'\] must hold integer",
    ),
    "labels length": (
        lambda: _model().train()([IMAGE], [{**BOX, "labels": torch.tensor([1, 2])}]),
        ValueError,
        r"targets\[0\]\['labels'\] must have shape \[1\]",
    ),
    "missing labels": (
        lambda: _model().train()([IMAGE], [{"boxes": BOX["boxes"]}]),
        ValueError,
        r"targets\[0\] has no 'labels'",
    ),
    "boxes shape": (
        lambda: _model().train()([IMAGE], [{**BOX, "boxes": torch.rand(1, 5)}]),
        ValueError,
        r"targets\[0\]\['boxes'\] must have shape \[G, 4\]",
    ),
    "num_classes 1": (lambda: FasterRCNN(num_classes=1), ValueError, r"num_classes must be >= 2"),
    "num_classes missing": (lambda: FasterRCNN(), TypeError, r"num_classes is required"),
    "loss weight name": (
        lambda: FasterRCNN(num_classes=2, loss_weights={"loss_mask": 1.0}),
        ValueError,
        r"loss_weights has an unknown loss 'loss_mask'",
    ),
    "negative loss weight": (
        lambda: FasterRCNN(num_classes=2, loss_weights={"loss_box_reg": -1}),
        ValueError,
        r"loss_weights\['loss_box_reg'\] must be a finite number >= 0",
    ),
    "min_size alone": (
        lambda: FasterRCNN(num_classes=2, min_size=128),
        ValueError,
        r"min_size and max_size go together",
    ),
    "zero-size anchor": (
        lambda: FasterRCNN(num_classes=2, anchor_sizes=(1, 16)),
        ValueError,
        r"anchor size 1.0 with aspect ratio 0.5 rounds to an anchor of zero",
    ),
    "backbone without out_channels": (
        lambda: FasterRCNN(nn.ReLU(), num_classes=2),
        ValueError,
        r"backbone must have an out_channels",
    ),
}


@pytest.mark.parametrize("call, error, message", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_never_imports_torchvision_detection():
    """The course's detectors (Faster R-CNN, Mask R-CNN) are built from the course's parts; only
    to_torchvision reaches for torchvision.

    Every module of course_utils.detection is imported first, not only those FasterRCNN needs.
    """
    code = (
        "import importlib, pkgutil, sys, torch\n"
        "import course_utils.detection as detection\n"
        "names = {info.name for info in pkgutil.iter_modules(detection.__path__)}\n"
        "assert {'ops', 'transform', '_utils', 'backbone', 'rpn', 'roi_heads', 'faster_rcnn', 'mask_rcnn'} <= names, names\n"
        "for name in sorted(names):\n"
        "    importlib.import_module(f'course_utils.detection.{name}')\n"
        "from course_utils.detection.faster_rcnn import FasterRCNN\n"
        "m = FasterRCNN(num_classes=3)\n"
        "m.train()(([torch.rand(3, 64, 64)]), [{'boxes': torch.tensor([[4.0, 4.0, 30.0, 30.0]]), 'labels': torch.tensor([1])}])\n"
        "m.eval()([torch.rand(3, 64, 64)])\n"
        "from course_utils.detection.mask_rcnn import MaskRCNN\n"
        "mm = MaskRCNN(num_classes=3)\n"
        "mm.train()(([torch.rand(3, 64, 64)]), [{'boxes': torch.tensor([[4.0, 4.0, 30.0, 30.0]]), 'labels': torch.tensor([1]), 'masks': torch.ones(1, 64, 64, dtype=torch.uint8)}])\n"
        "mm.eval()([torch.rand(3, 64, 64)])\n"
        "assert 'torchvision.models.detection' not in sys.modules, sorted(sys.modules)\n"
        "from course_utils.detection.faster_rcnn import to_torchvision\n"
        "to_torchvision(m)\n"
        "assert 'torchvision.models.detection' in sys.modules  # the check above can fail\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
