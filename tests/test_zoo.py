"""The model zoo: shipped checkpoints load, match their manifest and still reach their metrics."""

import json
import shutil

import pytest
import torch

from course_utils import zoo


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_manifest_entry_is_complete(name):
    entry = zoo.manifest()[name]
    assert entry["file"] == f"{name}.pt"
    assert len(entry["sha256"]) == 64
    assert entry["command"] == f"python -m course_utils.zoo train {name}"
    assert set(entry["metrics"]) == set(zoo.MODELS[name].test_sets)
    assert entry["classes"] == list(zoo.MODELS[name].classes)


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


def test_spurious_model_fails_when_the_backgrounds_swap():
    metrics = zoo.manifest()["spurious_cnn"]["metrics"]
    assert metrics["test_accuracy_same_backgrounds"] > 0.9
    assert metrics["test_accuracy_swapped_backgrounds"] < 0.2


def test_shipped_weights_stay_small():
    total = sum(p.stat().st_size for p in zoo.WEIGHTS_DIR.glob("*.pt"))
    assert total < 5_000_000


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


def test_small_cnn_shapes():
    model = zoo.SmallCNN(5)
    x = torch.rand(2, 3, 64, 64)
    assert model.features(x).shape == (2, 64, 8, 8)
    assert model(x).shape == (2, 5)
