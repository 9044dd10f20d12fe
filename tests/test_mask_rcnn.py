"""course_utils.detection's MaskRCNN against torchvision's MaskRCNN holding the same weights.

Eval mode: the same detections (boxes and scores to 1e-4, same labels and order) and the same
pasted masks (to 1e-4) over random-weight models, padded batches and resized images. Training
mode: the five losses equal torchvision's under the same random state. The mask pieces
(``paste_masks``, ``project_masks_on_boxes``, ``mask_loss``) are compared one by one with
torchvision's functions on many random cases.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models.detection.roi_heads import maskrcnn_loss, paste_masks_in_image
from torchvision.models.detection.roi_heads import project_masks_on_boxes as tv_project_masks_on_boxes

from course_utils import detection
from course_utils.data import SyntheticScenes, collate_detection
from course_utils.detection.mask_rcnn import (
    MASK_LOSS_NAMES, MaskRCNN, mask_loss, paste_masks, project_masks_on_boxes, to_torchvision,
)
from course_utils.training import fit

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-4


def random_model(seed: int, num_classes: int = 6, **kwargs) -> MaskRCNN:
    """A seeded random-weight model with many detections of every class and class masks of varied levels."""
    torch.manual_seed(seed)
    kwargs.setdefault("box_score_thresh", 0.0)
    kwargs.setdefault("box_detections_per_img", 30)
    model = MaskRCNN(num_classes=num_classes, **kwargs)
    with torch.no_grad():
        for module in model.backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
        model.rpn.head.cls_logits.weight.normal_(0, 0.5)
        model.rpn.head.bbox_pred.weight.normal_(0, 0.2)
        model.roi_heads.box_predictor.cls_score.weight.normal_(0, 0.3)
        model.roi_heads.box_predictor.bbox_pred.weight.normal_(0, 0.1)
        model.roi_heads.mask_predictor.mask_fcn_logits.bias.normal_(0, 1.0)
    return model.eval()


def images_of(sizes, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=g) for h, w in sizes]


def assert_same_outputs(ours, theirs, tie: float = 1e-6) -> int:
    """Same detections (scores, labels, boxes to ATOL, same order) and the same masks to ATOL.

    Detections whose scores tie to within ``tie`` may come in either order (see
    test_faster_rcnn.assert_same_detections): each of torchvision's is compared with the course's
    detection of the same label and box among those of a score within ``tie``. Returns the count.
    """
    assert len(ours) == len(theirs)
    count = 0
    for a, b in zip(ours, theirs):
        assert set(a) == {"boxes", "labels", "scores", "masks"}
        assert a["masks"].dtype == torch.float32 and a["labels"].dtype == torch.int64
        assert a["masks"].shape == b["masks"].shape, (a["masks"].shape, b["masks"].shape)
        torch.testing.assert_close(a["scores"], b["scores"], atol=ATOL, rtol=0)
        for i in range(len(b["scores"])):
            close = (a["scores"] - b["scores"][i]).abs() <= tie
            same = close & (a["labels"] == b["labels"][i]) & ((a["boxes"] - b["boxes"][i]).abs().amax(1) <= ATOL)
            assert bool(same.any()), i
            j = int(same.nonzero()[0, 0]) if not bool(same[i]) else i
            torch.testing.assert_close(a["masks"][j], b["masks"][i], atol=ATOL, rtol=0)
        count += len(a["boxes"])
    return count


BATCHES = [
    [(128, 128)],
    [(128, 128), (100, 77)],  # padded to 128 x 128; masks pasted into 100 x 77
    [(96, 160), (130, 70), (64, 64)],
]

MODELS = {
    "default": dict(seed=0),
    "2 classes, one small mask layer, adaptive sampling": dict(
        seed=1, num_classes=2, mask_layers=(16,), mask_dim_reduced=8, mask_roi_sampling_ratio=-1
    ),
    "resize 112..160, 7x7 mask RoIs": dict(seed=2, min_size=112, max_size=160, mask_roi_output_size=7),
    "4 classes, strict NMS": dict(seed=3, num_classes=4, box_nms_thresh=0.3, box_detections_per_img=60),
}


@pytest.mark.parametrize("config", MODELS.values(), ids=MODELS.keys())
def test_eval_outputs_equal_torchvision(config):
    config = dict(config)
    model = random_model(config.pop("seed"), **config)
    tv = to_torchvision(model)
    assert not tv.training
    total = 0
    with torch.no_grad():
        for i, sizes in enumerate(BATCHES):
            images = images_of(sizes, seed=20 + i)
            ours = model(images)
            total += assert_same_outputs(ours, tv(images))
            for out, (h, w) in zip(ours, sizes):
                assert out["masks"].shape[1:] == (1, h, w)
                assert 0.0 <= float(out["masks"].min()) and float(out["masks"].max()) <= 1.0
    assert total >= 50


def test_eval_outputs_equal_torchvision_on_scenes():
    model = random_model(7)
    with torch.no_grad():
        model.roi_heads.mask_predictor.mask_fcn_logits.bias.fill_(0.5)  # masks above 0.5 somewhere
    tv = to_torchvision(model)
    data = SyntheticScenes(4, seed=3)
    images = [data[i][0] for i in range(4)]
    with torch.no_grad():
        ours = model(images)
        assert assert_same_outputs(ours, tv(images)) > 0
    assert any(bool(((o["masks"] > 0.5).sum((1, 2, 3)) > 0).any()) for o in ours)  # masks are not all empty


def test_no_detection():
    model = random_model(0, box_score_thresh=0.99)
    tv = to_torchvision(model)
    images = images_of([(128, 128), (70, 90)], seed=1)
    with torch.no_grad():
        ours, theirs = model(images), tv(images)
    assert assert_same_outputs(ours, theirs) == 0
    assert ours[1]["masks"].shape == theirs[1]["masks"].shape == (0, 1, 70, 90)


# ---------------------------------------------------------------- the mask pieces


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    k=st.integers(0, 6),
    m=st.sampled_from([1, 2, 7, 28]),
    padding=st.integers(0, 2),
    height=st.integers(1, 70),
    width=st.integers(1, 70),
)
def test_paste_masks_equals_torchvision(seed, k, m, padding, height, width):
    """Boxes inside, across the border (left, top, right, bottom), tiny, fractional. (A box that misses
    the image crashes torchvision's paste; detections are clipped to the image, so never do that.)"""
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(k, 1, m, m, generator=g)
    corner = torch.rand(k, 2, generator=g) * torch.tensor([width + 10.0, height + 10.0]) - 10
    size = torch.rand(k, 2, generator=g) * 40 * torch.rand(k, 1, generator=g)
    boxes = torch.cat([corner, corner + size], dim=1)
    keep = (boxes[:, 2] >= 1) & (boxes[:, 3] >= 1)  # torchvision crashes on boxes that miss the image
    masks, boxes, k = masks[keep], boxes[keep], int(keep.sum())
    ours = paste_masks(masks, boxes, (height, width), padding=padding)
    theirs = paste_masks_in_image(masks, boxes, (height, width), padding=padding)
    assert ours.shape == theirs.shape == (k, 1, height, width)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    torch.testing.assert_close(paste_masks(masks[:, 0], boxes, (height, width), padding), ours[:, 0])


def test_paste_masks_puts_the_mask_in_its_box():
    """A full mask pasted without padding covers exactly its integer box (inclusive), nothing else."""
    out = paste_masks(torch.ones(1, 28, 28), torch.tensor([[10.0, 20.0, 30.0, 25.0]]), (40, 50), padding=0)
    expected = torch.zeros(40, 50)
    expected[20:26, 10:31] = 1
    assert torch.equal(out[0], expected)
    outside = paste_masks(torch.ones(2, 28, 28), torch.tensor([[60.0, 5.0, 70.0, 9.0], [5.0, 45.0, 9.0, 49.0]]), (40, 50))
    assert outside.shape == (2, 40, 50) and not bool(outside.any())


@pytest.mark.parametrize("seed", range(6))
def test_project_masks_and_mask_loss_equal_torchvision(seed):
    g = torch.Generator().manual_seed(seed)
    gt_masks, labels, proposals, matched = [], [], [], []
    for n_gt, n_pos in [(3, 5), (1, 2), (0, 0), (2, 0)]:  # an image without objects, one without positives
        gt_masks.append((torch.rand(n_gt, 48, 40, generator=g) > 0.5).to(torch.uint8))
        labels.append(torch.randint(1, 4, (n_gt,), generator=g))
        corner = torch.rand(n_pos, 2, generator=g) * 30
        proposals.append(torch.cat([corner, corner + 2 + torch.rand(n_pos, 2, generator=g) * 20], 1))
        matched.append(torch.randint(0, max(n_gt, 1), (n_pos,), generator=g))
    for masks, boxes, idx in zip(gt_masks, proposals, matched):
        ours = project_masks_on_boxes(masks, boxes, idx, 28)
        assert ours.shape == (len(boxes), 28, 28)
        if len(boxes):
            torch.testing.assert_close(ours, tv_project_masks_on_boxes(masks, boxes, idx, 28), atol=1e-6, rtol=0)
    logits = torch.randn(sum(len(p) for p in proposals), 4, 28, 28, generator=g)
    ours = mask_loss(logits, proposals, gt_masks, labels, matched)
    torch.testing.assert_close(ours, maskrcnn_loss(logits, proposals, gt_masks, labels, matched), atol=1e-6, rtol=0)
    empty = torch.zeros(0, 4, 28, 28, requires_grad=True)
    zero = mask_loss(empty, proposals[2:3], gt_masks[2:3], labels[2:3], matched[2:3])
    assert float(zero.detach()) == 0.0 and zero.requires_grad


# ---------------------------------------------------------------- training mode


def scenes(n: int, seed: int = 0, **kwargs):
    data = SyntheticScenes(n, seed=seed, **kwargs)
    images, targets = collate_detection([data[i] for i in range(n)])
    return images, [{k: t[k] for k in ("boxes", "labels", "masks")} for t in targets]


def losses_of(model, images, targets, seed):
    torch.manual_seed(seed)
    return model(images, targets)


TRAINING = {
    "no resize": dict(),
    "random resize": dict(min_size=(96, 112, 128), max_size=144),  # the masks are resized with the image
    "small batches, 7x7 mask RoIs": dict(rpn_batch_size_per_image=16, box_batch_size_per_image=8, mask_roi_output_size=7),
}


@pytest.mark.parametrize("config", TRAINING.values(), ids=TRAINING.keys())
def test_training_losses_equal_torchvision_same_seed(config):
    images, targets = scenes(3, seed=1)
    targets[2] = {
        "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, 128, 128, dtype=torch.uint8),
    }  # a background image
    model = random_model(11, **config).train()
    tv = to_torchvision(model)
    assert tv.training
    ours, theirs = losses_of(model, images, targets, 123), losses_of(tv, images, targets, 123)
    assert list(ours) == list(theirs) == list(MASK_LOSS_NAMES)
    for name in MASK_LOSS_NAMES:
        assert torch.isfinite(ours[name]) and ours[name].ndim == 0
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=1e-5)
    assert float(ours["loss_mask"].detach()) > 0.1


def test_loss_weights_and_gradients():
    images, targets = scenes(2, seed=3)
    plain = random_model(13).train()
    weighted = random_model(13, loss_weights={"loss_mask": 3.0}).train()
    raw, scaled = losses_of(plain, images, targets, 7), losses_of(weighted, images, targets, 7)
    torch.testing.assert_close(scaled["loss_mask"], 3.0 * raw["loss_mask"])
    sum(raw.values()).backward()
    no_grad = [n for n, p in plain.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert no_grad == []


def test_fit_trains_it():
    images, targets = scenes(4, seed=4)
    loader = [(images[:2], targets[:2]), (images[2:], targets[2:])]
    torch.manual_seed(0)
    model = MaskRCNN(num_classes=6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = fit(model, loader, None, optimizer, epochs=4, device="cpu", progress=False)
    assert history["train_loss"][-1] < history["train_loss"][0]
    with torch.no_grad():
        out = model(images[:1])
    assert set(out[0]) == {"boxes", "labels", "scores", "masks"}


def test_to_torchvision_copies_weights_type_and_mode():
    from torchvision.models.detection import MaskRCNN as TorchvisionMaskRCNN

    model = random_model(14, mask_layers=(8, 16)).train()
    tv = detection.to_torchvision(model)  # the package's dispatcher
    assert isinstance(tv, TorchvisionMaskRCNN) and tv.training
    ours, theirs = model.state_dict(), tv.state_dict()
    assert torch.equal(ours["roi_heads.mask_head.convs.1.weight"], theirs["roi_heads.mask_head.1.0.weight"])
    assert torch.equal(ours["roi_heads.mask_predictor.conv5_mask.weight"], theirs["roi_heads.mask_predictor.conv5_mask.weight"])
    assert torch.equal(ours["roi_heads.box_head.fc6.weight"], theirs["roi_heads.box_head.fc6.weight"])
    assert tv.roi_heads.mask_roi_pool.output_size == (14, 14)
    assert not to_torchvision(model.eval()).training
    with pytest.raises(TypeError, match="model must be a course_utils MaskRCNN"):
        to_torchvision(detection.FasterRCNN(num_classes=3))


def test_defaults():
    model = MaskRCNN(num_classes=6)
    heads = model.roi_heads
    assert [c.out_channels for c in heads.mask_head.convs] == [32, 32, 32, 32]
    assert heads.mask_roi_pool.output_size == (14, 14) and heads.mask_roi_pool.sampling_ratio == 2
    logits = heads.mask_logits(torch.zeros(1, 32, 16, 16), [torch.tensor([[0.0, 0.0, 50.0, 60.0]])], [(128, 128)])
    assert logits.shape == (1, 6, 28, 28)  # 14x14 RoIAlign in, one 28x28 mask per class out
    assert model.loss_weights == dict.fromkeys(MASK_LOSS_NAMES, 1.0)


# ---------------------------------------------------------------- bad input

IMAGE = torch.rand(3, 64, 64)
TARGET = {
    "boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([1]),
    "masks": torch.zeros(1, 64, 64, dtype=torch.uint8),
}


def _train(target):
    return MaskRCNN(num_classes=3).train()([IMAGE], [target])


BAD_CALLS = {
    "no masks": (lambda: _train({k: TARGET[k] for k in ("boxes", "labels")}), ValueError, r"targets\[0\] has no 'masks'"),
    "masks not a tensor": (lambda: _train({**TARGET, "masks": [[0]]}), TypeError, r"targets\[0\]\['masks'\] must be a torch.Tensor"),
    "masks of another size": (
        lambda: _train({**TARGET, "masks": torch.zeros(1, 32, 64, dtype=torch.uint8)}),
        ValueError,
        r"targets\[0\]\['masks'\] must have shape \[G, H, W\] = \[1, 64, 64\]",
    ),
    "one mask too many": (
        lambda: _train({**TARGET, "masks": torch.zeros(2, 64, 64, dtype=torch.uint8)}), ValueError, r"one mask per box",
    ),
    "float masks": (lambda: _train({**TARGET, "masks": torch.zeros(1, 64, 64)}), TypeError, r"must be a uint8 or bool tensor"),
    "masks of 255": (
        lambda: _train({**TARGET, "masks": torch.full((1, 64, 64), 255, dtype=torch.uint8)}),
        ValueError,
        r"must hold only 0 and 1, got values up to 255",
    ),
    "unknown loss weight": (lambda: MaskRCNN(num_classes=2, loss_weights={"loss_masks": 1.0}), ValueError, r"unknown loss 'loss_masks'"),
    "mask layers": (lambda: MaskRCNN(num_classes=2, mask_layers=()), TypeError, r"mask_layers must be a non-empty list"),
    "mask layer width": (lambda: MaskRCNN(num_classes=2, mask_layers=(8, 0)), ValueError, r"mask_layers\[1\]"),
    "paste: int masks": (
        lambda: paste_masks(torch.zeros(1, 28, 28, dtype=torch.uint8), torch.zeros(1, 4), (8, 8)), TypeError, r"masks must be a float",
    ),
    "paste: masks rank": (lambda: paste_masks(torch.zeros(28, 28), torch.zeros(1, 4), (8, 8)), ValueError, r"masks must be a Tensor\[K, M, M\]"),
    "paste: lengths": (lambda: paste_masks(torch.zeros(2, 28, 28), torch.zeros(1, 4), (8, 8)), ValueError, r"same length, got 2 and 1"),
    "paste: boxes shape": (lambda: paste_masks(torch.zeros(1, 28, 28), torch.zeros(1, 5), (8, 8)), ValueError, r"boxes must be a Tensor\[K, 4\]"),
    "paste: image size": (lambda: paste_masks(torch.zeros(1, 28, 28), torch.zeros(1, 4), 8), TypeError, r"image_size must be a pair"),
    "paste: zero height": (lambda: paste_masks(torch.zeros(1, 28, 28), torch.zeros(1, 4), (0, 8)), ValueError, r"image_size\[0\]"),
}


@pytest.mark.parametrize("call, error, message", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_bool_masks_are_accepted():
    losses = _train({**TARGET, "masks": TARGET["masks"].bool()})
    assert torch.isfinite(losses["loss_mask"])
