"""The model zoo: shipped checkpoints load, match their manifest and still reach their metrics."""

import json
import shutil

import pytest
import torch

from course_utils import zoo
from course_utils.data import SHAPES, SceneSegmentation, SyntheticScenes
from course_utils.detection.backbone import SmallBackbone


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_manifest_entry_is_complete(name):
    entry = zoo.manifest()[name]
    assert entry["file"] == f"{name}.pt"
    assert len(entry["sha256"]) == 64
    assert entry["command"] == f"python -m course_utils.zoo train {name}"
    assert set(entry["metrics"]) == set(zoo.MODELS[name].metrics)
    assert entry["classes"] == list(zoo.MODELS[name].classes)
    assert entry["epochs"] >= 1 and entry["torch"]


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_shipped_checkpoint_still_reaches_its_recorded_metrics(name):
    torch.manual_seed(0)
    model = zoo.load(name)
    assert not model.training
    recorded = zoo.manifest()[name]["metrics"]
    measured = zoo.evaluate(name, model)
    for metric, value in recorded.items():
        # the test sets are drawn from seeds, so the numbers are reproduced up to float noise
        assert measured[metric] == pytest.approx(value, abs=0.005), metric


def test_detector_entry_records_its_test_set_and_reaches_its_goal():
    entry = zoo.manifest()["faster_rcnn"]
    # the data field rebuilds exactly the test set the metrics were measured on...
    assert entry["data"] == zoo.MODELS["faster_rcnn"].data
    assert entry["data"]["dataset"] == "SyntheticScenes"
    assert entry["data"]["kwargs"]["classes"] == list(SHAPES) and entry["data"]["kwargs"]["image_size"] == 128
    test = zoo.load_test_set("faster_rcnn")
    reference = zoo.MODELS["faster_rcnn"].test_sets["test"]()
    assert isinstance(test, SyntheticScenes) and len(test) == len(reference) == entry["data"]["kwargs"]["length"]
    for i in (0, len(test) - 1):
        assert torch.equal(test[i][0], reference[i][0]) and torch.equal(test[i][1]["boxes"], reference[i][1]["boxes"])
    # ... and a fresh seed draws new scenes of the same kind
    fresh = zoo.load_test_set("faster_rcnn", seed=123, length=3)
    assert len(fresh) == 3 and fresh.options == test.options and not torch.equal(fresh[0][0], test[0][0])
    # the training scenes are not the test scenes
    assert zoo.MODELS["faster_rcnn"].train_set.kwargs["seed"] != entry["data"]["kwargs"]["seed"]
    assert entry["metrics"]["map_50"] >= 0.93 and entry["metrics"]["map"] >= 0.70


def test_shipped_detector_predicts_like_a_torchvision_detector():
    model = zoo.load("faster_rcnn")
    image, target = zoo.load_test_set("faster_rcnn")[0]
    with torch.no_grad():
        (pred,) = model([image])
    assert set(pred) >= {"boxes", "labels", "scores"}
    assert pred["labels"].dtype == torch.int64 and bool(((pred["labels"] >= 1) & (pred["labels"] <= len(SHAPES))).all())
    best = pred["scores"] > 0.5
    assert sorted(pred["labels"][best].tolist()) == sorted(target["labels"].tolist())


def test_load_test_set_needs_a_data_field():
    with pytest.raises(ValueError, match="data"):
        zoo.load_test_set("shapes_cnn")


def test_spurious_model_fails_when_the_backgrounds_swap():
    metrics = zoo.manifest()["spurious_cnn"]["metrics"]
    assert metrics["test_accuracy_same_backgrounds"] > 0.9
    assert metrics["test_accuracy_swapped_backgrounds"] < 0.2


def test_shipped_weights_stay_small():
    sizes = {p.name: p.stat().st_size for p in zoo.WEIGHTS_DIR.glob("*.pt")}
    assert len(sizes) == len(zoo.MODELS)
    assert max(sizes.values()) < 1_500_000, sizes  # a clone stays light: every checkpoint under 1.5 MB
    assert sum(sizes.values()) < 8_000_000


def test_load_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="name must be one of"):
        zoo.load("resnet50")


def test_load_refuses_a_checkpoint_that_does_not_match_the_manifest(tmp_path):
    shutil.copytree(zoo.WEIGHTS_DIR, tmp_path, dirs_exist_ok=True)
    state = torch.load(tmp_path / "shapes_cnn.pt", weights_only=True)
    state["model"]["fc.bias"] += 1.0
    torch.save(state, tmp_path / "shapes_cnn.pt")
    with pytest.raises(ValueError, match="sha256"):
        zoo.load("shapes_cnn", weights_dir=tmp_path)


def test_load_without_weights_says_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="make weights"):
        zoo.load("shapes_cnn", weights_dir=tmp_path)


def test_train_writes_checkpoint_and_manifest(tmp_path, monkeypatch):
    small = zoo.ZooModel(
        build=lambda: zoo.SmallCNN(2, width=4),
        train_set=lambda: zoo.SpuriousScenes(64, seed=5),
        test_sets={"test_accuracy": lambda: zoo.SpuriousScenes(32, seed=6)},
        epochs=1,
        classes=("digit 3", "digit 8"),
    )
    monkeypatch.setitem(zoo.MODELS, "tiny", small)
    metrics = zoo.train("tiny", weights_dir=tmp_path)
    entry = json.loads((tmp_path / "manifest.json").read_text())["tiny"]
    assert entry["metrics"] == {"test_accuracy": round(metrics["test_accuracy"], 4)}
    model = zoo.load("tiny", weights_dir=tmp_path)
    assert zoo.evaluate("tiny", model) == metrics  # what was saved is what was measured


def test_train_a_detector_writes_its_data_field(tmp_path, monkeypatch):
    scenes = dict(image_size=64, classes=SHAPES[:2], object_size=(16, 24))
    tiny = zoo.ZooModel(
        build=lambda: zoo.FasterRCNN(num_classes=3, backbone=SmallBackbone(8), anchor_sizes=(16, 24), representation_size=16),
        train_set=zoo.DataSpec("SyntheticScenes", dict(length=8, seed=5, **scenes)),
        test_sets={"test": zoo.DataSpec("SyntheticScenes", dict(length=4, seed=6, **scenes))},
        epochs=1,
        classes=("background", *SHAPES[:2]),
        loss=None,
        optimizer=torch.optim.AdamW,
        batch_size=4,
        collate=zoo.collate_detection,
        cache=zoo.draw_boxes,
        score=zoo.detection_map,
        metric_names=("map_50", "map", "map_75"),
    )
    monkeypatch.setitem(zoo.MODELS, "tiny_detector", tiny)
    metrics = zoo.train("tiny_detector", weights_dir=tmp_path)
    entry = json.loads((tmp_path / "manifest.json").read_text())["tiny_detector"]
    assert set(entry["metrics"]) == {"map_50", "map", "map_75"}
    assert entry["data"] == {"dataset": "SyntheticScenes", "kwargs": {"length": 4, "seed": 6, "image_size": 64,
                                                                      "classes": ["circle", "square"], "object_size": [16, 24]}}
    model = zoo.load("tiny_detector", weights_dir=tmp_path)
    assert not model.training
    assert zoo.evaluate("tiny_detector", model) == metrics
    assert len(zoo.load_test_set("tiny_detector", weights_dir=tmp_path)) == 4


def test_metric_names_need_a_single_test_set():
    with pytest.raises(ValueError, match="single test set"):
        zoo.ZooModel(build=lambda: None, train_set=lambda: None, test_sets={"a": None, "b": None}, epochs=1,
                     metric_names=("map",))


def test_small_cnn_shapes():
    model = zoo.SmallCNN(5)
    x = torch.rand(2, 3, 64, 64)
    assert model.features(x).shape == (2, 64, 8, 8)
    assert model(x).shape == (2, 5)


def test_segmenter_entries_record_their_test_sets_and_reach_their_goals():
    entries = zoo.manifest()
    for name in ("fcn", "unet", "unet_no_skips", "unet_lesions"):
        assert entries[name]["data"] == zoo.MODELS[name].data
        assert zoo.MODELS[name].train_set.kwargs["seed"] != entries[name]["data"]["kwargs"]["seed"]
    assert entries["fcn"]["data"]["dataset"] == "SceneSegmentation" and entries["fcn"]["data"]["kwargs"]["image_size"] == 128
    assert entries["unet_lesions"]["data"]["dataset"] == "LesionScans"
    test = zoo.load_test_set("unet", seed=5, length=3)
    assert isinstance(test, SceneSegmentation) and len(test) == 3 and test.options == zoo.load_test_set("unet").options
    metrics = {name: entries[name]["metrics"] for name in entries}
    assert metrics["fcn"]["mean_iou"] >= 0.85
    assert metrics["unet"]["mean_iou"] >= 0.90
    # the ablation, trained identically, is far worse at the edges
    assert metrics["unet"]["boundary_iou"] > metrics["unet_no_skips"]["boundary_iou"] + 0.3
    assert zoo.MODELS["unet_no_skips"].epochs == zoo.MODELS["unet"].epochs and not zoo.load("unet_no_skips").skip_connections
    assert metrics["unet_lesions"]["foreground_dice"] >= 0.85


@pytest.mark.parametrize("name", ["fcn", "unet", "unet_lesions"])
def test_shipped_segmenters_map_images_to_logits(name):
    model = zoo.load(name)
    image, mask = zoo.load_test_set(name)[0]
    with torch.no_grad():
        logits = model(image[None])
    assert logits.shape == (1, len(zoo.MODELS[name].classes), *mask.shape)
    assert (logits.argmax(1)[0] == mask).float().mean() > 0.9
def test_mask_rcnn_reaches_its_goal_and_predicts_like_torchvision_mask_rcnn():
    entry = zoo.manifest()["mask_rcnn"]
    assert entry["data"] == zoo.MODELS["mask_rcnn"].data == zoo.manifest()["faster_rcnn"]["data"]  # the same test scenes
    assert entry["metrics"]["mask_map_50"] >= 0.88 and entry["metrics"]["map_50"] >= 0.90
    model = zoo.load("mask_rcnn")
    image, target = zoo.load_test_set("mask_rcnn")[0]
    with torch.no_grad():
        (pred,) = model([image])
    assert set(pred) == {"boxes", "labels", "scores", "masks"}
    assert pred["labels"].dtype == torch.int64 and pred["masks"].shape == (len(pred["boxes"]), 1, *image.shape[1:])
    assert 0.0 <= float(pred["masks"].min()) and float(pred["masks"].max()) <= 1.0
    best = pred["scores"] > 0.5
    assert sorted(pred["labels"][best].tolist()) == sorted(target["labels"].tolist())
