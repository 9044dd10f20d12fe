"""course_utils.viz: every function draws what it is given (patches, texts, images) and rejects bad shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from course_utils import viz
from course_utils.data import make_scene


def image(h: int = 12, w: int = 16) -> torch.Tensor:
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))


BOXES = torch.tensor([[1.0, 2.0, 6.0, 8.0], [0.0, 0.0, 3.0, 3.0], [5.0, 5.0, 5.0, 9.0]])  # the last one has zero width


def rectangles(ax: Axes) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


# --------------------------------------------------------------------------- to_numpy_image, show_image


@pytest.mark.parametrize("shape, expected", [((3, 5, 7), (5, 7, 3)), ((1, 5, 7), (5, 7)), ((5, 7), (5, 7))])
def test_to_numpy_image_shapes(shape, expected):
    assert viz.to_numpy_image(torch.rand(shape)).shape == expected


def test_to_numpy_image_values_and_clipping():
    x = torch.tensor([[[-0.5, 0.25]], [[0.5, 1.5]], [[1.0, 0.0]]])  # [3, 1, 2]
    assert np.array_equal(viz.to_numpy_image(x), np.array([[[0.0, 0.5, 1.0], [0.25, 1.0, 0.0]]], dtype=np.float32))


@pytest.mark.parametrize("shape", [(2, 5, 7), (4, 5, 7), (1, 3, 5, 7), (7,)])
def test_to_numpy_image_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="image"):
        viz.to_numpy_image(torch.rand(shape))


def test_show_image_rejects_non_tensors():
    with pytest.raises(TypeError, match="image"):
        viz.show_image(np.zeros((5, 5)))


def test_show_image_draws_one_image_with_a_title():
    ax = viz.show_image(image(), title="hello")
    assert isinstance(ax, Axes)
    assert len(ax.images) == 1 and ax.images[0].get_array().shape == (12, 16, 3)
    assert ax.get_title() == "hello" and not ax.axison


def test_show_image_uses_the_given_axes():
    _, given = viz.plt.subplots()
    assert viz.show_image(image(), ax=given) is given


# --------------------------------------------------------------------------- draw_boxes


def test_draw_boxes_draws_one_rectangle_and_caption_per_box():
    ax = viz.draw_boxes(image(), BOXES, labels=torch.tensor([1, 2, 1]), scores=[0.9, 0.5, 0.25],
                        class_names=("background", "cat", "dog"))
    assert isinstance(ax, Axes) and len(ax.images) == 1
    rects = rectangles(ax)
    assert len(rects) == 3
    # pixel i spans [i - 0.5, i + 0.5] in imshow's coordinates: a box's edges sit on pixel edges
    assert [(r.get_x(), r.get_y(), r.get_width(), r.get_height()) for r in rects] == [
        (0.5, 1.5, 5.0, 6.0), (-0.5, -0.5, 3.0, 3.0), (4.5, 4.5, 0.0, 4.0)
    ]
    assert [t.get_text() for t in ax.texts] == ["cat 0.90", "dog 0.50", "cat 0.25"]
    assert rects[0].get_edgecolor() == rects[2].get_edgecolor() != rects[1].get_edgecolor()  # colour follows the label


def test_draw_boxes_without_image_labels_or_scores():
    ax = viz.draw_boxes(None, BOXES[:2])
    assert len(ax.images) == 0 and len(rectangles(ax)) == 2 and len(ax.texts) == 0
    ax = viz.draw_boxes(None, BOXES[:2], labels=[3, 4])
    assert [t.get_text() for t in ax.texts] == ["3", "4"]
    ax = viz.draw_boxes(None, BOXES[:2], scores=torch.tensor([0.5, 0.125]), color="red", linestyle="--")
    assert [t.get_text() for t in ax.texts] == ["0.50", "0.12"]
    assert all(r.get_linestyle() == "--" for r in rectangles(ax))
    assert all(r.get_linewidth() == 2.0 for r in rectangles(ax))
    ax = viz.draw_boxes(None, BOXES[:2], linewidth=0.5)
    assert all(r.get_linewidth() == 0.5 for r in rectangles(ax))


def test_draw_boxes_with_no_boxes():
    ax = viz.draw_boxes(image(), torch.zeros(0, 4))
    assert len(rectangles(ax)) == 0 and len(ax.texts) == 0


@pytest.mark.parametrize("boxes", [torch.zeros(2, 3), torch.zeros(4), torch.tensor([[0.0, 0.0, float("nan"), 1.0]])])
def test_draw_boxes_rejects_bad_boxes(boxes):
    with pytest.raises(ValueError, match="boxes"):
        viz.draw_boxes(image(), boxes)


def test_draw_boxes_rejects_mismatched_labels_or_scores():
    with pytest.raises(ValueError, match="labels and scores"):
        viz.draw_boxes(None, BOXES, labels=[1, 2])
    with pytest.raises(ValueError, match="labels and scores"):
        viz.draw_boxes(None, BOXES, scores=[0.5])


# --------------------------------------------------------------------------- overlays


def test_overlay_masks_instance_masks():
    masks = torch.zeros(2, 12, 16, dtype=torch.uint8)
    masks[0, :4, :4] = 1
    masks[1, 6:, 8:] = 1
    ax = viz.overlay_masks(image(), masks, alpha=0.4)
    assert isinstance(ax, Axes) and len(ax.images) == 2
    overlay = ax.images[1].get_array()
    assert overlay.shape == (12, 16, 4)
    alpha = np.asarray(overlay[..., 3])
    assert np.array_equal(alpha > 0, masks.bool().any(0).numpy())  # coloured exactly on the masks
    assert np.allclose(alpha[alpha > 0], 0.4)
    assert not np.allclose(overlay[0, 0, :3], overlay[11, 15, :3])  # one colour per instance


def test_overlay_masks_semantic_mask():
    semantic = torch.zeros(12, 16, dtype=torch.int64)
    semantic[2:5, 2:5] = 3
    ax = viz.overlay_masks(image(), semantic)
    assert len(ax.images) == 2
    assert np.array_equal(np.asarray(ax.images[1].get_array()[..., 3]) > 0, (semantic > 0).numpy())


def test_overlay_masks_with_no_instances_is_transparent():
    ax = viz.overlay_masks(image(), torch.zeros(0, 12, 16))
    assert len(ax.images) == 2 and not np.asarray(ax.images[1].get_array()[..., 3]).any()


@pytest.mark.parametrize("masks", [torch.zeros(1, 2, 12, 16), torch.zeros(16), torch.zeros(2, 6, 8), torch.zeros(12, 15)])
def test_overlay_masks_rejects_bad_shapes(masks):
    with pytest.raises(ValueError, match="masks"):
        viz.overlay_masks(image(), masks)


@pytest.mark.parametrize("shape", [(12, 16), (1, 12, 16), (3, 4)])
def test_overlay_heatmap_any_resolution(shape):
    heatmap = torch.rand(shape)
    ax = viz.overlay_heatmap(image(), heatmap, alpha=0.3)
    assert isinstance(ax, Axes) and len(ax.images) == 2
    shown = np.asarray(ax.images[1].get_array())
    assert shown.shape == (12, 16)  # resized to the image
    assert shown.min() == pytest.approx(0.0) and shown.max() == pytest.approx(1.0)  # min-max scaled
    assert ax.images[1].get_alpha() == 0.3


def test_overlay_heatmap_constant_heatmap_gives_zeros_not_nan():
    ax = viz.overlay_heatmap(image(), torch.full((12, 16), 5.0))
    assert np.array_equal(np.asarray(ax.images[1].get_array()), np.zeros((12, 16), dtype=np.float32))


@pytest.mark.parametrize("shape", [(2, 12, 16), (1, 2, 12, 16), (16,)])
def test_overlay_heatmap_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="heatmap"):
        viz.overlay_heatmap(image(), torch.rand(shape))


# --------------------------------------------------------------------------- show_grid, show_sample


def test_show_grid_layout_and_titles():
    fig = viz.show_grid([image(), image(8, 8), torch.rand(8, 8), image()], titles=list("abcd"), ncols=3)
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 6  # 2 rows × 3 columns
    assert [len(ax.images) for ax in axes] == [1, 1, 1, 1, 0, 0]
    assert [ax.get_title() for ax in axes[:4]] == list("abcd")
    assert not any(ax.axison for ax in axes)


def test_show_grid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="images"):
        viz.show_grid([])
    with pytest.raises(ValueError, match="titles"):
        viz.show_grid([image(), image()], titles=["only one"])
    with pytest.raises(ValueError, match="ncols"):
        viz.show_grid([image()], ncols=0)
    with pytest.raises(ValueError, match="image"):
        viz.show_grid([torch.rand(2, 4, 4)])


def test_show_sample_draws_masks_boxes_and_class_names():
    scene, target = make_scene(4, image_size=48, num_objects=(3, 3), object_size=(10, 16))
    names = ("background", "circle", "square", "triangle", "diamond", "cross")
    ax = viz.show_sample(scene, target, class_names=names)
    assert isinstance(ax, Axes) and len(ax.images) == 2
    assert len(rectangles(ax)) == 3
    assert [t.get_text() for t in ax.texts] == [names[k] for k in target["labels"].tolist()]
    without_masks = {k: v for k, v in target.items() if k != "masks"}
    ax = viz.show_sample(scene, {**without_masks, "scores": torch.tensor([0.5, 0.25, 0.75])})
    assert len(ax.images) == 1 and len(ax.texts) == 3 and ax.texts[0].get_text().endswith("0.50")


# --------------------------------------------------------------------------- stretch


def test_stretch_maps_min_max_to_unit_range_linearly():
    x = torch.tensor([[[0.4, 0.45], [0.5, 0.6]]]).expand(3, 2, 2)
    out = viz.stretch(x)
    assert out.shape == x.shape and out.min() == 0 and out.max() == 1
    torch.testing.assert_close(out, (x - 0.4) / 0.2)  # the same affine map for every pixel
    assert np.allclose(viz.stretch(torch.tensor([-3.0, 1.0, 5.0])).numpy(), [0, 0.5, 1])


def test_stretch_of_a_constant_image_is_zero_and_bad_input_is_named():
    assert torch.equal(viz.stretch(torch.full((3, 4, 4), 0.7)), torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="image"):
        viz.stretch(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="image"):
        viz.stretch(torch.zeros(0))
    with pytest.raises(TypeError, match="image"):
        viz.stretch([0.0, 1.0])
