"""Generic fixtures shared by the whole test suite."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: no window ever opens, whatever MPLBACKEND says

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every matplotlib figure a test opened, so memory does not grow over the suite."""
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one intra-op thread: their tensors are tiny, so extra threads only
    wait on each other (and on a shared CPU they slow small ops down tenfold)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
