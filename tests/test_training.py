"""course_utils.training: seeding, device choice, the fit loop, exact resume, atomic checkpoints."""

from __future__ import annotations

import math
import os
import pickle
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from course_utils import training
from course_utils.training import fit, get_device, load_checkpoint, save_checkpoint, seed_everything, to_device


@pytest.fixture(autouse=True)
def _keep_global_rng():
    """These tests reseed the global generators; give the other test files their state back."""
    py, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    yield
    random.setstate(py)
    np.random.set_state(np_state)
    torch.set_rng_state(torch_state)


# --------------------------------------------------------------------------- tiny problems


def regression_data(n: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """y = x @ w + small noise, x: [n, 4], y: [n, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    w = torch.tensor([[1.5], [-2.0], [0.5], [1.0]])
    return x, x @ w + 0.05 * torch.randn(n, 1, generator=g)


class NoisyDataset(Dataset):
    """Adds noise drawn from Python's and NumPy's global generators (an 'augmentation')."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        jitter = 0.01 * float(np.random.randn()) + 0.01 * random.random()
        return self.x[i] + jitter, self.y[i]


def make_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))


def mae(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return float((outputs - targets).abs().mean())


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(outputs, targets)


def loaders(own_generator: bool, generator_seed: int = 7) -> tuple[DataLoader, DataLoader]:
    x, y = regression_data(48, seed=0)
    xv, yv = regression_data(20, seed=1)
    generator = torch.Generator().manual_seed(generator_seed) if own_generator else None
    train = DataLoader(NoisyDataset(x, y), batch_size=8, shuffle=True, generator=generator)
    return train, DataLoader(TensorDataset(xv, yv), batch_size=6)


def run(epochs: int, path, *, resume: bool = False, seed: int = 0, own_generator: bool = False, generator_seed: int = 7,
        **fit_kwargs):
    """A full training setup built from scratch: model, optimizer, scheduler, loaders."""
    seed_everything(seed)
    model = make_mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.9)
    train, val = loaders(own_generator, generator_seed)
    history = fit(
        model, train, mse, optimizer, epochs, val_loader=val, metrics={"mae": mae}, scheduler=scheduler,
        checkpoint_path=path, resume=resume, progress=False, **fit_kwargs,
    )
    return model, optimizer, scheduler, history


# --------------------------------------------------------------------------- seeding and device


def draws() -> tuple[torch.Tensor, np.ndarray, float]:
    return torch.rand(5), np.random.rand(5), random.random()


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**40])
def test_seed_everything_makes_every_generator_reproducible(seed):
    assert seed_everything(seed) == seed
    first = draws()
    seed_everything(seed)
    second = draws()
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2] == second[2]
    seed_everything(seed + 1)
    other = draws()
    assert not torch.equal(first[0], other[0])
    assert not np.array_equal(first[1], other[1])
    assert first[2] != other[2]


def test_seed_everything_makes_model_init_and_dropout_reproducible():
    x = torch.ones(3, 4)
    outputs = []
    for _ in range(2):
        seed_everything(3)
        model = make_mlp().train()
        outputs.append(model(x))
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), ("3", TypeError), (True, TypeError)])
def test_seed_everything_rejects_bad_seeds(bad, error):
    with pytest.raises(error, match="seed"):
        seed_everything(bad)


def test_get_device():
    expected = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    assert get_device() == expected
    assert get_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="prefer"):
        get_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_get_device_prefer_cuda_without_gpu_raises():
    with pytest.raises(ValueError, match="cuda"):
        get_device("cuda")


def test_to_device_recurses_into_containers():
    batch = ([torch.ones(2)], {"boxes": torch.zeros(1, 4), "name": "x"}, (torch.ones(1), 3))
    moved = to_device(batch, "cpu")
    assert isinstance(moved[0], list) and isinstance(moved[2], tuple)
    assert moved[1]["name"] == "x" and moved[2][1] == 3
    assert torch.equal(moved[1]["boxes"], batch[1]["boxes"])


# --------------------------------------------------------------------------- fit


def test_fit_trains_and_reports_history(tmp_path):
    model, _, _, history = run(6, tmp_path / "ck.pt")
    assert set(history) == {"epoch", "train_loss", "val_loss", "val_mae"}
    assert history["epoch"] == [1, 2, 3, 4, 5, 6]
    assert all(len(v) == 6 for v in history.values())
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history["val_loss"][-1] < 0.5 * history["val_loss"][0]
    assert not model.training  # fit leaves the model in eval mode
    # the last epoch's validation numbers are the sample-weighted means over the whole val set
    xv, yv = regression_data(20, seed=1)
    with torch.no_grad():
        out = model(xv)
    assert history["val_loss"][-1] == pytest.approx(float(mse(out, yv)), rel=1e-5)
    assert history["val_mae"][-1] == pytest.approx(mae(out, yv), rel=1e-5)


def test_fit_without_val_loader_has_train_history_only():
    seed_everything(0)
    model = make_mlp()
    x, y = regression_data()
    history = fit(model, DataLoader(TensorDataset(x, y), batch_size=16), mse, torch.optim.SGD(model.parameters(), lr=0.05), 3,
                  progress=False)
    assert set(history) == {"epoch", "train_loss"}
    assert history["epoch"] == [1, 2, 3]


def test_checkpoint_written_after_every_epoch(tmp_path, monkeypatch):
    saved = []
    real_save = training.save_checkpoint

    def spy(state, path):
        saved.append((len(state["history"]["epoch"]), {k: v.clone() for k, v in state["model"].items()}))
        return real_save(state, path)

    monkeypatch.setattr(training, "save_checkpoint", spy)
    model, optimizer, scheduler, history = run(3, tmp_path / "ck.pt")
    assert [n for n, _ in saved] == [1, 2, 3]
    assert not torch.equal(saved[0][1]["0.weight"], saved[2][1]["0.weight"])  # saved during training, not once
    state = load_checkpoint(tmp_path / "ck.pt")
    assert set(state) >= {"model", "optimizer", "scheduler", "history", "rng"}
    assert state["history"] == history
    for name, value in model.state_dict().items():
        assert torch.equal(state["model"][name], value)
    assert state["scheduler"]["last_epoch"] == 3
    assert os.listdir(tmp_path) == ["ck.pt"]  # no temporary file left behind


@pytest.mark.parametrize("own_generator", [False, True], ids=["global-rng-loader", "loader-with-generator"])
def test_resume_equals_an_uninterrupted_run(tmp_path, own_generator):
    straight, _, straight_sched, straight_history = run(4, tmp_path / "straight.pt", own_generator=own_generator)
    run(2, tmp_path / "split.pt", own_generator=own_generator)
    # new objects, a different seed and generator: everything must come back from the checkpoint
    resumed, _, resumed_sched, resumed_history = run(
        4, tmp_path / "split.pt", resume=True, seed=999, own_generator=own_generator, generator_seed=123
    )
    assert resumed_history == straight_history
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert resumed_sched.state_dict() == straight_sched.state_dict()


def test_resume_test_is_sensitive_to_the_random_state(tmp_path, monkeypatch):
    """Control: without restoring the random states the resumed run differs, so the test above has teeth."""
    straight, *_ = run(4, tmp_path / "straight.pt")
    run(2, tmp_path / "split.pt")
    monkeypatch.setattr(training, "_set_rng_state", lambda state, loaders: None)
    resumed, *_ = run(4, tmp_path / "split.pt", resume=True, seed=999)
    assert not all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))


def test_resume_without_checkpoint_starts_from_scratch(tmp_path):
    _, _, _, history = run(2, tmp_path / "new.pt", resume=True)
    assert history["epoch"] == [1, 2]


def test_resume_of_a_finished_run_trains_no_more(tmp_path):
    model, _, _, history = run(2, tmp_path / "ck.pt")
    again, _, _, history_again = run(2, tmp_path / "ck.pt", resume=True, seed=5)
    assert history_again == history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


class ConstantLoss(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(1, keepdim=True) * 0 + self.w * 0 + 1.0


def constant_setup():
    model = ConstantLoss()
    data = DataLoader(TensorDataset(torch.ones(4, 2), torch.ones(4, 1)), batch_size=2)
    return model, data, torch.optim.SGD(model.parameters(), lr=0.1)


@pytest.mark.parametrize("patience", [1, 2, 4])
@pytest.mark.parametrize("with_val", [False, True])
def test_early_stopping_stops_after_patience_epochs_without_improvement(patience, with_val):
    model, data, optimizer = constant_setup()
    history = fit(model, data, lambda out, y: out.mean(), optimizer, 20, val_loader=data if with_val else None,
                  early_stopping_patience=patience, progress=False)
    # epoch 1 sets the best loss; each of the next `patience` epochs fails to improve on it
    assert history["epoch"] == list(range(1, patience + 2))


def test_early_stopping_does_not_stop_while_the_loss_improves():
    seed_everything(0)
    model = nn.Linear(4, 1)
    x, y = regression_data()
    history = fit(model, DataLoader(TensorDataset(x, y), batch_size=48), mse, torch.optim.SGD(model.parameters(), lr=0.05), 8,
                  early_stopping_patience=1, progress=False)
    assert history["epoch"] == list(range(1, 9))
    assert all(b < a for a, b in zip(history["train_loss"], history["train_loss"][1:]))


def test_early_stopping_counts_across_a_resume(tmp_path):
    model, data, optimizer = constant_setup()
    loss = lambda out, y: out.mean()  # noqa: E731
    fit(model, data, loss, optimizer, 2, early_stopping_patience=2, checkpoint_path=tmp_path / "c.pt", progress=False)
    model, data, optimizer = constant_setup()
    history = fit(model, data, loss, optimizer, 20, early_stopping_patience=2, checkpoint_path=tmp_path / "c.pt",
                  resume=True, progress=False)
    assert history["epoch"] == [1, 2, 3]


class DictLossModel(nn.Module):
    """A fake detector: ``model(inputs, targets)`` returns a dict of losses, as torchvision's do."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        y = torch.stack([t["y"] for t in targets])
        out = self.linear(inputs)
        return {"loss_l2": nn.functional.mse_loss(out, y), "loss_l1": nn.functional.l1_loss(out, y)}


def test_fit_with_model_computed_losses_sums_them():
    seed_everything(0)
    model = DictLossModel()
    x, y = regression_data(16)
    batch = (x, [{"y": yi} for yi in y])
    with torch.no_grad():
        first_losses = model(*batch)
    expected_first = float(sum(first_losses.values()))
    history = fit(model, [batch], None, torch.optim.SGD(model.parameters(), lr=0.05), 5, val_loader=[batch],
                  progress=False)
    assert history["train_loss"][0] == pytest.approx(expected_first, rel=1e-6)
    assert history["train_loss"][-1] < history["train_loss"][0]
    with torch.no_grad():
        final = float(sum(model(*batch).values()))
    assert history["val_loss"][-1] == pytest.approx(final, rel=1e-6)


def test_fit_records_each_model_computed_loss_per_epoch():
    """Each key of the model's loss dict gets its own history: the epoch's batch-size-weighted mean."""
    seed_everything(0)
    model = DictLossModel()
    x, y = regression_data(20)
    batches = [(x[:12], [{"y": yi} for yi in y[:12]]), (x[12:], [{"y": yi} for yi in y[12:]])]  # unequal sizes
    history = fit(model, batches, None, torch.optim.SGD(model.parameters(), lr=0.05), 3, val_loader=batches[:1],
                  progress=False)
    assert set(history) == {"epoch", "train_loss", "train_loss_l2", "train_loss_l1", "val_loss", "val_loss_l2", "val_loss_l1"}
    assert all(len(v) == 3 for v in history.values())
    for split in ("train", "val"):
        for total, l2, l1 in zip(history[f"{split}_loss"], history[f"{split}_loss_l2"], history[f"{split}_loss_l1"]):
            assert l2 + l1 == pytest.approx(total, rel=1e-6)  # the parts add up to the loss that is minimized
    with torch.no_grad():
        final = {k: float(v) for k, v in model(*batches[0]).items()}
    assert history["val_loss_l2"][-1] == pytest.approx(final["loss_l2"], rel=1e-6)
    assert history["val_loss_l1"][-1] == pytest.approx(final["loss_l1"], rel=1e-6)
    assert history["train_loss_l2"][-1] < history["train_loss_l2"][0]


def test_fit_records_each_model_computed_loss_as_a_weighted_mean():
    """Without an optimizer step in between, the epoch's component equals the size-weighted mean over batches."""
    seed_everything(0)
    model = DictLossModel()
    x, y = regression_data(20)
    batches = [(x[:12], [{"y": yi} for yi in y[:12]]), (x[12:], [{"y": yi} for yi in y[12:]])]
    with torch.no_grad():
        parts = [{k: float(v) for k, v in model(*b).items()} for b in batches]
    history = fit(model, [batches[0]], None, torch.optim.SGD(model.parameters(), lr=0.0), 1, val_loader=batches,
                  progress=False)
    for key in ("loss_l2", "loss_l1"):
        assert history[f"train_{key}"] == [pytest.approx(parts[0][key], rel=1e-6)]
        assert history[f"val_{key}"] == [pytest.approx((12 * parts[0][key] + 8 * parts[1][key]) / 20, rel=1e-6)]


def test_fit_keeps_the_loss_parts_across_a_resume(tmp_path):
    def go(epochs, resume=False):
        seed_everything(0)
        model = DictLossModel()
        x, y = regression_data(16)
        batch = (x, [{"y": yi} for yi in y])
        return fit(model, [batch], None, torch.optim.SGD(model.parameters(), lr=0.05), epochs,
                   checkpoint_path=tmp_path / "c.pt", resume=resume, progress=False)

    straight = go(4)
    (tmp_path / "c.pt").unlink()
    go(2)
    assert go(4, resume=True) == straight
    assert len(straight["train_loss_l1"]) == 4


def test_fit_with_model_computed_losses_requires_a_dict():
    model = nn.Linear(4, 1)

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x, y):
            return self.inner(x)

    with pytest.raises(TypeError, match="dict of losses"):
        fit(Pair(), [(torch.ones(2, 4), torch.ones(2, 1))], None, torch.optim.SGD(model.parameters(), lr=0.1), 1,
            progress=False)


def test_fit_trains_a_torchvision_faster_rcnn_one_epoch():
    """The detection path end to end: a tiny FasterRCNN on two synthetic scenes."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    from course_utils.data import SyntheticScenes, collate_detection

    seed_everything(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1))
    backbone.out_channels = 16
    model = FasterRCNN(
        backbone, num_classes=6, min_size=64, max_size=64,
        rpn_anchor_generator=AnchorGenerator(sizes=((16, 32),), aspect_ratios=((1.0,),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
        rpn_batch_size_per_image=32, box_batch_size_per_image=32,
    )
    scenes = SyntheticScenes(2, seed=0, image_size=64, object_size=(12, 24))
    loader = DataLoader(scenes, batch_size=2, collate_fn=collate_detection)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = fit(model, loader, None, torch.optim.SGD(model.parameters(), lr=0.01), 1, progress=False)
    assert history["epoch"] == [1] and math.isfinite(history["train_loss"][0]) and history["train_loss"][0] > 0
    parts = ["train_loss_classifier", "train_loss_box_reg", "train_loss_objectness", "train_loss_rpn_box_reg"]
    assert set(history) == {"epoch", "train_loss", *parts}
    assert sum(history[k][0] for k in parts) == pytest.approx(history["train_loss"][0], rel=1e-5)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------- fit: bad input


def tiny():
    model = nn.Linear(4, 1)
    data = DataLoader(TensorDataset(*regression_data(8)), batch_size=4)
    return model, data, torch.optim.SGD(model.parameters(), lr=0.1)


@pytest.mark.parametrize("epochs, error", [(0, ValueError), (-3, ValueError), (2.0, TypeError), (None, TypeError)])
def test_fit_rejects_bad_epochs(epochs, error):
    model, data, optimizer = tiny()
    with pytest.raises(error, match="epochs"):
        fit(model, data, mse, optimizer, epochs, progress=False)


def test_fit_rejects_a_wrong_optimizer_type():
    model, data, _ = tiny()
    with pytest.raises(TypeError, match="optimizer"):
        fit(model, data, mse, list(model.parameters()), 1, progress=False)


def test_fit_rejects_a_model_that_is_not_a_module():
    _, data, optimizer = tiny()
    with pytest.raises(TypeError, match="model"):
        fit(lambda x: x, data, mse, optimizer, 1, progress=False)


def test_fit_rejects_a_loss_that_is_not_callable():
    model, data, optimizer = tiny()
    with pytest.raises(TypeError, match="loss_fn"):
        fit(model, data, "mse", optimizer, 1, progress=False)


def test_fit_resume_needs_a_checkpoint_path():
    model, data, optimizer = tiny()
    with pytest.raises(ValueError, match="checkpoint_path"):
        fit(model, data, mse, optimizer, 1, resume=True, progress=False)


def test_fit_metrics_need_a_val_loader():
    model, data, optimizer = tiny()
    with pytest.raises(ValueError, match="val_loader"):
        fit(model, data, mse, optimizer, 1, metrics={"mae": mae}, progress=False)


def test_fit_rejects_a_bad_patience():
    model, data, optimizer = tiny()
    with pytest.raises(ValueError, match="early_stopping_patience"):
        fit(model, data, mse, optimizer, 1, early_stopping_patience=0, progress=False)


def test_fit_rejects_a_checkpoint_path_that_is_a_folder(tmp_path):
    model, data, optimizer = tiny()
    with pytest.raises(ValueError, match="checkpoint_path") as info:
        fit(model, data, mse, optimizer, 1, checkpoint_path=tmp_path, progress=False)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_fit_stops_on_a_non_finite_loss(bad):
    model, data, optimizer = tiny()
    with pytest.raises(FloatingPointError, match="loss"):
        fit(model, data, lambda out, y: mse(out, y) * bad, optimizer, 2, progress=False)


def test_fit_rejects_empty_loaders_and_bad_batches():
    model, _, optimizer = tiny()
    with pytest.raises(ValueError, match="no batches"):
        fit(model, [], mse, optimizer, 1, progress=False)
    with pytest.raises(ValueError, match="pair"):
        fit(model, [(torch.ones(2, 4),)], mse, optimizer, 1, progress=False)


# --------------------------------------------------------------------------- checkpoints


def sample_state() -> dict:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": {"loss": [1.5, 0.5]}, "epoch": 3}


def test_save_and_load_round_trip(tmp_path):
    state = sample_state()
    assert save_checkpoint(state, tmp_path / "sub" / "ck.pt") == tmp_path / "sub" / "ck.pt"  # parents created
    loaded = load_checkpoint(str(tmp_path / "sub" / "ck.pt"))
    assert loaded["history"] == state["history"] and loaded["epoch"] == 3
    for k, v in state["model"].items():
        assert torch.equal(loaded["model"][k], v)
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    assert os.listdir(tmp_path / "sub") == ["ck.pt"]


@pytest.mark.parametrize("crash", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, crash):
    path = tmp_path / "ck.pt"
    save_checkpoint({"version": torch.tensor(1)}, path)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise crash

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(type(crash)):
        save_checkpoint({"version": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ck.pt"]  # the temporary file is gone
    assert int(load_checkpoint(path)["version"]) == 1


CALLS: list[str] = []


def _record(message: str) -> str:
    CALLS.append(message)
    return message


class Payload:
    """Unpickling this would call _record: weights_only loading must refuse it."""

    def __reduce__(self):
        return (_record, ("code ran",))


def test_load_refuses_arbitrary_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Payload()}, path)
    CALLS.clear()
    with pytest.raises(ValueError, match="evil.pt"):
        load_checkpoint(path)
    assert CALLS == []
    pickle.loads(pickle.dumps(Payload()))  # control: a full unpickle really runs the payload's code
    assert CALLS == ["code ran"]


def test_load_refuses_a_checkpoint_that_is_not_a_dict(tmp_path):
    torch.save([torch.ones(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="dict"):
        load_checkpoint(tmp_path / "list.pt")


CORRUPT = pytest.mark.filterwarnings("ignore:Detected pickle protocol")


@CORRUPT
@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=400))
def test_load_turns_random_bytes_into_value_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("rand") / "ck.pt"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="ck.pt"):
        load_checkpoint(path)


@CORRUPT
@pytest.mark.parametrize("seed", range(8))
def test_load_turns_garbage_after_a_pickle_header_into_value_error(tmp_path, seed):
    """Bytes that start like a pickle drive the unpickler furthest (IndexError, KeyError, struct.error...)."""
    rng = random.Random(seed)
    path = tmp_path / "ck.pt"
    for _ in range(40):
        path.write_bytes(b"\x80\x02" + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
        with pytest.raises(ValueError, match="ck.pt"):
            load_checkpoint(path)


def test_load_turns_truncated_files_into_value_error(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(sample_state(), path)
    full = path.read_bytes()
    for cut in sorted({0, 1, 10, len(full) // 4, len(full) // 2, len(full) - 100, len(full) - 1}):
        path.write_bytes(full[:cut])
        with pytest.raises(ValueError, match="ck.pt"):
            load_checkpoint(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_save_and_load_reject_a_folder(tmp_path):
    with pytest.raises(ValueError, match="folder") as info:
        save_checkpoint({"a": 1}, tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(ValueError, match="folder") as info:
        load_checkpoint(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_save_rejects_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="state"):
        save_checkpoint([1, 2], tmp_path / "a.pt")
    with pytest.raises(TypeError, match="path"):
        save_checkpoint({"a": 1}, 42)


@pytest.mark.parametrize("progress", [True, False])
def test_progress_false_disables_every_bar(monkeypatch, progress):
    import course_utils.training as training

    seen = []

    def recording_tqdm(iterable=None, *args, disable=None, **kwargs):
        seen.append(disable)
        return tqdm_original(iterable, *args, disable=True, **kwargs)

    tqdm_original = training.tqdm
    monkeypatch.setattr(training, "tqdm", recording_tqdm)
    seed_everything(0)
    model = make_mlp()
    train, val = loaders(False, 7)
    fit(model, train, mse, torch.optim.SGD(model.parameters(), lr=0.01), 2, val_loader=val, progress=progress)
    assert len(seen) == 1 + 2 * 2  # the epoch bar, then a train and a val bar per epoch
    assert all(d is True for d in seen) if not progress else all(d is None for d in seen)


# --------------------------------------------------------------------------- mixed precision, memory format

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_amp_on_the_cpu_is_a_no_op_that_says_so_once(tmp_path):
    plain, *_, plain_history = run(3, tmp_path / "a.pt")
    with pytest.warns(UserWarning, match="no effect on cpu") as caught:
        amp, *_, amp_history = run(3, tmp_path / "b.pt", amp=True, device="cpu")
    assert len([w for w in caught if "amp=True" in str(w.message)]) == 1
    assert amp_history == plain_history
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), amp.state_dict().values()))
    assert load_checkpoint(tmp_path / "b.pt")["scaler"] is None


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(amp=True, amp_dtype=torch.float32), ValueError, "amp_dtype must be torch.float16 or torch.bfloat16"),
        (dict(amp=True, amp_dtype="bf16"), ValueError, "amp_dtype must be"),
        (dict(amp_dtype=torch.float16), ValueError, "only used with amp=True"),
        (dict(amp="yes"), TypeError, "amp must be True or False"),
    ],
)
def test_fit_rejects_bad_amp_settings(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        run(1, tmp_path / "ck.pt", **kwargs)


def test_channels_last_trains_like_the_default_layout():
    def train(channels_last: bool) -> nn.Module:
        seed_everything(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
        g = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(32, 3, 12, 12, generator=g), torch.randint(0, 2, (32,), generator=g))
        fit(model, DataLoader(data, batch_size=8), nn.functional.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.1), 2,
            channels_last=channels_last, device="cpu", progress=False)
        return model

    default, last = train(False), train(True)
    assert last[0].weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(default.parameters(), last.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@CUDA
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_amp_on_cuda_trains(tmp_path, dtype):
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    _, *_, history = run(6, tmp_path / "ck.pt", amp=True, amp_dtype=dtype, device="cuda")
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    scaler = load_checkpoint(tmp_path / "ck.pt")["scaler"]
    assert (scaler is not None) == (dtype == torch.float16)  # float16 needs loss scaling, bfloat16 does not


@CUDA
def test_amp_float16_resume_restores_the_scaler_and_equals_an_uninterrupted_run(tmp_path):
    settings = dict(amp=True, amp_dtype=torch.float16, device="cuda")
    straight, *_, straight_history = run(4, tmp_path / "straight.pt", **settings)
    run(2, tmp_path / "split.pt", **settings)
    resumed, *_, resumed_history = run(4, tmp_path / "split.pt", resume=True, seed=999, **settings)
    assert resumed_history == straight_history
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))


@CUDA
def test_fit_trains_on_the_gpu_by_default():
    seed_everything(0)
    model = make_mlp()
    x, y = regression_data()
    fit(model, DataLoader(TensorDataset(x, y), batch_size=16), mse, torch.optim.SGD(model.parameters(), lr=0.05), 1, progress=False)
    assert next(model.parameters()).device.type == "cuda"
