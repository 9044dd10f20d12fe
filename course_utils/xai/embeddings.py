"""Feature embeddings: what a late layer makes of a data set, drawn in 2-D and scored.

- :func:`extract_features`: one feature vector per image from any layer of a model.
- :func:`embed_2d`: PCA, t-SNE (scikit-learn) or UMAP (umap-learn) down to two dimensions.
- :func:`embedding_scores`: how faithful the 2-D picture is (trustworthiness, Venna & Kaski 2001,
  as ``sklearn.manifold.trustworthiness``) and how well the classes separate in it (k-NN accuracy).
- :func:`linear_probe_r2`: how much of a property of the images (brightness, size …) a linear map
  reads off the features, on held-out images.

Every result is a CPU ``torch.Tensor``: features and embeddings are float32, labels int64.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, trustworthiness
from threadpoolctl import threadpool_limits
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..validation import check_choice, check_positive_int, check_same_length, check_tensor
from .feature_visualization import eval_mode
from .layers import layer_name, record_layer

__all__ = [
    "EMBEDDING_METHODS", "POOLING", "embed_2d", "embedding_scores", "extract_features", "knn_accuracy", "linear_probe_r2",
]  # fmt: skip

EMBEDDING_METHODS = ("pca", "tsne", "umap")
POOLING = ("avg", "max", "flatten")


def _pool(output: Tensor, pool: str) -> Tensor:
    """``[N, C, ...]`` layer output to ``[N, D]``: mean or max over the positions (C features), or flattened."""
    if output.ndim <= 2 or pool == "flatten":
        return output.flatten(1)
    positions = output.flatten(2)  # [N, C, positions]
    return positions.mean(dim=2) if pool == "avg" else positions.amax(dim=2)


def _batches(data: Tensor | Iterable, batch_size: int, progress: bool) -> Iterable[tuple[Tensor, Tensor | None]]:
    """``(images, labels or None)`` batches from a tensor or from a loader of ``(x, y)`` pairs or of ``x``."""
    if isinstance(data, Tensor):
        for images in data.split(batch_size):
            yield images, None
        return
    if not isinstance(data, Iterable):
        raise TypeError(f"loader_or_tensor must be a Tensor or a DataLoader, got {type(data).__name__}")
    for batch in tqdm(data, desc="features", leave=False, disable=None if progress else True):
        if isinstance(batch, Tensor):
            yield batch, None
        elif isinstance(batch, (tuple, list)) and len(batch) == 2:
            yield batch[0], torch.as_tensor(batch[1])
        else:
            raise TypeError("loader_or_tensor must yield image tensors or (images, labels) pairs")


@torch.no_grad()
def extract_features(
    model: nn.Module,
    layer: nn.Module | str,
    loader_or_tensor: Tensor | Iterable,
    *,
    batch_size: int = 256,
    pool: str = "avg",
    progress: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """One feature vector per image: the output of ``layer``, pooled over positions.

    The model runs in eval mode without gradients, on its own device; every sub-module's
    ``training`` flag is restored afterwards and the recording hook is removed.

    Args:
        model (nn.Module): the network.
        layer (nn.Module or str): the layer to read, an ``nn.Module`` of ``model`` or its dotted name.
        loader_or_tensor (Tensor[N, C, H, W] or iterable): a batch of images, or a DataLoader
            (any iterable) yielding ``(images, labels)`` pairs or image tensors.
        batch_size (int): images per forward pass when a tensor is given (a loader has its own).
        pool (str): for outputs with positions (``[N, C, h, w]``): ``"avg"`` (global average
            pooling, ``D = C``), ``"max"`` (global max pooling) or ``"flatten"`` (``D = C·h·w``).
            ``[N, D]`` outputs are returned as they are.
        progress (bool): show a tqdm progress bar over a loader's batches.

    Returns:
        (Tensor[N, D], Tensor[N] or None): float32 features on the CPU, and the int64 labels
        (None for a tensor input, or a loader without labels).
    """
    name = layer_name(model, layer)
    batch_size = check_positive_int(batch_size, "batch_size")
    pool = check_choice(pool, "pool", POOLING)
    if isinstance(loader_or_tensor, Tensor):
        check_tensor(loader_or_tensor, "loader_or_tensor", floating=True)
        if loader_or_tensor.ndim < 2 or len(loader_or_tensor) == 0:
            shape = tuple(loader_or_tensor.shape)
            raise ValueError(f"loader_or_tensor must be a non-empty batch [N, ...], got shape {shape}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    features, labels = [], []
    with eval_mode(model), record_layer(model, name) as recording:
        for images, batch_labels in _batches(loader_or_tensor, batch_size, progress):
            recording.output = None
            model(images.to(device))
            if recording.output is None:
                raise ValueError(f"layer {name!r} was not called during the forward pass")
            features.append(_pool(recording.output, pool).float().cpu())
            labels.append(batch_labels)
    if not features:
        raise ValueError("loader_or_tensor yielded no batch")
    has_labels = [batch_labels is not None for batch_labels in labels]
    if any(has_labels) != all(has_labels):
        raise ValueError("loader_or_tensor yielded some batches with labels and some without")
    return torch.cat(features), (torch.cat(labels).long().cpu() if all(has_labels) else None)


def _as_matrix(values: object, name: str) -> np.ndarray:
    """A finite float64 ``[N, D]`` array from a tensor or an array-like, with ``N >= 1`` and ``D >= 1``."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must have shape [N, D] with N, D >= 1, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array.astype(np.float64)


def embed_2d(features: Tensor | np.ndarray, method: str = "pca", *, seed: int = 0, **kwargs) -> Tensor:
    """Project ``[N, D]`` features to 2-D with PCA, t-SNE or UMAP.

    - ``"pca"``: ``sklearn.decomposition.PCA(n_components=2)``: the two directions of largest variance.
    - ``"tsne"``: ``sklearn.manifold.TSNE(n_components=2)`` (sklearn's defaults: perplexity 30,
      PCA initialization, Barnes-Hut; needs ``N > perplexity``), on one OpenMP thread: for a few
      hundred points more threads only wait on each other (measured 10x slower on a busy 2-core
      machine); the result does not depend on it.
    - ``"umap"``: ``umap.UMAP(n_components=2, n_jobs=1)``. Seeding makes UMAP single-threaded,
      so ``n_jobs=1`` is set up front. The first call in a process imports umap-learn and
      compiles its numba code: measured about 10 s of CPU time (10-30 s on a busy 2-core
      machine); later calls take well under a second for a few hundred points.

    Args:
        features (Tensor[N, D] or ndarray): one row per sample (computed in float64).
        method (str): ``"pca"``, ``"tsne"`` or ``"umap"``.
        seed (int): the estimator's ``random_state``: the same seed gives the same embedding.
        **kwargs: more arguments for the estimator (``perplexity=``, ``n_neighbors=``, ``min_dist=`` …).

    Returns:
        Tensor[N, 2]: float32 coordinates, on the CPU.
    """
    method = check_choice(method, "method", EMBEDDING_METHODS)
    seed = check_positive_int(seed, "seed", allow_zero=True)
    for reserved in ("n_components", "random_state"):
        if reserved in kwargs:
            raise ValueError(f"{reserved} cannot be passed to embed_2d: the embedding is 2-D and seeded by seed")
    x = _as_matrix(features, "features")
    if method == "pca":
        estimator = PCA(n_components=2, random_state=seed, **kwargs)
    elif method == "tsne":
        with threadpool_limits(1, user_api="openmp"):
            return torch.from_numpy(TSNE(n_components=2, random_state=seed, **kwargs).fit_transform(x)).float()
    else:
        import umap  # imported here: loading umap-learn (numba) takes seconds

        estimator = umap.UMAP(n_components=2, random_state=seed, **{"n_jobs": 1, **kwargs})
    return torch.from_numpy(estimator.fit_transform(x)).float()


def _check_labels(labels: object, n: int) -> Tensor:
    """Require ``n`` non-negative integer labels; return them as an int64 ``Tensor[n]``."""
    if not isinstance(labels, Tensor):
        labels = torch.as_tensor(np.asarray(labels))
    labels = check_tensor(labels, "labels", ndim=1)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must hold integer class indices, got dtype {labels.dtype}")
    if len(labels) != n:
        raise ValueError(f"labels must hold one label per point: {n} points, {len(labels)} labels")
    if bool((labels < 0).any()):
        raise ValueError("labels must be >= 0")
    return labels.long().cpu()


def knn_accuracy(embedding: Tensor | np.ndarray, labels: Tensor | np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy of the points' labels.

    Each point is classified by a majority vote of its ``k`` nearest *other* points (Euclidean
    distance); a tied vote goes to the smallest label, as in ``sklearn.neighbors.KNeighborsClassifier``.
    The score is the fraction of points whose vote is their own label.

    Args:
        embedding (Tensor[N, d] or ndarray): the points.
        labels (Tensor[N] or ndarray): integer labels.
        k (int): number of neighbours, ``1 <= k < N``.
    """
    points = torch.from_numpy(_as_matrix(embedding, "embedding"))
    labels = _check_labels(labels, len(points))
    k = check_positive_int(k, "k")
    if k >= len(points):
        raise ValueError(f"k must be smaller than the number of points ({len(points)}), got {k}")
    distances = torch.cdist(points, points)
    distances.fill_diagonal_(float("inf"))  # leave the point itself out
    neighbours = distances.topk(k, dim=1, largest=False).indices  # [N, k]
    votes = torch.nn.functional.one_hot(labels[neighbours], int(labels.max()) + 1).sum(dim=1)  # [N, classes]
    return float((votes.argmax(dim=1) == labels).double().mean())


def embedding_scores(
    features: Tensor | np.ndarray, embedding: Tensor | np.ndarray, labels: Tensor | np.ndarray, k: int = 5
) -> dict[str, float]:
    """How good is a 2-D embedding of ``features``?

    Args:
        features (Tensor[N, D] or ndarray): the original features.
        embedding (Tensor[N, d] or ndarray): their embedding (from :func:`embed_2d`).
        labels (Tensor[N] or ndarray): integer class labels.
        k (int): neighbourhood size for both scores, ``1 <= k < N / 2``.

    Returns:
        dict: ``trustworthiness`` (``sklearn.manifold.trustworthiness(features, embedding,
        n_neighbors=k)``, in [0, 1]: 1 when every embedding neighbour is also a neighbour in
        feature space) and ``knn_accuracy`` (:func:`knn_accuracy` in the embedding, leave-one-out).
    """
    x = _as_matrix(features, "features")
    y = _as_matrix(embedding, "embedding")
    check_same_length(x, y, "features", "embedding")
    labels = _check_labels(labels, len(x))
    k = check_positive_int(k, "k")
    if k >= len(x) / 2:
        raise ValueError(f"k must be smaller than half the number of points ({len(x)} / 2), got {k}")
    return {"trustworthiness": float(trustworthiness(x, y, n_neighbors=k)), "knn_accuracy": knn_accuracy(y, labels, k)}


def linear_probe_r2(features: Tensor | np.ndarray, target: Tensor | np.ndarray, n_fit: int) -> float:
    """How well a linear map reads ``target`` off ``features``: R² on held-out rows (a linear probe).

    An affine least-squares fit (weights and a bias) on the first ``n_fit`` rows predicts the
    others; the score is ``1 - SS_residual / SS_total`` on those, as ``sklearn.metrics.r2_score``
    of ``sklearn.linear_model.LinearRegression``'s predictions: 1 is perfect, 0 is no better than
    the held-out mean, below 0 worse. Shuffle the rows first if they are ordered.

    Args:
        features (Tensor[N, D] or ndarray): one row per image (computed in float64).
        target (Tensor[N] or ndarray): the property to read, one real number per image.
        n_fit (int): rows to fit on, ``1 <= n_fit <= N - 2``; the other rows are scored.
    """
    x = _as_matrix(features, "features")
    if isinstance(target, Tensor):
        target = target.detach().cpu().numpy()
    if np.ndim(target) != 1:
        raise ValueError(f"target must have shape [N], one value per row of features, got {np.shape(target)}")
    y = _as_matrix(np.asarray(target)[:, None], "target")  # [N, 1]
    check_same_length(x, y, "features", "target")
    n_fit = check_positive_int(n_fit, "n_fit")
    if n_fit > len(x) - 2:
        raise ValueError(f"n_fit must leave at least 2 of the {len(x)} rows to score, got {n_fit}")
    design = np.hstack([x, np.ones((len(x), 1))])  # a column of ones: the bias
    weights = np.linalg.lstsq(design[:n_fit], y[:n_fit], rcond=None)[0]
    held_out = y[n_fit:, 0]
    total = float(((held_out - held_out.mean()) ** 2).sum())
    if total == 0:
        raise ValueError("target is constant on the held-out rows: R² is undefined")
    return 1 - float(((held_out - design[n_fit:] @ weights[:, 0]) ** 2).sum()) / total
