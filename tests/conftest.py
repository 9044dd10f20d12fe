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
