"""Every dashboard's rich display, headless: the live widget view, a PNG of its first view, one line of text.

An untrusted notebook (a fresh clone) cannot show a saved widget, so JupyterLab falls back to the
best other format of the output: the first-view picture, else the text line. tests/browser checks
that in a real browser; here the bundle itself is checked for every explorer of course_utils.widgets.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import ipywidgets as W
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from IPython.core.formatters import DisplayFormatter

from course_utils import widgets
from course_utils.widgets import _base

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def features_and_labels() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 4
    return torch.randn(4, 6, generator=generator)[labels] * 3 + torch.randn(40, 6, generator=generator), labels


def build(name: str) -> W.VBox:
    """Explorer ``name`` with the arguments its notebook gives it (small stand-ins where it needs data)."""
    if name == "embedding_explorer":
        features, labels = features_and_labels()
        return widgets.embedding_explorer(features, labels, images=torch.rand(40, 3, 8, 8), class_names=list("abcd"))
    return getattr(widgets, name)()


EXPLORERS = sorted(name for name in widgets.__all__ if name.endswith("_explorer"))


def test_every_concept_has_its_explorer():
    assert set(EXPLORERS) >= {"scene_explorer", "iou_explorer", "anchor_explorer", "nms_explorer", "pr_curve_explorer",
                              "occlusion_explorer", "cam_explorer", "embedding_explorer"}  # fmt: skip


def decode_png(encoded: str) -> np.ndarray:
    raw = base64.b64decode(encoded, validate=True)
    assert raw.startswith(PNG_MAGIC)
    return matplotlib.image.imread(io.BytesIO(raw), format="png")


@pytest.fixture
def quiet(monkeypatch):
    """No frontend: what the live output would show is collected, not printed."""
    shown = []
    monkeypatch.setattr(_base, "display", shown.append)
    return shown


@pytest.mark.parametrize("name", EXPLORERS)
def test_the_explorer_carries_its_first_view_and_a_line_of_text(name, quiet):
    plt.close("all")
    box = build(name)
    assert isinstance(box, _base.Dashboard), f"{name} must be built by widgets._base.dashboard"
    assert plt.get_fignums() == []  # the first view's figure was closed after its picture was taken
    data = box._repr_mimebundle_()
    assert set(data) == {WIDGET_VIEW, "image/png", "text/plain"}
    assert data[WIDGET_VIEW]["model_id"] == box.model_id  # the live widget still works

    title = box.children[0].value.removeprefix("<b>").removesuffix("</b>")
    text = data["text/plain"]
    assert "\n" not in text and text == f"{title} — run the notebook from the top (Run → Run All Cells) to make this dashboard live."
    assert not text.startswith("VBox(")

    picture = decode_png(data["image/png"])
    figure = quiet[0]  # the first view, as the live output showed it
    assert isinstance(figure, plt.Figure)
    height, width = picture.shape[:2]
    fig_width, fig_height = figure.get_size_inches() * figure.dpi
    assert 0.6 * fig_width < width < 1.3 * fig_width and 0.6 * fig_height < height < 1.5 * fig_height
    assert picture[..., :3].std() > 0.05  # a drawing, not a blank canvas


def test_the_picture_is_the_first_view_and_stays_so(quiet):
    box = widgets.iou_explorer()
    first = box._repr_mimebundle_()["image/png"]
    controls = box.children[1].children
    controls[0].value += 30  # A moves: the live output redraws ...
    assert len(quiet) == 2
    assert box._repr_mimebundle_()["image/png"] == first  # ... the picture is still the first view
    # and it is the figure drawn for the initial values (the lesson's example), under its caption
    expected = widgets.iou_explorer_figure(20, 20, 40, 40, 24, 24, 40, 40)
    assert decode_png(first).shape == decode_png(base64.b64encode(_base.first_view_png(expected, box.title)).decode()).shape
    plt.close(expected)


def test_the_caption_names_the_dashboard_and_how_to_make_it_live():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    plain = decode_png(base64.b64encode(_base.first_view_png(fig)).decode())
    titled = decode_png(base64.b64encode(_base.first_view_png(fig, "A title")).decode())
    assert titled.shape[0] > plain.shape[0]  # the bold title is a line above the caption
    assert fig.texts == []  # the caption was only added for the picture
    plt.close(fig)


def test_a_caption_wider_than_its_figure_is_not_cut_off():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.zeros((4, 4)), cmap="gray")  # a black square: only the caption may widen the picture
    ax.axis("off")
    picture = decode_png(base64.b64encode(_base.first_view_png(fig, "T")).decode())[..., :3]
    plt.close(fig)
    assert picture.shape[1] > 2.5 * fig.dpi  # widened for the caption ...
    dark = (picture < 0.8).any(axis=2)
    rows, cols = np.nonzero(dark.any(axis=1))[0], np.nonzero(dark.any(axis=0))[0]
    height, width = dark.shape
    # ... with a margin on every side: no letter cut off (the pad of a tight bounding box is 0.1 in)
    assert min(rows[0], cols[0], width - 1 - cols[-1], height - 1 - rows[-1]) >= 5


def test_ipython_formats_the_bundle(quiet):
    """What a kernel sends for the cell's result: all three formats, the PNG base64-encoded."""
    box = widgets.scene_explorer()
    data, _ = DisplayFormatter().format(box)
    assert {WIDGET_VIEW, "image/png", "text/plain"} <= set(data)
    assert decode_png(data["image/png"]).ndim == 3
    assert re.fullmatch(r"Synthetic scenes — run the notebook .* live\.", data["text/plain"])


def test_a_first_view_without_a_figure_has_only_the_text_line(quiet):
    box = _base.dashboard(lambda n: W.HTML(f"n = {n}"), {"n": W.IntSlider(value=1)}, "Counter")
    data = box._repr_mimebundle_()
    assert set(data) == {WIDGET_VIEW, "text/plain"} and data["text/plain"].startswith("Counter — run the notebook")
    untitled = _base.dashboard(lambda n: None, {"n": W.IntSlider(value=1)})
    assert untitled._repr_mimebundle_()["text/plain"].startswith("Interactive dashboard — run the notebook")


# --------------------------------------------------------------------------- the committed notebooks

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
DASHBOARD_CALL = re.compile(r"widgets\.\w+_explorer\(")


def dashboard_outputs() -> list[pytest.param]:
    found = []
    for path in sorted(NOTEBOOKS.glob("[0-9]*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for number, cell in enumerate(cells):
            if cell["cell_type"] == "code" and DASHBOARD_CALL.search("".join(cell["source"])):
                found.append(pytest.param(path.name, number, id=f"{path.stem}-cell{number}"))
    return found


@pytest.mark.parametrize("notebook, number", dashboard_outputs())
def test_the_saved_dashboard_output_carries_its_picture(notebook, number):
    """What a fresh clone shows before anything runs: the saved output's picture (tests/browser checks it in a browser)."""
    cell = json.loads((NOTEBOOKS / notebook).read_text())["cells"][number]
    results = [o for o in cell.get("outputs", []) if o["output_type"] == "execute_result"]
    assert len(results) == 1, "the dashboard cell has no saved result: execute the notebook (make execute)"
    data = results[0]["data"]
    assert WIDGET_VIEW in data
    assert "image/png" in data, "no first-view picture in the saved output: re-execute the notebook (make execute)"
    encoded = data["image/png"]
    decode_png("".join(encoded) if isinstance(encoded, list) else encoded)
    text = "".join(data["text/plain"])
    assert "\n" not in text.strip() and text.endswith("run the notebook from the top (Run → Run All Cells) to make this dashboard live.")
