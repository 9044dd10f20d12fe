"""Generic fixtures shared by the whole test suite."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: no window ever opens, whatever MPLBACKEND says

import os  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# CI draws the same hypothesis examples on every run, so a red build is reproducible;
# local runs keep exploring new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


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
