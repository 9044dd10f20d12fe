"""Features, 2-D embeddings and their scores, checked against scikit-learn and umap-learn."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.manifold import TSNE, trustworthiness
from sklearn.metrics import r2_score
from sklearn.model_selection import LeaveOneOut, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import data, zoo
from course_utils.xai import embed_2d, embedding_scores, extract_features
from course_utils.xai.embeddings import knn_accuracy, linear_probe_r2

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: extra threads only wait


@pytest.fixture(scope="module")
def shapes_cnn() -> nn.Module:
    return zoo.load("shapes_cnn")


@pytest.fixture(scope="module")
def scenes() -> TensorDataset:
    """300 scenes of the 5 shapes (not the zoo model's training or test seeds)."""
    return zoo.materialize(data.SceneClassification(300, seed=11))


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def clusters(n: int, dim: int, classes: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points around ``classes`` random centres in ``dim`` dimensions, and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, dim)) * 3
    return centres[labels] + spread * rng.normal(size=(n, dim)), labels


# --------------------------------------------------------------------------- extract_features


def test_features_equal_a_manual_forward(shapes_cnn: nn.Module, scenes: TensorDataset) -> None:
    images, labels = scenes.tensors
    with torch.no_grad():
        feature_maps = shapes_cnn.features(images[:50])
    loader = DataLoader(TensorDataset(images[:50], labels[:50]), batch_size=16)
    features, got_labels = extract_features(shapes_cnn, "features", loader)
    torch.testing.assert_close(features, feature_maps.mean(dim=(2, 3)))
    assert features.shape == (50, 64) and features.dtype == torch.float32 and not features.requires_grad
    assert torch.equal(got_labels, labels[:50]) and got_labels.dtype == torch.int64

    max_pooled, none = extract_features(shapes_cnn, shapes_cnn.features, images[:50], pool="max")
    assert none is None
    torch.testing.assert_close(max_pooled, feature_maps.amax(dim=(2, 3)))
    flat, _ = extract_features(shapes_cnn, "features.11", images[:50], pool="flatten")
    with torch.no_grad():
        torch.testing.assert_close(flat, shapes_cnn.features[:12](images[:50]).flatten(1))
    logits, _ = extract_features(shapes_cnn, "fc", images[:50], pool="avg")  # [N, D] outputs stay as they are
    with torch.no_grad():
        torch.testing.assert_close(logits, shapes_cnn(images[:50]))


@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])
def test_batched_equals_whole(shapes_cnn: nn.Module, scenes: TensorDataset, batch_size: int) -> None:
    images = scenes.tensors[0][:40]
    whole, _ = extract_features(shapes_cnn, "features.8", images, batch_size=len(images))
    batched, _ = extract_features(shapes_cnn, "features.8", images, batch_size=batch_size)
    from_loader, _ = extract_features(shapes_cnn, "features.8", DataLoader(images, batch_size=batch_size))
    torch.testing.assert_close(batched, whole)
    torch.testing.assert_close(from_loader, whole)


def test_eval_mode_no_grad_and_model_restored(shapes_cnn: nn.Module, scenes: TensorDataset) -> None:
    model = copy.deepcopy(shapes_cnn).train()
    model.features[1].eval()
    flags = [m.training for m in model.modules()]
    state = copy.deepcopy(model.state_dict())
    images = scenes.tensors[0][:20]
    features, _ = extract_features(model, "features", images)
    # BatchNorm used its running statistics (eval mode), and did not update them
    with torch.no_grad():
        torch.testing.assert_close(features, shapes_cnn.features(images).mean(dim=(2, 3)))
    assert [m.training for m in model.modules()] == flags and hook_count(model) == 0
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


class Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.unused = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


@pytest.mark.parametrize(
    "model, layer, source, kwargs, error, name",
    [
        (None, "features.42", torch.rand(2, 3, 64, 64), {}, ValueError, "layer"),
        (None, nn.Linear(2, 2), torch.rand(2, 3, 64, 64), {}, ValueError, "layer"),
        (None, "features", torch.rand(2, 3, 64, 64), {"pool": "median"}, ValueError, "pool"),
        (None, "features", torch.rand(2, 3, 64, 64), {"batch_size": 0}, ValueError, "batch_size"),
        (None, "features", torch.zeros(2, 3, 64, 64, dtype=torch.uint8), {}, TypeError, "loader_or_tensor"),
        (None, "features", torch.rand(0, 3, 64, 64), {}, ValueError, "loader_or_tensor"),
        (None, "features", 42, {}, TypeError, "loader_or_tensor"),
        (None, "features", [], {}, ValueError, "loader_or_tensor"),
        (None, "features", [(torch.rand(2, 3, 64, 64), torch.zeros(2)), torch.rand(2, 3, 64, 64)], {}, ValueError,
         "loader_or_tensor"),
        (None, "features", [(torch.rand(2, 3, 64, 64),)], {}, TypeError, "loader_or_tensor"),
        (Unused(), "unused", torch.rand(2, 3, 8, 8), {}, ValueError, "layer 'unused' was not called"),
    ],
)
def test_extract_features_bad_input(shapes_cnn, model, layer, source, kwargs, error, name) -> None:
    model = shapes_cnn if model is None else model
    training = model.training
    with pytest.raises(error, match=name):
        extract_features(model, layer, source, progress=False, **kwargs)
    assert hook_count(model) == 0 and model.training == training


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 30), batch_size=st.integers(1, 35), pool=st.sampled_from(["avg", "max", "flatten"]))
def test_extract_features_batching_property(n: int, batch_size: int, pool: str) -> None:
    """Any batch size, any pooling: the rows are the features of the images, in order."""
    torch.manual_seed(n)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2)).eval()
    images = torch.rand(n, 3, 9, 7)
    features, _ = extract_features(model, "2", images, batch_size=batch_size, pool=pool)
    with torch.no_grad():
        maps = model(images)
    expected = {"avg": maps.mean(dim=(2, 3)), "max": maps.amax(dim=(2, 3)), "flatten": maps.flatten(1)}[pool]
    torch.testing.assert_close(features, expected)


# --------------------------------------------------------------------------- embed_2d


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pca_equals_sklearn(seed: int) -> None:
    x, _ = clusters(80, 12, 4, 1.0, seed)
    expected = PCA(n_components=2).fit_transform(x)
    for features in (x, torch.from_numpy(x).float()):
        embedding = embed_2d(features, "pca", seed=seed)
        assert isinstance(embedding, torch.Tensor) and embedding.dtype == torch.float32 and embedding.shape == (80, 2)
        np.testing.assert_allclose(embedding.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_tsne_equals_sklearn_and_is_seeded() -> None:
    x, _ = clusters(60, 8, 3, 0.5, 3)
    options = dict(perplexity=10, max_iter=250)
    embedding = embed_2d(x, "tsne", seed=4, **options)
    assert embedding.shape == (60, 2)
    expected = TSNE(random_state=4, **options).fit_transform(x)
    np.testing.assert_allclose(embedding.numpy(), expected, rtol=1e-5, atol=1e-4)
    assert torch.equal(embed_2d(x, "tsne", seed=4, **options), embedding)


def test_umap_equals_umap_learn_and_is_seeded() -> None:
    """UMAP's first call compiles its numba code: about 10-20 s on 2 shared cores, then < 1 s."""
    import umap

    x, _ = clusters(50, 6, 3, 0.5, 5)
    embedding = embed_2d(x, "umap", seed=0, n_neighbors=8, n_epochs=50)
    assert embedding.shape == (50, 2) and embedding.dtype == torch.float32
    expected = umap.UMAP(n_neighbors=8, n_epochs=50, random_state=0, n_jobs=1).fit_transform(x)
    np.testing.assert_allclose(embedding.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(embed_2d(x, "umap", seed=0, n_neighbors=8, n_epochs=50), embedding)
    assert not torch.equal(embed_2d(x, "umap", seed=1, n_neighbors=8, n_epochs=50), embedding)


@pytest.mark.parametrize(
    "features, kwargs, error, name",
    [
        (np.zeros((10, 3)), {"method": "lda"}, ValueError, "method"),
        (np.zeros(10), {}, ValueError, "features"),
        (np.zeros((0, 3)), {}, ValueError, "features"),
        (np.full((10, 3), np.nan), {}, ValueError, "features"),
        (np.array([["a", "b"]] * 4), {}, TypeError, "features"),
        (np.zeros((10, 3)), {"seed": -1}, ValueError, "seed"),
        (np.zeros((10, 3)), {"n_components": 3}, ValueError, "n_components"),
        (np.zeros((10, 3)), {"random_state": 3}, ValueError, "random_state"),
    ],
)
def test_embed_2d_bad_input(features, kwargs, error, name) -> None:
    with pytest.raises(error, match=name):
        embed_2d(features, **kwargs)


# --------------------------------------------------------------------------- scores


def sklearn_loo_knn(points: np.ndarray, labels: np.ndarray, k: int) -> float:
    predictions = cross_val_predict(KNeighborsClassifier(n_neighbors=k), points, labels, cv=LeaveOneOut())
    return float((predictions == labels).mean())


def loop_knn(points: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Leave-one-out k-NN written as a plain loop: sort the other points by distance, count the votes."""
    right = 0
    for i, point in enumerate(points):
        others = [j for j in np.argsort(np.linalg.norm(points - point, axis=1), kind="stable") if j != i][:k]
        votes = np.bincount(labels[others])
        right += int(np.argmax(votes) == labels[i])  # np.argmax: the first (smallest) label of a tie
    return right / len(points)


@pytest.mark.parametrize(
    "seed, k, classes, spread", [(0, 5, 3, 1.0), (1, 1, 4, 2.0), (2, 4, 5, 3.0), (3, 10, 2, 0.5), (4, 6, 6, 4.0)]
)
def test_embedding_scores_equal_sklearn(seed: int, k: int, classes: int, spread: float) -> None:
    x, labels = clusters(90, 10, classes, spread, seed)
    embedding = embed_2d(x, "pca")
    scores = embedding_scores(torch.from_numpy(x), embedding, torch.from_numpy(labels), k=k)
    assert set(scores) == {"trustworthiness", "knn_accuracy"}
    points = embedding.numpy().astype(np.float64)
    assert scores["trustworthiness"] == pytest.approx(trustworthiness(x, points, n_neighbors=k), abs=1e-12)
    assert scores["knn_accuracy"] == pytest.approx(sklearn_loo_knn(points, labels, k), abs=1e-12)
    assert scores["knn_accuracy"] == pytest.approx(loop_knn(points, labels, k), abs=1e-12)


def test_knn_accuracy_hand_made() -> None:
    # two tight pairs far apart, plus a point of class 1 next to the class-0 pair
    points = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [10.1, 0.0], [0.0, 0.3]])
    labels = np.array([0, 0, 1, 1, 1])
    # k=1: points 0, 1, 2, 3 are right; point 4's nearest is point 0 (class 0): 4/5
    assert knn_accuracy(points, labels, k=1) == pytest.approx(0.8)
    # k=2, a tied vote goes to class 0: points 0 and 1 see {0, 1} -> 0 (right); points 2 and 3 see
    # each other and point 1 -> 0 (wrong); point 4 sees points 0 and 1 -> 0 (wrong): 2/5
    assert knn_accuracy(points, labels, k=2) == pytest.approx(0.4)
    assert sklearn_loo_knn(points, labels, 2) == pytest.approx(0.4)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 40), k=st.integers(1, 10), classes=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_knn_accuracy_properties(n: int, k: int, classes: int, seed: int) -> None:
    """In [0, 1], equal to the plain loop, unchanged by a shuffle of the points, 1 with a single class."""
    k = min(k, n - 1)
    points, labels = clusters(n, 2, classes, 1.0, seed)
    accuracy = knn_accuracy(points, labels, k)
    assert 0 <= accuracy <= 1
    assert accuracy == pytest.approx(loop_knn(points, labels, k), abs=1e-12)
    order = np.random.default_rng(seed).permutation(n)
    assert knn_accuracy(points[order], labels[order], k) == pytest.approx(accuracy, abs=1e-12)
    assert knn_accuracy(points, np.zeros(n, dtype=int), k) == 1.0


@pytest.mark.parametrize(
    "args, error, name",
    [
        ((np.zeros((10, 4)), np.zeros((9, 2)), np.zeros(10, dtype=int)), ValueError, "features and embedding"),
        ((np.zeros((12, 4)), np.zeros((12, 2)), np.zeros(11, dtype=int)), ValueError, "labels"),
        ((np.zeros((12, 4)), np.zeros((12, 2)), np.zeros(12)), TypeError, "labels"),
        ((np.zeros((12, 4)), np.zeros((12, 2)), -np.ones(12, dtype=int)), ValueError, "labels"),
        ((np.zeros((12, 4)), np.zeros((12, 2)), np.zeros((12, 1), dtype=int)), ValueError, "labels"),
        ((np.zeros((10, 4)), np.zeros(10), np.zeros(10, dtype=int)), ValueError, "embedding"),
        ((np.zeros((10, 4)), np.zeros((10, 2)), np.zeros(10, dtype=int), 5), ValueError, "k"),
        ((np.zeros((10, 4)), np.zeros((10, 2)), np.zeros(10, dtype=int), 0), ValueError, "k"),
    ],
)
def test_embedding_scores_bad_input(args: tuple, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        embedding_scores(*args)


# --------------------------------------------------------------------------- the lesson's claim


def test_trained_features_separate_the_classes_untrained_do_not(shapes_cnn: nn.Module, scenes: TensorDataset) -> None:
    """Notebook 11's claim. Measured on these 300 scenes (k=5, PCA; t-SNE and UMAP agree):
    trained 1.00; three random initialisations 0.17-0.28 (chance is 0.2)."""
    loader = DataLoader(scenes, batch_size=100)
    torch.manual_seed(0)
    untrained = zoo.SmallCNN(len(data.SHAPES)).eval()
    scores = {}
    for name, model in {"trained": shapes_cnn, "untrained": untrained}.items():
        features, labels = extract_features(model, "features", loader, progress=False)
        scores[name] = embedding_scores(features, embed_2d(features, "pca"), labels, k=5)
    assert scores["trained"]["knn_accuracy"] > 0.9
    assert scores["untrained"]["knn_accuracy"] < 0.5
    assert scores["trained"]["trustworthiness"] > scores["untrained"]["trustworthiness"]


# --------------------------------------------------------------------------- linear_probe_r2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_probe_r2_equals_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(80, 6))
    target = features @ rng.normal(size=6) + 0.5 * rng.normal(size=80) + 3.0
    fitted = LinearRegression().fit(features[:60], target[:60])
    expected = r2_score(target[60:], fitted.predict(features[60:]))
    assert linear_probe_r2(torch.from_numpy(features).float(), torch.from_numpy(target), 60) == pytest.approx(expected, abs=1e-5)
    assert linear_probe_r2(features, target, 60) == pytest.approx(expected, abs=1e-10)
    assert 0.3 < expected < 1  # a noisy but readable target: the comparison is not of two trivial scores


def test_linear_probe_r2_exact_and_unreadable_targets() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 4))
    assert linear_probe_r2(features, 2 * features[:, 1] - features[:, 3] + 7, 100) == pytest.approx(1.0, abs=1e-9)
    # a target that ignores the features: no better than the held-out mean (R² near 0, or below)
    assert linear_probe_r2(features, rng.normal(size=200), 100) < 0.1
    # an invertible linear change of the features changes nothing a linear probe can read
    target = np.sin(features[:, 0]) + features[:, 2] ** 2
    mixed = features @ rng.normal(size=(4, 4)) + 5
    assert linear_probe_r2(mixed, target, 100) == pytest.approx(linear_probe_r2(features, target, 100), abs=1e-9)


@pytest.mark.parametrize(
    ("features", "target", "n_fit", "error", "name"),
    [
        (np.zeros((10, 3)), np.zeros(9), 5, ValueError, "length"),
        (np.zeros((10, 3)), np.zeros((10, 1)), 5, ValueError, "target"),
        (np.zeros((10, 3)), np.array(["a"] * 10), 5, TypeError, "target"),
        (np.zeros((10, 3)), np.full(10, np.nan), 5, ValueError, "target"),
        (np.zeros(10), np.zeros(10), 5, ValueError, "features"),
        (np.zeros((10, 3)), np.arange(10.0), 9, ValueError, "n_fit"),
        (np.zeros((10, 3)), np.arange(10.0), 0, ValueError, "n_fit"),
        (np.zeros((10, 3)), np.ones(10), 5, ValueError, "constant"),
    ],
)
def test_linear_probe_r2_bad_input(features, target, n_fit: int, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        linear_probe_r2(features, target, n_fit)
