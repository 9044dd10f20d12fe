"""The embedding explorer's pure functions, headless: embeddings against scikit-learn and umap-learn,
the cache, thumbnail placement, the scores against scikit-learn, the figure and the controls."""

from __future__ import annotations

import inspect
import math

import ipywidgets as W
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.colors import to_rgba
from matplotlib.offsetbox import AnnotationBbox
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, trustworthiness
from sklearn.model_selection import LeaveOneOut, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

from course_utils.viz import to_numpy_image
from course_utils.widgets import (
    EmbeddingCache,
    add_thumbnails,
    embed,
    embedding_explorer,
    embedding_figure,
    explorer_scores,
    scatter_embedding,
    spread_indices,
)
from course_utils.widgets import _base as dashboard_module
from course_utils.widgets import embeddings as embeddings_widget

NAMES = ("circle", "square", "triangle", "diamond", "cross")


def clusters(n: int, dim: int, classes: int, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` float32 points around ``classes`` random centres in ``dim`` dimensions, and their int64 labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes  # every class present
    centres = rng.normal(size=(classes, dim)) * 3
    points = centres[labels] + spread * rng.normal(size=(n, dim))
    return torch.tensor(points, dtype=torch.float32), torch.tensor(labels)


def sklearn_knn_accuracy(points: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Leave-one-out accuracy of scikit-learn's k-NN classifier."""
    predicted = cross_val_predict(KNeighborsClassifier(n_neighbors=k), points, labels, cv=LeaveOneOut())
    return float((predicted == labels).mean())


# --------------------------------------------------------------------------- embed


@pytest.mark.parametrize("parameter", [None, 7, 2.5])
def test_embed_pca_equals_sklearn_and_ignores_the_parameter(parameter):
    features, _ = clusters(50, 8, 3, 1.0, seed=0)
    expected = PCA(n_components=2, random_state=0).fit_transform(features.double().numpy())
    embedding = embed(features, "pca", parameter)
    assert embedding.shape == (50, 2) and embedding.dtype == torch.float32
    np.testing.assert_allclose(embedding.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("perplexity, seed", [(5, 3), (12.5, 0), (None, 1)])
def test_embed_tsne_passes_the_perplexity_to_sklearn(perplexity, seed):
    features, _ = clusters(40, 5, 3, 0.5, seed=1)
    options = {} if perplexity is None else {"perplexity": perplexity}
    expected = TSNE(n_components=2, random_state=seed, **options).fit_transform(features.double().numpy())
    np.testing.assert_allclose(embed(features, "tsne", perplexity, seed=seed).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_embed_umap_passes_n_neighbors_to_umap_and_the_defaults_are_the_libraries():
    import umap  # imported here: umap-learn compiles its numba code on the first fit (seconds)

    assert embeddings_widget.LIBRARY_DEFAULTS == {
        "tsne": inspect.signature(TSNE).parameters["perplexity"].default,
        "umap": inspect.signature(umap.UMAP).parameters["n_neighbors"].default,
    }
    features, _ = clusters(30, 4, 3, 0.5, seed=2)
    expected = umap.UMAP(n_components=2, n_neighbors=5, random_state=4, n_jobs=1).fit_transform(features.double().numpy())
    np.testing.assert_allclose(embed(features, "umap", 5, seed=4).numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "method, parameter, error, match",
    [
        ("tsne", 40, ValueError, r"smaller than the number of points \(40\), got 40"),
        ("tsne", 0, ValueError, "parameter must be a finite number > 0"),
        ("tsne", math.nan, ValueError, "parameter must be a finite number > 0"),
        ("tsne", "30", TypeError, "parameter must be a number"),
        ("tsne", True, TypeError, "parameter must be a number"),
        ("umap", 1, ValueError, "n_neighbors.*at least 2"),
        ("umap", 5.0, TypeError, "parameter must be an int"),
        ("umap", 41, ValueError, r"UMAP's n_neighbors\) must be smaller than the number of points"),
        ("lda", None, ValueError, "method must be one of 'pca', 'tsne', 'umap'"),
    ],
)
def test_embed_rejects_bad_methods_and_parameters_before_any_fit(method, parameter, error, match):
    features, _ = clusters(40, 3, 2, 1.0, seed=0)
    with pytest.raises(error, match=match):
        embed(features, method, parameter)
    with pytest.raises(error, match=match):
        EmbeddingCache(features)(method, parameter)


@pytest.mark.parametrize(
    "features, error, match",
    [
        (np.zeros((5, 3)), TypeError, "features must be a torch.Tensor"),
        (torch.zeros(5), ValueError, "features must have 2 dimensions"),
        (torch.zeros(5, 3, dtype=torch.int64), TypeError, "features must have a floating-point dtype"),
        (torch.tensor([[0.0, 1.0], [math.inf, 0.0], [1.0, 1.0]]), ValueError, "features contains NaN or infinite"),
    ],
)
def test_embed_rejects_bad_features(features, error, match):
    with pytest.raises(error, match=match):
        embed(features, "pca")


# --------------------------------------------------------------------------- the cache


def test_the_cache_computes_each_method_and_parameter_once(monkeypatch):
    features, _ = clusters(40, 5, 3, 0.5, seed=3)
    calls = []

    def counting_embed(*args):
        calls.append(args[1:])
        return embed(*args)

    monkeypatch.setattr(embeddings_widget, "embed", counting_embed)
    cache = EmbeddingCache(features, seed=2)
    first = cache("pca", 30)
    assert cache("pca", 5) is first and cache("pca") is first  # PCA has no parameter: one embedding
    small, large = cache("tsne", 5), cache("tsne", 20)
    assert cache("tsne", 5) is small and cache("tsne", 20) is large and not torch.equal(small, large)
    assert calls == [("pca", None, 2), ("tsne", 5.0, 2), ("tsne", 20.0, 2)] and len(cache) == 3
    torch.testing.assert_close(small, embed(features, "tsne", 5, seed=2))


def test_the_cache_rejects_bad_features_and_seeds():
    with pytest.raises(ValueError, match="features must have 2 dimensions"):
        EmbeddingCache(torch.zeros(4))
    with pytest.raises(ValueError, match="seed must be non-negative"):
        EmbeddingCache(torch.zeros(4, 2), seed=-1)


# --------------------------------------------------------------------------- spread_indices


def farthest_points(points: np.ndarray, count: int) -> list[int]:
    """Farthest-point sampling written out point by point: the reference for spread_indices."""
    if count == 0:
        return []
    centre = points.mean(axis=0)
    to_centre = [float(np.linalg.norm(p - centre)) for p in points]
    chosen = [min(range(len(points)), key=lambda i: (to_centre[i], i))]
    while len(chosen) < min(count, len(points)):
        candidates = [i for i in range(len(points)) if i not in chosen]
        gap = {i: min(float(np.linalg.norm(points[i] - points[j])) for j in chosen) for i in candidates}
        chosen.append(min(candidates, key=lambda i: (-gap[i], i)))
    return chosen


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 25),
    count=st.integers(0, 30),
    grid=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_spread_indices_is_farthest_point_sampling(n, count, grid, seed):
    rng = np.random.default_rng(seed)
    # integer points on a small grid: many equal distances and duplicates, to test the ties
    points = rng.integers(0, 4, size=(n, 2)).astype(np.float64) if grid else rng.normal(size=(n, 2))
    indices = spread_indices(torch.from_numpy(points), count)
    assert indices.dtype == torch.int64 and len(indices) == min(count, n)
    assert len(set(indices.tolist())) == len(indices)  # each point at most once, even among duplicates
    assert indices.tolist() == farthest_points(points, count)


def test_spread_indices_starts_at_the_centre_and_then_takes_the_extremes():
    points = torch.tensor([[0.0, 0.0], [10.0, 0.0], [5.0, 0.1], [4.0, 0.0], [-1.0, 0.0]])
    # centroid (3.6, 0.02): nearest is [4, 0]; farthest from it [10, 0] (6 away), then [-1, 0] (5 from [4, 0]);
    # then [5, 0.1] (1.005 from [4, 0]) before [0, 0] (1 from [-1, 0])
    assert spread_indices(points, 3).tolist() == [3, 1, 4]
    assert spread_indices(points, 99).tolist() == [3, 1, 4, 2, 0]
    assert spread_indices(points, 0).tolist() == []


@pytest.mark.parametrize(
    "points, count, error, match",
    [
        (torch.zeros(3), 2, ValueError, "points must have 2 dimensions"),
        (torch.tensor([[0.0, math.nan]]), 1, ValueError, "points contains NaN"),
        (torch.zeros(3, 2), -1, ValueError, "count must be non-negative"),
        (torch.zeros(3, 2), 1.0, TypeError, "count must be an int"),
    ],
)
def test_spread_indices_rejects_bad_input(points, count, error, match):
    with pytest.raises(error, match=match):
        spread_indices(points, count)


# --------------------------------------------------------------------------- scores


@pytest.mark.parametrize("spread, k, seed", [(0.3, 5, 0), (2.0, 10, 1), (4.0, 3, 2)])
def test_explorer_scores_equal_sklearn(spread, k, seed):
    features, labels = clusters(45, 6, 3, spread, seed)
    embedding = embed(features, "pca")
    scores = explorer_scores(features, embedding, labels, k)
    x, y, t = features.double().numpy(), embedding.double().numpy(), labels.numpy()
    assert scores["trustworthiness"] == pytest.approx(trustworthiness(x, y, n_neighbors=k), abs=1e-12)
    assert scores["knn_accuracy"] == pytest.approx(sklearn_knn_accuracy(y, t, k), abs=1e-12)
    assert scores["knn_accuracy_features"] == pytest.approx(sklearn_knn_accuracy(x, t, k), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(12, 40), classes=st.integers(2, 5), spread=st.floats(0.1, 5.0), seed=st.integers(0, 2**16))
def test_a_2d_picture_of_2d_features_is_perfectly_trustworthy(n, classes, spread, seed):
    features, labels = clusters(n, 2, classes, spread, seed)
    scores = explorer_scores(features, features.clone(), labels, k=5)
    assert scores["trustworthiness"] == pytest.approx(1.0)
    assert scores["knn_accuracy"] == scores["knn_accuracy_features"]
    assert 0.0 <= scores["knn_accuracy"] <= 1.0


# --------------------------------------------------------------------------- drawing


def point_colours(ax) -> list[tuple[np.ndarray, np.ndarray]]:
    """(offsets, rgba) of each scatter collection of ``ax``."""
    return [(c.get_offsets().data, c.get_facecolor()) for c in ax.collections]


def test_scatter_colours_every_class_and_names_it_in_the_legend():
    embedding, labels = clusters(30, 2, 5, 0.5, seed=4)
    ax = scatter_embedding(embedding, labels, NAMES, title="t")
    drawn = point_colours(ax)
    assert len(drawn) == 5 and sum(len(offsets) for offsets, _ in drawn) == 30
    for k, (offsets, colour) in enumerate(drawn):
        np.testing.assert_allclose(offsets, embedding[labels == k].numpy())
        np.testing.assert_allclose(colour[0], to_rgba(embeddings_widget.COLORS[k]))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(NAMES)
    assert ax.get_title() == "t" and ax.get_xticks().size == 0


def test_scatter_highlight_greys_out_the_other_classes_and_draws_the_class_on_top():
    embedding, labels = clusters(30, 2, 5, 0.5, seed=5)
    ax = scatter_embedding(embedding, labels, NAMES, highlight=3)
    for k, collection in enumerate(ax.collections):
        expected = embeddings_widget.COLORS[3] if k == 3 else embeddings_widget.OTHER_COLOR
        np.testing.assert_allclose(collection.get_facecolor()[0], to_rgba(expected))
        assert collection.get_zorder() == (3 if k == 3 else 2)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["diamond", "other classes"]


def test_scatter_skips_absent_classes_and_names_classes_by_default():
    embedding = torch.rand(6, 2)
    ax = scatter_embedding(embedding, torch.tensor([0, 0, 2, 2, 2, 0]))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["class 0", "class 2"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(embedding=torch.rand(4, 3)), ValueError, r"embedding must have shape \[N, 2\]"),
        (dict(labels=torch.tensor([0, 1, 2])), ValueError, "one label per point: 4 points, 3 labels"),
        (dict(labels=torch.tensor([0.0, 1.0, 0.0, 1.0])), TypeError, "labels must hold integer class indices"),
        (dict(labels=torch.tensor([0, -1, 0, 1])), ValueError, "labels must be >= 0"),
        (dict(class_names=["a"]), ValueError, "class_names must name every class: labels go up to 1"),
        (dict(class_names="ab"), ValueError, "class_names must name every class"),
        (dict(class_names=[str(k) for k in range(11)]), ValueError, "at most 10 classes"),
        (dict(highlight=2), ValueError, r"highlight must be a class index below 2"),
        (dict(highlight=-1), ValueError, "highlight must be non-negative"),
    ],
)
def test_scatter_rejects_bad_input(kwargs, error, match):
    arguments = {"embedding": torch.rand(4, 2), "labels": torch.tensor([0, 1, 0, 1]), **kwargs}
    with pytest.raises(error, match=match):
        scatter_embedding(arguments.pop("embedding"), arguments.pop("labels"), **arguments)


def test_thumbnails_show_each_image_at_its_point():
    embedding, _ = clusters(12, 2, 3, 1.0, seed=6)
    images = torch.rand(12, 3, 8, 8)
    ax = scatter_embedding(embedding, torch.zeros(12, dtype=torch.int64))
    boxes = add_thumbnails(ax, embedding, images, torch.tensor([3, 7, 0]))
    assert [b for b in ax.artists if isinstance(b, AnnotationBbox)] == boxes
    for box, i in zip(boxes, [3, 7, 0]):
        assert box.xy == pytest.approx(tuple(embedding[i].tolist()))
        np.testing.assert_array_equal(box.offsetbox.get_data(), to_numpy_image(images[i]))
    with pytest.raises(ValueError, match="embedding and images must have the same length"):
        add_thumbnails(ax, embedding, images[:5], torch.tensor([0]))


# --------------------------------------------------------------------------- the explorer's figure


def bar_values(ax) -> list[float]:
    return [patch.get_width() for patch in ax.patches]


def test_the_figure_draws_the_embedding_its_scores_and_thumbnails():
    features, labels = clusters(40, 6, 5, 1.0, seed=7)
    images = torch.rand(40, 3, 8, 8)
    fig = embedding_figure(features, labels, "pca", 30, images=images, class_names=NAMES, k=5, thumbnails=6)
    ax_map, ax_scores = fig.axes
    embedding = embed(features, "pca")
    drawn = np.concatenate([offsets for offsets, _ in point_colours(ax_map)])
    np.testing.assert_allclose(np.sort(drawn, axis=0), np.sort(embedding.numpy(), axis=0), atol=1e-6)
    assert ax_map.get_title().startswith("PCA")
    scores = explorer_scores(features, embedding, labels, k=5)
    expected_bars = [scores["trustworthiness"], scores["knn_accuracy"], scores["knn_accuracy_features"]]
    assert bar_values(ax_scores) == pytest.approx(expected_bars)
    bar_names = [t.get_text() for t in ax_scores.get_yticklabels()]
    assert bar_names == ["trustworthiness\n(2-D)", "5-NN accuracy\n(2-D)", "5-NN accuracy\n(6-D features)"]
    assert ax_scores.lines[0].get_xdata()[0] == pytest.approx(1 / 5)  # chance
    thumbnails = [a for a in ax_map.artists if isinstance(a, AnnotationBbox)]
    expected = spread_indices(embedding, 6).tolist()
    assert [tuple(t.xy) for t in thumbnails] == [pytest.approx(tuple(embedding[i].tolist())) for i in expected]


def test_the_figure_shows_only_the_highlighted_class_thumbnails_and_uses_a_given_embedding():
    features, labels = clusters(40, 6, 4, 1.0, seed=8)
    embedding = torch.rand(40, 2) * 10
    fig = embedding_figure(features, labels, "tsne", 12, highlight=1, images=torch.rand(40, 3, 8, 8), embedding=embedding)
    ax_map, ax_scores = fig.axes
    assert ax_map.get_title() == "t-SNE (perplexity = 12)"
    in_class = {tuple(p) for p in embedding[labels == 1].tolist()}
    thumbnails = [a for a in ax_map.artists if isinstance(a, AnnotationBbox)]
    assert len(thumbnails) == 8 and all(tuple(t.xy) in in_class for t in thumbnails)
    assert bar_values(ax_scores)[1] == pytest.approx(explorer_scores(features, embedding, labels)["knn_accuracy"])


def test_the_figure_titles_name_the_library_default_and_skip_thumbnails_without_images():
    features, labels = clusters(40, 6, 4, 1.0, seed=9)
    embedding = torch.rand(40, 2)
    assert embedding_figure(features, labels, "umap", embedding=embedding).axes[0].get_title() == "UMAP (n_neighbors = 15)"
    fig = embedding_figure(features, labels, "tsne", embedding=embedding, thumbnails=5)
    assert fig.axes[0].get_title() == "t-SNE (perplexity = 30)" and not fig.axes[0].artists


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(images=torch.rand(39, 3, 8, 8)), ValueError, "features and images must have the same length"),
        (dict(images=torch.rand(40, 8, 8)), ValueError, "images must have 4 dimensions"),
        (dict(embedding=torch.rand(39, 2)), ValueError, "features and embedding must have the same length"),
        (dict(method="tsne", parameter=40), ValueError, "smaller than the number of points"),
        (dict(k=20), ValueError, "k must be smaller than half the number of points"),
        (dict(thumbnails=-1), ValueError, "thumbnails must be non-negative"),
        (dict(highlight=4), ValueError, "highlight must be a class index below 4"),
    ],
)
def test_the_figure_rejects_bad_input(kwargs, error, match):
    features, labels = clusters(40, 6, 4, 1.0, seed=10)
    with pytest.raises(error, match=match):
        embedding_figure(features, labels, **kwargs)


# --------------------------------------------------------------------------- the widget


def test_the_explorer_has_its_three_controls_and_redraws_from_its_cache(monkeypatch):
    shown = []
    monkeypatch.setattr(dashboard_module, "display", shown.append)  # what the live output would show
    calls = []

    def counting_embed(*args):
        calls.append(args[1:3])
        return embed(*args)

    monkeypatch.setattr(embeddings_widget, "embed", counting_embed)
    features, labels = clusters(40, 6, 5, 1.0, seed=11)
    box = embedding_explorer(features, labels, images=torch.rand(40, 3, 8, 8), class_names=NAMES)
    controls = {c.description: c for c in box.children[1].children}
    assert set(controls) == {"method", "perplexity / n_neighbors", "highlight"}
    method, parameter, highlight = controls["method"], controls["perplexity / n_neighbors"], controls["highlight"]
    assert [value for _, value in method.options] == ["pca", "tsne", "umap"] and method.value == "pca"
    assert parameter.disabled and (parameter.min, parameter.max, parameter.value) == (2, 39, 30)  # < N for t-SNE
    assert [label for label, _ in highlight.options] == ["all classes", *NAMES]
    assert highlight.value == embeddings_widget.ALL_CLASSES and highlight.index == 0  # a valid value: not shown blank
    assert highlight.label == "all classes"

    method.value = "tsne"
    assert not parameter.disabled
    parameter.value = 10
    highlight.value = 2  # the same embedding again: from the cache
    method.value = "pca"
    assert parameter.disabled
    titles = [fig.axes[0].get_title() for fig in shown]
    assert titles[1:4] == ["t-SNE (perplexity = 30)", "t-SNE (perplexity = 10)", "t-SNE (perplexity = 10)"]
    assert titles[0].startswith("PCA") and titles[4] == titles[0] and len(shown) == 5
    assert calls == [("pca", None), ("tsne", 30.0), ("tsne", 10.0)]
    assert [t.get_text() for t in shown[3].axes[0].get_legend().get_texts()] == ["triangle", "other classes"]


def test_the_explorer_checks_its_inputs_up_front():
    features, labels = clusters(20, 3, 2, 1.0, seed=12)
    with pytest.raises(ValueError, match="features and images must have the same length"):
        embedding_explorer(features, labels, images=torch.rand(19, 3, 8, 8))
    with pytest.raises(ValueError, match="one label per point"):
        embedding_explorer(features, labels[:5])
