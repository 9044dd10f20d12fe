"""load_scenes: a classification data set as one batch, with the masks, boxes and backgrounds that explanations are scored against."""

from __future__ import annotations

import pytest
import torch

from course_utils.data import SceneClassification, SpuriousScenes, SyntheticScenes, load_scenes


@pytest.mark.parametrize(
    "dataset",
    [SceneClassification(7, seed=3), SpuriousScenes(9, seed=4, split="test"), SceneClassification(5, seed=1, image_size=48)],
    ids=["shapes", "spurious", "48px"],
)
def test_load_scenes_is_every_scene_stacked_in_order(dataset):
    batch = load_scenes(dataset)
    n, size = len(dataset), dataset.options["image_size"]
    assert batch["images"].shape == (n, 3, size, size) and batch["images"].dtype == torch.float32
    assert batch["labels"].dtype == torch.int64 and batch["masks"].dtype == torch.bool
    assert batch["masks"].shape == (n, size, size) and len(batch["boxes"]) == n
    for i in range(n):
        image, target = dataset.scene(i)
        assert torch.equal(batch["images"][i], image)
        assert int(batch["labels"][i]) == dataset[i][1]  # the classifier's class, from 0
        assert torch.equal(batch["masks"][i], target["masks"][0].bool())
        assert torch.equal(batch["boxes"][i], target["boxes"]) and batch["boxes"][i].shape == (1, 4)
        if isinstance(dataset, SpuriousScenes):
            assert int(batch["backgrounds"][i]) == int(target["background"])


def test_load_scenes_masks_lie_in_their_boxes():
    batch = load_scenes(SceneClassification(12, seed=8))
    for mask, box in zip(batch["masks"], batch["boxes"]):
        rows, cols = mask.nonzero(as_tuple=True)
        x1, y1, x2, y2 = box[0].tolist()
        assert mask.any() and cols.min() == x1 and cols.max() + 1 == x2 and rows.min() == y1 and rows.max() + 1 == y2


def test_load_scenes_backgrounds_follow_the_split():
    # on the training split the background agrees with the class in ~95 % of scenes, on the test split in ~5 %
    train = load_scenes(SpuriousScenes(200, seed=21, split="train"))
    test = load_scenes(SpuriousScenes(200, seed=21, split="test"))
    assert set(train["backgrounds"].tolist()) == {0, 1}
    assert (train["backgrounds"] == train["labels"]).float().mean() > 0.85
    assert (test["backgrounds"] == test["labels"]).float().mean() < 0.15


def test_load_scenes_has_backgrounds_only_for_spurious_scenes():
    assert set(load_scenes(SceneClassification(2))) == {"images", "labels", "masks", "boxes"}
    assert set(load_scenes(SpuriousScenes(2))) == {"images", "labels", "masks", "boxes", "backgrounds"}


@pytest.mark.parametrize("dataset", [SyntheticScenes(3), [torch.zeros(3, 8, 8)], None])
def test_load_scenes_rejects_other_data_sets(dataset):
    with pytest.raises(TypeError, match="dataset must be a SceneClassification"):
        load_scenes(dataset)
