"""Embedding explorer: a late layer's features drawn in 2-D by PCA, t-SNE or UMAP, and scored.

Pick the method, its one knob (t-SNE's perplexity, UMAP's n_neighbors; PCA has none) and a
class to highlight; see the scatter (with thumbnails of a few images when they are given) next
to the scores: trustworthiness and k-NN accuracy in 2-D, and k-NN accuracy in the features.
"""

from __future__ import annotations

from typing import Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from torch import Tensor

from ..validation import check_choice, check_finite, check_positive_int, check_positive_number, check_same_length, check_tensor
from ..viz import to_numpy_image
from ..xai import embed_2d, embedding_scores
from ..xai.embeddings import knn_accuracy
from ._base import dashboard

__all__ = [
    "EMBEDDING_PARAMETERS", "LIBRARY_DEFAULTS", "EmbeddingCache", "embed", "spread_indices", "scatter_embedding", "add_thumbnails",
    "explorer_scores", "embedding_figure", "embedding_explorer",
]  # fmt: skip

EMBEDDING_PARAMETERS = {"pca": None, "tsne": "perplexity", "umap": "n_neighbors"}  # each method's one knob
LIBRARY_DEFAULTS = {"tsne": 30.0, "umap": 15}  # sklearn's TSNE and umap-learn's UMAP, used when parameter is None
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
COLORS = plt.get_cmap("tab10").colors
OTHER_COLOR = (0.82, 0.82, 0.82)
ALL_CLASSES = -1  # the highlight dropdown's value for "all classes" (a Dropdown whose value is None shows blank)


def _check_parameter(method: str, parameter: float | int | None, n: int) -> float | int | None:
    """The method's knob for ``n`` points: t-SNE ``0 < perplexity < n``, UMAP ``2 <= n_neighbors < n``; None for PCA."""
    if method == "pca" or parameter is None:
        return None
    if method == "tsne":
        parameter = check_positive_number(parameter, "parameter")
    else:
        parameter = check_positive_int(parameter, "parameter")
        if parameter < 2:
            raise ValueError(f"parameter (UMAP's n_neighbors) must be at least 2, got {parameter}")
    if parameter >= n:
        knob = f"{METHOD_NAMES[method]}'s {EMBEDDING_PARAMETERS[method]}"
        raise ValueError(f"parameter ({knob}) must be smaller than the number of points ({n}), got {parameter}")
    return parameter


def embed(features: Tensor, method: str = "pca", parameter: float | int | None = None, seed: int = 0) -> Tensor:
    """``xai.embed_2d`` with the method's one knob: Tensor[N, D] features → Tensor[N, 2].

    Args:
        features (Tensor[N, D]): one row per sample.
        method (str): ``"pca"``, ``"tsne"`` or ``"umap"``.
        parameter (float or int or None): t-SNE's ``perplexity`` (``0 < perplexity < N``) or UMAP's
            ``n_neighbors`` (``2 <= n_neighbors < N``); None keeps the library's default (``LIBRARY_DEFAULTS``).
            PCA has no such knob: the value is ignored.
        seed (int): the estimator's random state.
    """
    features = check_tensor(features, "features", ndim=2, floating=True)
    method = check_choice(method, "method", tuple(EMBEDDING_PARAMETERS))
    parameter = _check_parameter(method, parameter, len(features))
    options = {} if parameter is None else {EMBEDDING_PARAMETERS[method]: parameter}
    return embed_2d(features, method, seed=seed, **options)


class EmbeddingCache:
    """The embeddings of one feature matrix, each computed once per ``(method, parameter)``.

    t-SNE and UMAP take seconds; the explorer asks again for an embedding it has already drawn
    whenever only the highlighted class changes. The returned tensors are shared: do not modify them.
    """

    def __init__(self, features: Tensor, seed: int = 0) -> None:
        self.features = check_tensor(features, "features", ndim=2, floating=True)
        self.seed = check_positive_int(seed, "seed", allow_zero=True)
        self._embeddings: dict[tuple[str, float | int | None], Tensor] = {}

    def __len__(self) -> int:
        return len(self._embeddings)

    def __call__(self, method: str, parameter: float | int | None = None) -> Tensor:
        """:func:`embed` of the features (Tensor[N, 2]), from the cache when it was computed before."""
        method = check_choice(method, "method", tuple(EMBEDDING_PARAMETERS))
        key = (method, _check_parameter(method, parameter, len(self.features)))
        if key not in self._embeddings:
            self._embeddings[key] = embed(self.features, method, key[1], self.seed)
        return self._embeddings[key]


def spread_indices(points: Tensor, count: int) -> Tensor:
    """``min(count, N)`` indices of points far apart from each other (farthest-point sampling).

    The first index is the point nearest to the centroid; each next one is the point farthest
    from those already chosen (its distance to the nearest chosen one is the largest; ties go
    to the lowest index). Used to place thumbnails that do not cover each other.

    Args:
        points (Tensor[N, d]): the points.
        count (int): how many to choose.

    Returns:
        Tensor[min(count, N)]: int64 indices, in the order they were chosen.
    """
    points = check_finite(check_tensor(points, "points", ndim=2, floating=True), "points")
    count = min(check_positive_int(count, "count", allow_zero=True), len(points))
    if count == 0:
        return torch.zeros(0, dtype=torch.int64)

    def distances_to(i: int) -> Tensor:
        return torch.linalg.vector_norm(points - points[i], dim=1)  # [N]

    chosen = [int(torch.linalg.vector_norm(points - points.mean(dim=0), dim=1).argmin())]
    nearest_chosen = distances_to(chosen[0])  # [N]: distance to the nearest chosen point
    for _ in range(count - 1):
        nearest_chosen[chosen] = -1.0  # never pick a point twice, even among duplicates
        chosen.append(int(nearest_chosen.argmax()))
        nearest_chosen = torch.minimum(nearest_chosen, distances_to(chosen[-1]))
    return torch.tensor(chosen, dtype=torch.int64)


def _check_labels(labels: Tensor, n: int, class_names: Sequence[str] | None) -> list[str]:
    """Require ``n`` integer labels in ``[0, len(class_names))``; return the class names (default ``"class k"``)."""
    labels = check_tensor(labels, "labels", ndim=1)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must hold integer class indices, got dtype {labels.dtype}")
    if len(labels) != n:
        raise ValueError(f"labels must hold one label per point: {n} points, {len(labels)} labels")
    if len(labels) and int(labels.min()) < 0:
        raise ValueError("labels must be >= 0")
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    if class_names is None:
        return [f"class {k}" for k in range(num_classes)]
    if isinstance(class_names, str) or len(class_names) < num_classes:
        raise ValueError(f"class_names must name every class: labels go up to {num_classes - 1}, got {class_names!r}")
    if len(class_names) > len(COLORS):
        raise ValueError(f"class_names: at most {len(COLORS)} classes can be told apart by colour, got {len(class_names)}")
    return list(class_names)


def _check_highlight(highlight: int | None, names: Sequence[str]) -> int | None:
    if highlight is None:
        return None
    highlight = check_positive_int(highlight, "highlight", allow_zero=True)
    if highlight >= len(names):
        raise ValueError(f"highlight must be a class index below {len(names)} (or None), got {highlight}")
    return highlight


def scatter_embedding(
    embedding: Tensor,
    labels: Tensor,
    class_names: Sequence[str] | None = None,
    *,
    highlight: int | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    size: float = 10.0,
    legend: bool = True,
) -> Axes:
    """Scatter ``embedding`` (Tensor[N, 2]) with one tab10 colour per class of ``labels`` (Tensor[N]).

    With ``highlight`` (a class index) only that class is coloured, drawn on top of the others in grey.
    The axes carry no ticks: t-SNE and UMAP coordinates have no unit.
    """
    embedding = check_tensor(embedding, "embedding", ndim=2, floating=True)
    if embedding.shape[1] != 2:
        raise ValueError(f"embedding must have shape [N, 2], got {tuple(embedding.shape)}")
    names = _check_labels(labels, len(embedding), class_names)
    highlight = _check_highlight(highlight, names)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    xy = embedding.detach().cpu().numpy()
    for k, name in enumerate(names):
        mask = (labels == k).cpu().numpy()
        if not mask.any():
            continue
        if highlight is None or k == highlight:
            scale = 1.0 if highlight is None else 1.6
            ax.scatter(*xy[mask].T, s=size * scale, color=COLORS[k], label=name, zorder=3, linewidths=0)
        else:
            ax.scatter(*xy[mask].T, s=size, color=OTHER_COLOR, zorder=2, linewidths=0)
    if legend:
        handles, legend_names = ax.get_legend_handles_labels()
        if highlight is not None:
            handles.append(plt.Line2D([], [], marker="o", linestyle="", color=OTHER_COLOR))
            legend_names.append("other classes")
        ax.legend(handles, legend_names, fontsize=8, markerscale=1.5, loc="best", framealpha=0.85)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def add_thumbnails(ax: Axes, embedding: Tensor, images: Tensor, indices: Tensor, zoom: float = 0.3) -> list[AnnotationBbox]:
    """Draw ``images[i]`` (Tensor[N, 3, H, W] in [0, 1]) at ``embedding[i]`` for each ``i`` in ``indices``.

    Returns:
        list[AnnotationBbox]: the thumbnails, one per index, framed in grey.
    """
    embedding = check_tensor(embedding, "embedding", ndim=2, floating=True)
    images = check_tensor(images, "images", ndim=4, floating=True)
    check_same_length(embedding, images, "embedding", "images")
    zoom = check_positive_number(zoom, "zoom")
    boxes = []
    for i in check_tensor(indices, "indices", ndim=1).tolist():
        thumbnail = OffsetImage(to_numpy_image(images[i]), zoom=zoom)
        frame = dict(edgecolor="0.4", linewidth=0.6)
        box = AnnotationBbox(thumbnail, tuple(embedding[i].tolist()), frameon=True, pad=0.1, bboxprops=frame)
        box.set_zorder(4)
        ax.add_artist(box)
        boxes.append(box)
    return boxes


def explorer_scores(features: Tensor, embedding: Tensor, labels: Tensor, k: int = 10) -> dict[str, float]:
    """The explorer's three scores, each in [0, 1].

    Returns:
        dict: ``trustworthiness`` and ``knn_accuracy`` of the 2-D ``embedding`` (``xai.embedding_scores``)
        and ``knn_accuracy_features``: the same leave-one-out k-NN accuracy in the ``D``-dimensional
        ``features`` themselves, what the 2-D picture is to be compared with.
    """
    scores = embedding_scores(features, embedding, labels, k=k)
    return {**scores, "knn_accuracy_features": knn_accuracy(features, labels, k)}


def _title(method: str, parameter: float | int | None) -> str:
    if method == "pca":
        return "PCA (linear: the two directions of largest variance)"
    value = LIBRARY_DEFAULTS[method] if parameter is None else parameter
    return f"{METHOD_NAMES[method]} ({EMBEDDING_PARAMETERS[method]} = {value:g})"


def _draw_scores(scores: dict[str, float], num_classes: int, k: int, dim: int, ax: Axes) -> None:
    names = ["trustworthiness\n(2-D)", f"{k}-NN accuracy\n(2-D)", f"{k}-NN accuracy\n({dim}-D features)"]
    values = [scores["trustworthiness"], scores["knn_accuracy"], scores["knn_accuracy_features"]]
    ax.barh(names, values, height=0.55, color=["tab:purple", "tab:blue", "tab:gray"])
    for row, value in enumerate(values):
        inside = value > 0.8
        ax.text(value - 0.02 if inside else value + 0.02, row, f"{value:.2f}", va="center", ha="right" if inside else "left",
                color="white" if inside else "black", fontsize=9)  # fmt: skip
    ax.axvline(1 / num_classes, color="k", linestyle=":", linewidth=1)
    ax.text(1 / num_classes, 2.45, f" chance 1/{num_classes}", fontsize=8, va="top")
    ax.set_xlim(0, 1)
    ax.set_ylim(2.6, -0.5)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title("scores", fontsize=9)


def embedding_figure(
    features: Tensor,
    labels: Tensor,
    method: str = "pca",
    parameter: float | int | None = None,
    *,
    highlight: int | None = None,
    images: Tensor | None = None,
    class_names: Sequence[str] | None = None,
    k: int = 10,
    thumbnails: int = 8,
    seed: int = 0,
    embedding: Tensor | None = None,
) -> plt.Figure:
    """The explorer's view: the 2-D embedding coloured by class, next to its scores.

    Args:
        features (Tensor[N, D]): the features to embed.
        labels (Tensor[N]): integer class indices.
        method, parameter, seed: as in :func:`embed`.
        highlight (int or None): a class index to colour alone (its thumbnails are shown).
        images (Tensor[N, 3, H, W] or None): the images, for ``thumbnails`` thumbnails placed at
            their points (chosen far apart by :func:`spread_indices`).
        class_names (list of str or None): one name per class (default ``"class k"``).
        k (int): neighbourhood size of the scores (``1 <= k < N / 2``).
        embedding (Tensor[N, 2] or None): the embedding of ``features`` by ``method`` if already
            computed (the explorer's cache); computed by :func:`embed` otherwise.
    """
    features = check_tensor(features, "features", ndim=2, floating=True)
    names = _check_labels(labels, len(features), class_names)
    highlight = _check_highlight(highlight, names)
    method = check_choice(method, "method", tuple(EMBEDDING_PARAMETERS))
    parameter = _check_parameter(method, parameter, len(features))
    thumbnails = check_positive_int(thumbnails, "thumbnails", allow_zero=True)
    if images is not None:
        images = check_tensor(images, "images", ndim=4, floating=True)
        check_same_length(features, images, "features", "images")
    if embedding is None:
        embedding = embed(features, method, parameter, seed)
    else:
        embedding = check_tensor(embedding, "embedding", ndim=2, floating=True)
        check_same_length(features, embedding, "features", "embedding")
    scores = explorer_scores(features, embedding, labels, k)

    fig, (ax_map, ax_scores) = plt.subplots(1, 2, figsize=(10, 4.6), gridspec_kw=dict(width_ratios=[2.2, 1]))
    scatter_embedding(embedding, labels, names, highlight=highlight, ax=ax_map, title=_title(method, parameter))
    if images is not None and thumbnails > 0:
        pool = torch.arange(len(features)) if highlight is None else (labels == highlight).nonzero()[:, 0]
        if len(pool):
            add_thumbnails(ax_map, embedding, images, pool[spread_indices(embedding[pool], thumbnails)])
    _draw_scores(scores, len(names), k, features.shape[1], ax_scores)
    fig.tight_layout()
    return fig


def embedding_explorer(
    features: Tensor,
    labels: Tensor,
    images: Tensor | None = None,
    class_names: Sequence[str] | None = None,
    k: int = 10,
    seed: int = 0,
) -> W.VBox:
    """Controls for the method, its parameter and the class to highlight, over :func:`embedding_figure`.

    Each ``(method, parameter)`` is embedded once (an :class:`EmbeddingCache`); the parameter
    slider is disabled for PCA, which has none.
    """
    cache = EmbeddingCache(features, seed)
    names = _check_labels(labels, len(cache.features), class_names)
    if images is not None:  # checked now: a failure inside the live output would only be printed there
        check_same_length(cache.features, check_tensor(images, "images", ndim=4, floating=True), "features", "images")
    largest = min(100, len(cache.features) - 1)
    controls = {
        "method": W.ToggleButtons(options=[(name, key) for key, name in METHOD_NAMES.items()], value="pca", description="method"),
        "parameter": W.IntSlider(
            value=min(30, largest), min=2, max=largest, description="perplexity / n_neighbors", continuous_update=False,
            disabled=True, style={"description_width": "initial"},
        ),
        "highlight": W.Dropdown(
            options=[("all classes", ALL_CLASSES), *((name, k) for k, name in enumerate(names))], value=ALL_CLASSES,
            description="highlight",
        ),
    }

    def disable_parameter_for_pca(change: dict) -> None:
        controls["parameter"].disabled = change["new"] == "pca"

    controls["method"].observe(disable_parameter_for_pca, names="value")

    def render(method: str, parameter: int, highlight: int) -> plt.Figure:
        embedding = cache(method, parameter)
        return embedding_figure(
            cache.features, labels, method, parameter,
            highlight=None if highlight == ALL_CLASSES else highlight, images=images, class_names=names, k=k, embedding=embedding,
        )  # fmt: skip

    return dashboard(render, controls, "Embedding explorer: the same features, three maps")
