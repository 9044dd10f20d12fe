"""``fit`` under ``torchrun``: two CPU processes (gloo, loopback) against each other and a single process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import distributed, zoo
from course_utils.training import fit

sys.path.insert(0, str(Path(__file__).parent))
import ddp_worker  # noqa: E402

WORKER = Path(__file__).with_name("ddp_worker.py")


def torchrun(args: list[str], tmp: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(WORKER.parent.parent), os.environ.get("PYTHONPATH", "")])}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    torchrun([str(WORKER), str(out)], out)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_both_ranks_ran_in_one_group_of_two(ranks):
    _, results = ranks
    assert [r["world_size"] for r in results] == [2, 2]


def test_parameters_and_buffers_are_identical_on_every_rank(ranks):
    _, (r0, r1) = ranks
    for name, value in r0["state"].items():
        assert torch.equal(value, r1["state"][name]), name
    initial = ddp_worker.make_model(0).state_dict()
    assert not torch.equal(r0["state"]["0.weight"], initial["0.weight"])  # it did train


def test_history_is_the_same_global_mean_on_every_rank(ranks):
    _, (r0, r1) = ranks
    assert r0["history"] == r1["history"]
    assert r0["history"]["epoch"] == [1, 2, 3, 4]


def test_history_of_a_frozen_model_is_the_mean_over_the_whole_data(ranks):
    """lr=0: each epoch's train and val loss must be the plain mean over all samples, not one rank's share."""
    _, (r0, _) = ranks
    model = ddp_worker.make_model(0, batch_norm=False).eval()
    with torch.no_grad():
        for key, data in (("train_loss", ddp_worker.regression_data(ddp_worker.TRAIN_SIZE, 0)),
                          ("val_loss", ddp_worker.regression_data(ddp_worker.VAL_SIZE, 1))):
            x, y = data.tensors
            assert r0["frozen_history"][key][0] == pytest.approx(float(nn.functional.mse_loss(model(x), y)), rel=1e-5), key


def test_only_rank_0_writes_checkpoints(ranks):
    out, _ = ranks
    assert (out / "writers0.txt").read_text().split() == ["straight.pt"] * 4 + ["split.pt"] * 4
    assert not (out / "writers1.txt").exists()


def test_a_resumed_distributed_run_equals_an_uninterrupted_one(ranks):
    _, results = ranks
    for r in results:
        assert r["resumed_history"] == r["history"]
        for name, value in r["state"].items():
            assert torch.equal(value, r["resumed_state"][name]), name


def test_the_loss_is_close_to_a_single_process_run_with_the_same_global_batch(ranks):
    """2 ranks x 8 samples average their gradients: like one process with batches of 16 (other shuffles)."""
    _, (r0, _) = ranks
    model = ddp_worker.make_model(0, batch_norm=False)
    train = DataLoader(ddp_worker.regression_data(ddp_worker.TRAIN_SIZE, 0), batch_size=2 * ddp_worker.BATCH, shuffle=True,
                       generator=torch.Generator().manual_seed(7))
    single = fit(model, train, nn.functional.mse_loss, torch.optim.SGD(model.parameters(), lr=0.05), 12, progress=False)
    ddp, one = r0["long_history"]["train_loss"], single["train_loss"]
    assert ddp[-1] < 0.05 * ddp[0] and one[-1] < 0.05 * one[0]
    assert sum(ddp[-3:]) == pytest.approx(sum(one[-3:]), rel=0.3)


def test_a_data_set_shorter_than_the_world_size_is_refused(ranks):
    _, results = ranks
    assert all("fewer than the 2 processes" in r["too_short"] for r in results)


def test_the_zoo_trains_under_torchrun_and_rank_0_alone_writes(tmp_path):
    done = torchrun(["-m", "course_utils.zoo", "train", "shapes_cnn", "--epochs", "1", "--weights-dir", str(tmp_path)], tmp_path)
    assert done.stdout.count("shapes_cnn: {") == 1  # one report, from rank 0
    entry = zoo.manifest(tmp_path)["shapes_cnn"]
    assert entry["processes"] == 2 and entry["epochs"] == 1
    assert entry["metrics"]["test_accuracy"] > 0.3  # it learned: 5 classes, chance is 0.2
    assert zoo.evaluate("shapes_cnn", zoo.load("shapes_cnn", tmp_path)) == pytest.approx(entry["metrics"], abs=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "shapes_cnn.pt"]


# --------------------------------------------------------------------------- in one process


def test_shards_are_disjoint_cover_the_data_and_reshuffle_each_epoch():
    data = TensorDataset(torch.arange(10))
    loader = DataLoader(data, batch_size=3, shuffle=True)
    shards = [distributed.shard_loader(loader, 2, r, seed=4) for r in range(2)]
    orders = []
    for epoch in range(2):
        seen = []
        for shard in shards:
            shard.sampler.set_epoch(epoch)
            seen.append([int(i) for (batch,) in shard for i in batch])
        assert sorted(seen[0] + seen[1]) == list(range(10)) and len(seen[0]) == len(seen[1]) == 5
        orders.append(seen)
    assert orders[0] != orders[1]


def test_evaluation_shards_count_every_sample_once():
    loader = DataLoader(TensorDataset(torch.arange(7)), batch_size=2)
    seen = [[int(i) for (b,) in distributed.shard_loader(loader, 2, r, even=False) for i in b] for r in range(2)]
    assert seen == [[0, 2, 4, 6], [1, 3, 5]]


def test_shard_loader_rejects_bad_loaders():
    with pytest.raises(TypeError, match="DataLoader"):
        distributed.shard_loader([1, 2, 3], 2, 0)
    with pytest.raises(ValueError, match="fewer than the 3 processes"):
        distributed.shard_loader(DataLoader(TensorDataset(torch.arange(2))), 3, 0)


def test_backend_checks():
    cpu = torch.device("cpu")
    assert distributed.check_backend(None, cpu) == "gloo"
    with pytest.raises(ValueError, match="nccl.*needs CUDA"):
        distributed.check_backend("nccl", cpu)
    with pytest.raises(ValueError, match="backend must be one of"):
        distributed.check_backend("mpi-ish", cpu)


def test_fit_rejects_a_bad_backend_even_in_one_process():
    model = nn.Linear(2, 1)
    loader = DataLoader(TensorDataset(torch.randn(4, 2), torch.randn(4, 1)), batch_size=2)
    with pytest.raises(ValueError, match="needs CUDA"):
        fit(model, loader, nn.functional.mse_loss, torch.optim.SGD(model.parameters(), lr=0.1), 1, backend="nccl",
            device="cpu", progress=False)


def test_a_launch_without_a_rendezvous_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    model = nn.Linear(2, 1)
    loader = DataLoader(TensorDataset(torch.randn(4, 2), torch.randn(4, 1)), batch_size=2)
    with pytest.raises(ValueError, match="launch with torchrun"):
        fit(model, loader, nn.functional.mse_loss, torch.optim.SGD(model.parameters(), lr=0.1), 1, device="cpu", progress=False)
