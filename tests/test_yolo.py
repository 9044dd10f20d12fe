"""course_utils.detection.yolo: target assignment against a plain loop, the loss's terms, decoding,
the detector's input/output contract, bad input, and a short training run that learns."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils import data
from course_utils.detection import YOLO
from course_utils.detection.yolo import YOLO_LOSS_NAMES, decode_predictions, encode_targets, yolo_loss


def _loop_assignment(targets, grid_size, image_size):
    """Object by object: the cell of its centre; the larger object (then the earlier one) wins a cell."""
    cell = image_size / grid_size
    winners = {}
    for i, t in enumerate(targets):
        for j, (box, label) in enumerate(zip(t["boxes"].tolist(), t["labels"].tolist())):
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            col, row = min(max(math.floor(cx / cell), 0), grid_size - 1), min(max(math.floor(cy / cell), 0), grid_size - 1)
            area = (box[2] - box[0]) * (box[3] - box[1])
            best = winners.get((i, row, col))
            if best is None or area > best[0]:
                xywh = [cx / cell - col, cy / cell - row, math.sqrt((box[2] - box[0]) / image_size), math.sqrt((box[3] - box[1]) / image_size)]
                winners[(i, row, col)] = (area, j, xywh, label - 1)
    return {key: (xywh, label) for key, (_, _, xywh, label) in winners.items()}


def _random_targets(generator, counts, image_size=128, num_classes=6):
    targets = []
    for n in counts:
        xy = torch.rand((n, 2), generator=generator) * (image_size - 20)
        wh = 4 + torch.rand((n, 2), generator=generator) * 40
        boxes = torch.cat([xy, (xy + wh).clamp(max=image_size)], 1)
        targets.append({"boxes": boxes, "labels": torch.randint(1, num_classes, (n,), generator=generator)})
    return targets


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.lists(st.integers(0, 12), min_size=1, max_size=4), st.sampled_from([4, 8, 16]))
def test_assignment_equals_the_loop(seed, counts, grid_size):
    targets = _random_targets(torch.Generator().manual_seed(seed), counts)
    encoded = encode_targets(targets, grid_size, 128)
    expected = _loop_assignment(targets, grid_size, 128)
    got = {(int(i), int(r), int(c)): (xywh.tolist(), int(k))
           for i, r, c, xywh, k in zip(encoded.image, encoded.row, encoded.col, encoded.xywh, encoded.label)}
    assert got.keys() == expected.keys()
    for key, (xywh, label) in expected.items():
        assert got[key][1] == label
        assert got[key][0] == pytest.approx(xywh, abs=1e-5)


def test_two_small_objects_in_one_cell_keep_the_larger():
    target = {"boxes": torch.tensor([[2.0, 2.0, 10.0, 10.0], [1.0, 1.0, 13.0, 13.0]]), "labels": torch.tensor([1, 2])}
    encoded = encode_targets([target], grid_size=8, image_size=128)  # 16-px cells: both centres in cell (0, 0)
    assert encoded.label.tolist() == [1] and torch.equal(encoded.box, target["boxes"][[1]])


def test_decoding_a_hand_made_prediction():
    boxes = torch.zeros(1, 4, 4, 1, 5)
    boxes[0, 2, 1, 0] = torch.tensor([0.5, 0.25, 0.5, math.sqrt(0.125), 0.8])  # cell row 2, col 1 of a 4x4 grid on 64 px
    logits = torch.zeros(1, 4, 4, 3)
    logits[0, 2, 1] = torch.tensor([0.0, math.log(2.0), math.log(5.0)])  # probabilities 1/8, 2/8, 5/8
    xyxy, scores = decode_predictions(boxes, logits, image_size=64)
    index = 2 * 4 + 1  # row-major cells, one box each
    # centre ((1 + 0.5) · 16, (2 + 0.25) · 16) = (24, 36); size 0.25 · 64 = 16 wide, 0.125 · 64 = 8 high
    assert xyxy[0, index].tolist() == pytest.approx([16.0, 32.0, 32.0, 40.0])
    assert scores[0, index].tolist() == pytest.approx([0.8 / 8, 0.8 * 2 / 8, 0.8 * 5 / 8])


def test_a_perfect_prediction_has_no_box_class_or_noobj_loss():
    targets = _random_targets(torch.Generator().manual_seed(3), [3, 2])
    encoded = encode_targets(targets, 8, 128)
    boxes = torch.zeros(2, 8, 8, 2, 5)
    boxes[encoded.image, encoded.row, encoded.col, 0, :4] = encoded.xywh
    boxes[encoded.image, encoded.row, encoded.col, 0, 4] = 1.0  # the IoU of a perfect box
    logits = torch.full((2, 8, 8, 5), -30.0)
    logits[encoded.image, encoded.row, encoded.col, encoded.label] = 30.0
    losses = yolo_loss(boxes, logits, encoded, 128)
    assert set(losses) == set(YOLO_LOSS_NAMES)
    for key in YOLO_LOSS_NAMES:
        assert losses[key].item() == pytest.approx(0.0, abs=1e-6), key


def test_the_loss_weights_and_the_noobj_term():
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([2])}]
    encoded = encode_targets(targets, 8, 128)
    boxes = torch.full((1, 8, 8, 2, 5), 0.5)
    logits = torch.zeros(1, 8, 8, 5)
    base = yolo_loss(boxes, logits, encoded, 128, lambda_coord=1.0, lambda_noobj=1.0)
    weighted = yolo_loss(boxes, logits, encoded, 128, lambda_coord=5.0, lambda_noobj=0.5)
    assert weighted["loss_box"].item() == pytest.approx(5 * base["loss_box"].item())
    assert weighted["loss_noobj"].item() == pytest.approx(0.5 * base["loss_noobj"].item())
    assert base["loss_noobj"].item() == pytest.approx((8 * 8 * 2 - 1) * 0.25)  # every box but the responsible one
    assert base["loss_classifier"].item() == pytest.approx(4 * 0.2**2 + 0.8**2)  # uniform over 5 classes vs one-hot


def test_the_detector_contract_in_eval_and_training():
    torch.manual_seed(0)
    model = YOLO(num_classes=6).eval()
    images = [torch.rand(3, 128, 128), torch.rand(3, 96, 160)]
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for o, im in zip(out, images):
        assert set(o) == {"boxes", "labels", "scores"} and o["labels"].dtype == torch.int64
        assert bool(((o["labels"] >= 1) & (o["labels"] <= 5)).all())
        assert bool((o["boxes"][:, 2] <= im.shape[2]).all() and (o["boxes"][:, 3] <= im.shape[1]).all())
        assert bool((o["scores"][:-1] >= o["scores"][1:]).all()) and len(o["scores"]) <= 100
    model.train()
    scenes = [data.SyntheticScenes(2, seed=1)[i] for i in range(2)]
    losses = model([im for im, _ in scenes], [t for _, t in scenes])
    assert set(losses) == set(YOLO_LOSS_NAMES) and all(v.ndim == 0 and v.requires_grad for v in losses.values())


def test_short_training_lowers_the_loss():
    torch.manual_seed(0)
    scenes = [data.SyntheticScenes(16, seed=1)[i] for i in range(16)]
    images, targets = [im for im, _ in scenes], [t for _, t in scenes]
    model = YOLO(num_classes=6).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    totals = []
    for _ in range(25):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert totals[-1] < 0.5 * totals[0], totals


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(num_classes=6, grid_size=7), ValueError, "grid_size 7 must divide image_size 128"),
    (dict(num_classes=6, boxes_per_cell=0), ValueError, "boxes_per_cell"),
    (dict(num_classes=1), ValueError, "num_classes"),
    (dict(num_classes=6, nms_thresh=1.5), ValueError, "nms_thresh"),
    (dict(num_classes=6, lambda_noobj=-1.0), ValueError, "lambda_noobj"),
])  # fmt: skip
def test_bad_settings_name_the_argument(kwargs, error, message):
    with pytest.raises(error, match=message):
        YOLO(**kwargs)


@pytest.mark.parametrize("images, targets, message", [
    ([torch.rand(128, 128)], None, r"images\[0\] must have shape \[3, H, W\]"),
    ([torch.rand(1, 128, 128)], None, r"images\[0\] must have 3 channels"),
    ([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[10.0, 10.0, 5.0, 20.0]]), "labels": torch.tensor([1])}], "degenerate"),
    ([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[1.0, 1.0, 5.0, 20.0]]), "labels": torch.tensor([6])}], "out of range"),
    ([torch.rand(3, 64, 64)], None, "targets is required"),
])  # fmt: skip
def test_bad_input_names_the_argument(images, targets, message):
    model = YOLO(num_classes=6).train()
    with pytest.raises((ValueError, TypeError), match=message):
        model(images, targets)
