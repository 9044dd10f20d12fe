"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node=2``: ``fit`` unchanged, data-parallel.

Each rank writes what it saw to ``OUT/rank{R}.pt``; the test compares the ranks with each other and
with a single-process run. Every run uses the data of ``regression_data`` below.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import distributed, training
from course_utils.training import fit, seed_everything

TRAIN_SIZE, VAL_SIZE, BATCH = 64, 21, 8  # 21: the two ranks evaluate unequal shares (11 and 10)


def regression_data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(n, 1, generator=g))


def make_model(seed: int, batch_norm: bool = True) -> nn.Module:
    seed_everything(seed)
    layers = [nn.Linear(4, 16)] + ([nn.BatchNorm1d(16)] if batch_norm else []) + [nn.ReLU(), nn.Linear(16, 1)]
    return nn.Sequential(*layers)


def run(epochs: int, lr: float = 0.05, seed: int = 0, batch_norm: bool = True, **kwargs) -> tuple[nn.Module, dict]:
    model = make_model(seed, batch_norm)
    train = DataLoader(regression_data(TRAIN_SIZE, 0), batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(7))
    val = DataLoader(regression_data(VAL_SIZE, 1), batch_size=BATCH)
    history = fit(model, train, nn.functional.mse_loss, torch.optim.SGD(model.parameters(), lr=lr), epochs, val_loader=val,
                  progress=False, **kwargs)
    return model, history


def main(out: Path) -> None:
    rank = distributed.rank()
    writers = out / f"writers{rank}.txt"
    real_save = training.save_checkpoint

    def spy(state, path):
        with writers.open("a") as f:
            f.write(f"{Path(path).name}\n")
        return real_save(state, path)

    training.save_checkpoint = spy
    result: dict = {"world_size": distributed.world_size()}
    model, result["history"] = run(4, checkpoint_path=out / "straight.pt")
    result["state"] = model.state_dict()
    run(2, checkpoint_path=out / "split.pt")
    resumed, result["resumed_history"] = run(4, seed=999, checkpoint_path=out / "split.pt", resume=True)
    result["resumed_state"] = resumed.state_dict()
    _, result["frozen_history"] = run(1, lr=0.0, batch_norm=False)
    _, result["long_history"] = run(12, batch_norm=False)  # the model does not move: losses are plain means
    try:
        fit(make_model(0), DataLoader(regression_data(1, 0), batch_size=1), nn.functional.mse_loss,
            torch.optim.SGD(make_model(0).parameters(), lr=0.1), 1, progress=False)
    except ValueError as exc:
        result["too_short"] = str(exc)
    torch.save(result, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
