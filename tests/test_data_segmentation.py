"""The segmentation data sets: SceneSegmentation (the scenes' semantic masks) and LesionScans."""

from __future__ import annotations

import pytest
import torch
from scipy import ndimage

from course_utils.data import SHAPES, LesionScans, SceneSegmentation, SyntheticScenes, make_lesion_scan


def test_scene_segmentation_gives_the_scenes_semantic_masks():
    kwargs = dict(length=5, seed=3, image_size=64, classes=SHAPES, object_size=(8, 24))
    seg, scenes = SceneSegmentation(**kwargs), SyntheticScenes(**kwargs)
    for i in range(5):
        image, mask = seg[i]
        scene_image, target = scenes[i]
        assert torch.equal(image, scene_image) and torch.equal(mask, target["semantic_mask"])
        assert mask.dtype == torch.int64 and mask.shape == (64, 64)
        assert torch.equal(seg.scene(i)[1]["masks"], target["masks"])
    assert seg.class_names == ("background", *SHAPES)


def test_lesion_scans_have_the_documented_format():
    data = LesionScans(40, seed=0)
    counts = []
    for i in range(len(data)):
        image, mask = data[i]
        _, lesions = data.lesions(i)
        assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])  # grey level
        assert mask.dtype == torch.int64 and set(mask.unique().tolist()) <= {0, 1}
        assert lesions.dtype == torch.uint8 and lesions.shape[1:] == (64, 64)
        assert torch.equal(mask, lesions.bool().any(0).long())
        assert int(lesions.sum(0).max()) <= 1  # lesions never overlap ...
        if len(lesions) > 1:  # ... nor touch
            grown = [torch.from_numpy(ndimage.binary_dilation(m.numpy())) for m in lesions.bool()]
            assert int(torch.stack(grown).sum(0).max()) <= 1
        for lesion in lesions.bool():
            _, n_parts = ndimage.label(lesion.numpy())
            assert n_parts == 1  # one blob each
        counts.append(len(lesions))
    assert set(counts) == {1, 2, 3}


def test_lesions_vary_in_size_and_contrast():
    data = LesionScans(60, seed=1)
    areas, contrasts = [], []
    for i in range(len(data)):
        image, lesions = data.lesions(i)
        for lesion in lesions.bool():
            ring = torch.from_numpy(ndimage.binary_dilation(lesion.numpy(), iterations=3)) & ~lesion
            areas.append(int(lesion.sum()))
            contrasts.append(float(image[0][lesion].mean() - image[0][ring].mean()))
    diameters = torch.tensor(areas, dtype=torch.float64).div(torch.pi).sqrt() * 2
    assert float(diameters.min()) < 7 and float(diameters.max()) > 17  # 4-20 px lesions
    assert min(contrasts) > 0 and min(contrasts) < 0.15 and max(contrasts) > 0.25  # all brighter, some faint


def test_lesion_scans_are_seeded():
    a, b, c = LesionScans(4, seed=5), LesionScans(4, seed=5), LesionScans(4, seed=6)
    assert torch.equal(a[3][0], b[3][0]) and torch.equal(a[3][1], b[3][1])
    assert not torch.equal(a[3][0], c[3][0])
    assert torch.equal(a[-1][0], a[3][0])
    state = torch.random.get_rng_state()
    a[0]
    assert torch.equal(state, torch.random.get_rng_state())


def test_lesion_scans_options():
    data = LesionScans(20, seed=0, image_size=32, num_lesions=(2, 2), lesion_size=(6, 8), contrast=(0.5, 0.5))
    for i in range(len(data)):
        image, lesions = data.lesions(i)
        assert image.shape == (3, 32, 32) and len(lesions) == 2
    empty_image, empty = make_lesion_scan(0, num_lesions=(0, 0))
    assert empty.shape == (0, 64, 64) and empty_image.shape == (3, 64, 64)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(length=0), ValueError, "length"),
        (dict(length=2, seed=-1), ValueError, "seed"),
        (dict(length=2, image_size=0), ValueError, "image_size"),
        (dict(length=2, num_lesions=(3, 1)), ValueError, "num_lesions"),
        (dict(length=2, num_lesions=2), TypeError, "num_lesions"),
        (dict(length=2, lesion_size=(0, 4)), ValueError, "lesion_size"),
        (dict(length=2, lesion_size=(4, 40)), ValueError, "lesion_size"),
        (dict(length=2, contrast=(0.5, 0.1)), ValueError, "contrast"),
        (dict(length=2, contrast=(0.1, 1.5)), ValueError, "contrast"),
        (dict(length=2, contrast=0.3), TypeError, "contrast"),
    ],
)
def test_lesion_scans_reject_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        LesionScans(**kwargs)


def test_lesion_scans_reject_bad_indices():
    data = LesionScans(3)
    with pytest.raises(IndexError):
        data[3]
    with pytest.raises(TypeError, match="index"):
        data[1.0]
