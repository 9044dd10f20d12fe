"""One training loop for every task in the course, plus seeding, device choice and checkpoints.

Only the model and the loss change between a classifier, a segmenter and a detector:

* ``loss_fn(outputs, targets)`` for models that map inputs to outputs (classification,
  segmentation), or
* ``loss_fn=None`` for models that compute their own losses from ``model(inputs, targets)``
  and return a dict of them (torchvision's detectors); the losses are summed, and each one is
  also kept in the history (``train_loss_classifier``, ... after the dict's keys).

A batch is ``(inputs, targets)``; tensors (also inside lists and dicts) are moved to the device.

The same ``fit`` scales up without changes: on CUDA ``amp=True`` trains in mixed precision
(``torch.autocast``; bfloat16 where the GPU supports it, else float16 with a gradient scaler), and
under ``torchrun --nproc_per_node=N`` it trains data-parallel on N processes (see ``distributed``).
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import distributed
from .validation import check_positive_int

__all__ = ["seed_everything", "get_device", "eval_mode", "fit", "save_checkpoint", "load_checkpoint", "to_device"]

LossFn = Callable[[Any, Any], Tensor]
MetricFn = Callable[[Any, Any], float]
AMP_DTYPES = (torch.float16, torch.bfloat16)
SEEN = "\0samples"  # the sample count travels with the totals when they are summed over processes


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: ``model.eval()`` inside, every sub-module's own ``training`` flag restored on exit."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


def seed_everything(seed: int) -> int:
    """Seed Python's, NumPy's and PyTorch's (CPU and CUDA) random generators; return the seed."""
    seed = check_positive_int(seed, "seed", allow_zero=True)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def get_device(prefer: str | None = None) -> torch.device:
    """The device to compute on: CUDA when present, else the CPU.

    ``prefer="cpu"`` forces the CPU; ``prefer="cuda"`` raises if no GPU is available.
    """
    if prefer not in (None, "cpu", "cuda"):
        raise ValueError(f"prefer must be None, 'cpu' or 'cuda', got {prefer!r}")
    if prefer == "cuda" and not torch.cuda.is_available():
        raise ValueError("prefer='cuda' but no CUDA device is available on this machine")
    if prefer == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def to_device(obj: Any, device: torch.device | str) -> Any:
    """Move tensors to ``device``, recursing into lists, tuples and dicts."""
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_path(path: str | os.PathLike, name: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a folder; give a file name such as {str(path / 'model.pt')!r}")
    return path


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Save a dict of tensors/state dicts atomically: write a temporary file, then rename it.

    A crash while saving never leaves a half-written checkpoint at ``path``.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    path = _checkpoint_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs)."""
    path = _checkpoint_path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # corrupt bytes fail in many ways: UnpicklingError, EOFError, IndexError, struct.error...
        raise ValueError(f"{str(path)!r} is not a readable checkpoint (corrupt or not written by torch.save): {exc}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{str(path)!r} holds a {type(state).__name__}, expected a checkpoint dict")
    return state


def _rng_state(loaders: Iterable[Any]) -> dict[str, Any]:
    """Every random state that decides the next epoch (shuffling, dropout, augmentation)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "loaders": [g.get_state() if isinstance(g := getattr(dl, "generator", None), torch.Generator) else None for dl in loaders],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any], loaders: Iterable[Any]) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    for dl, g_state in zip(loaders, state["loaders"]):
        if g_state is not None:
            dl.generator.set_state(g_state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- the loop


def _batch_loss(
    model: nn.Module, batch: Any, loss_fn: LossFn | None, device: torch.device, channels_last: bool = False
) -> tuple[Tensor, Any, Any, dict[str, Tensor]]:
    """The loss of one batch, plus the outputs and targets (for metrics) and the model's loss dict.

    The dict is empty unless ``loss_fn`` is None (the model computes its own losses).
    """
    if not isinstance(batch, (list, tuple)) or len(batch) != 2:
        raise ValueError("each batch must be a pair (inputs, targets)")
    inputs, targets = to_device(batch, device)
    if channels_last and isinstance(inputs, Tensor) and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    if loss_fn is None:
        losses = model(inputs, targets)
        if not isinstance(losses, Mapping):
            raise TypeError("with loss_fn=None the model must return a dict of losses (as torchvision detectors do)")
        return sum(losses.values()), None, targets, dict(losses)
    outputs = model(inputs)
    return loss_fn(outputs, targets), outputs, targets, {}


def _batch_size(inputs: Any) -> int:
    return inputs.shape[0] if isinstance(inputs, Tensor) else len(inputs)


def _run_epoch(
    model, loader, loss_fn, device, optimizer=None, metrics=None, desc="", progress=True, amp_dtype=None, scaler=None,
    channels_last=False, sync=False,
) -> dict[str, float]:
    """One pass over ``loader``; trains when an optimizer is given. Returns sample-weighted means.

    The keys are ``loss``, the metrics' names and, with ``loss_fn=None``, the keys of the model's
    loss dict (a key named ``loss`` would clash with the total and is not recorded on its own).
    ``amp_dtype`` runs the forward pass under ``torch.autocast``; ``scaler`` scales the loss
    (float16); with ``sync`` the totals are summed over the processes first (global means).
    """
    training = optimizer is not None
    totals: dict[str, float] = {}
    seen = 0
    with torch.set_grad_enabled(training):
        for batch in tqdm(loader, desc=desc, leave=False, disable=None if progress else True):
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss, outputs, targets, parts = _batch_loss(model, batch, loss_fn, device, channels_last)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss.item()} ({desc}); lower the learning rate")
            if training:
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
            n = _batch_size(batch[0])
            seen += n
            totals["loss"] = totals.get("loss", 0.0) + loss.item() * n
            for name, part in parts.items():
                if name != "loss":
                    totals[name] = totals.get(name, 0.0) + float(part.detach()) * n
            for name, fn in (metrics or {}).items():
                totals[name] = totals.get(name, 0.0) + float(fn(outputs, targets)) * n
    if sync:
        totals = distributed.all_reduce_sums({**totals, SEEN: seen}, device)
        seen = totals.pop(SEEN)
    if seen == 0:
        raise ValueError(f"the {desc or 'data'} loader yielded no batches")
    return {k: v / seen for k, v in totals.items()}


def _amp_dtype(amp: bool, amp_dtype: torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """The dtype ``torch.autocast`` runs in, or None for float32 (no ``amp``, or on the CPU: said once)."""
    if not isinstance(amp, bool):
        raise TypeError(f"amp must be True or False, got {type(amp).__name__}")
    if amp_dtype is not None and amp_dtype not in AMP_DTYPES:
        raise ValueError(f"amp_dtype must be torch.float16 or torch.bfloat16 (or None: the GPU's best), got {amp_dtype!r}")
    if amp_dtype is not None and not amp:
        raise ValueError("amp_dtype is only used with amp=True")
    if not amp:
        return None
    if device.type != "cuda":
        warnings.warn(f"amp=True has no effect on {device}: mixed precision is a CUDA feature; training in float32", stacklevel=3)
        return None
    if amp_dtype is None:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp_dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU does not support bfloat16; use amp_dtype=torch.float16")
    return amp_dtype


def fit(
    model: nn.Module,
    train_loader: Iterable,
    loss_fn: LossFn | None,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    val_loader: Iterable | None = None,
    metrics: Mapping[str, MetricFn] | None = None,
    scheduler: Any = None,
    device: torch.device | str | None = None,
    early_stopping_patience: int | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    amp: bool = False,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    backend: str | None = None,
) -> dict[str, list[float]]:
    """Train ``model`` for up to ``epochs`` epochs and return its history.

    Args:
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, or ``None`` when ``model(inputs, targets)``
            returns a dict of losses (torchvision detectors).
        metrics: ``{name: fn(outputs, targets) -> float}`` computed on ``val_loader`` batches.
        scheduler: stepped once per epoch (after validation).
        early_stopping_patience: stop after this many epochs without a lower monitored loss
            (``val_loss`` if there is a validation loader, else ``train_loss``).
        checkpoint_path: model, optimizer, scheduler, history and random states are saved there
            after every epoch. With ``resume=True`` an existing checkpoint is loaded first and
            training goes on where it stopped, giving the same result as an uninterrupted run.
        device: default ``get_device()``: the GPU when there is one.
        amp: mixed precision on CUDA (``torch.autocast`` in ``amp_dtype``: default bfloat16 where
            supported, else float16 with a gradient scaler, whose state is checkpointed); on the CPU a
            no-op that warns once.
        channels_last: model and 4-D inputs in the ``channels_last`` memory format (faster convolutions
            on recent GPUs).
        backend: the process-group backend under ``torchrun`` (default ``nccl`` on CUDA, ``gloo`` on
            the CPU). Under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1) the model is wrapped in
            ``DistributedDataParallel``, each rank trains on its share of every epoch, the history holds
            global means, and only rank 0 shows progress and writes the checkpoint (see ``distributed``).

    Returns:
        ``{"epoch": [...], "train_loss": [...], "val_loss": [...], "val_<metric>": [...]}``; with
        ``loss_fn=None`` also ``"train_<key>"`` (and ``"val_<key>"``) for each key of the model's
        loss dict, e.g. ``train_loss_classifier``: like ``train_loss``, the epoch's mean over its
        batches (weighted by batch size), so that the parts of a detector's loss can be plotted.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError("loss_fn must be callable or None")
    epochs = check_positive_int(epochs, "epochs")
    if early_stopping_patience is not None:
        early_stopping_patience = check_positive_int(early_stopping_patience, "early_stopping_patience")
    if metrics and (loss_fn is None or val_loader is None):
        raise ValueError("metrics need a val_loader and a loss_fn (they are computed on the model's outputs)")
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a checkpoint_path")
    if checkpoint_path is not None:
        checkpoint_path = _checkpoint_path(checkpoint_path, "checkpoint_path")
    device = torch.device(device) if device is not None else get_device()
    precision = _amp_dtype(amp, amp_dtype, device)
    world = distributed.world_size()
    if world > 1:
        device = distributed.init_from_env(device, backend)
        rank = distributed.rank()
        train_loader = distributed.shard_loader(train_loader, world, rank, seed=_loader_seed(train_loader))
        if val_loader is not None:
            val_loader = distributed.shard_loader(val_loader, world, rank, even=False)
    elif backend is not None:
        distributed.check_backend(backend, device)
    main = distributed.is_main_process()
    progress = progress and main
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model
    scaler = torch.amp.GradScaler(device.type) if precision == torch.float16 else None
    loaders = [train_loader] + ([val_loader] if val_loader is not None else [])
    step = dict(loss_fn=loss_fn, device=device, progress=progress, amp_dtype=precision, channels_last=channels_last, sync=world > 1)

    history: dict[str, list[float]] = {"epoch": [], "train_loss": []}
    start = 0
    if resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
        history = {k: list(v) for k, v in state["history"].items()}
        by_rank = state.get("rng_by_rank")
        _set_rng_state(by_rank[distributed.rank()] if by_rank and len(by_rank) == world else state["rng"], loaders)
        start = len(history["epoch"])

    monitor = "val_loss" if val_loader is not None else "train_loss"
    best = min(history.get(monitor, []), default=math.inf)
    since_best = 0 if not history["epoch"] else len(history[monitor]) - 1 - int(np.argmin(history[monitor]))
    bar = tqdm(range(start, epochs), desc="epochs", disable=None if progress else True, initial=start, total=epochs)
    for epoch in bar:
        if early_stopping_patience is not None and since_best >= early_stopping_patience:
            break
        if world > 1:
            train_loader.sampler.set_epoch(epoch)
        net.train()
        train = _run_epoch(net, train_loader, optimizer=optimizer, desc=f"train {epoch + 1}", **step)
        if world > 1:
            distributed.broadcast_buffers(model)  # BatchNorm statistics: rank 0's everywhere, as the parameters
        history["epoch"].append(epoch + 1)
        for name, value in train.items():
            history.setdefault(f"train_{name}", []).append(value)
        if val_loader is not None:
            model.eval()
            val = _run_epoch(model, val_loader, metrics=metrics, desc=f"val {epoch + 1}", **step)
            for name, value in val.items():
                history.setdefault(f"val_{name}", []).append(value)
        if scheduler is not None:
            scheduler.step()
        current = history[monitor][-1]
        best, since_best = (current, 0) if current < best else (best, since_best + 1)
        bar.set_postfix({k: f"{v[-1]:.4g}" for k, v in history.items() if k != "epoch"})
        if checkpoint_path is not None:
            rng = _rng_state(loaders)
            by_rank = distributed.gather_objects(rng) if world > 1 else None
            if main:
                save_checkpoint(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None,
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "history": history,
                        "rng": rng,
                        **({"rng_by_rank": by_rank} if by_rank is not None else {}),
                    },
                    checkpoint_path,
                )
    model.eval()
    return history


def _loader_seed(loader: Any) -> int:
    """The seed a sharded loader shuffles with: the loader's own generator's, else 0 (the same on every rank)."""
    generator = getattr(loader, "generator", None)
    return generator.initial_seed() if isinstance(generator, torch.Generator) else 0
