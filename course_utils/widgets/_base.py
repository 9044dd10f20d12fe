"""The one pattern every dashboard follows: controls → pure function → figure in an Output.

A dashboard also carries a picture of its first view. JupyterLab shows a saved widget only in a
trusted notebook whose widget state it can restore; in a fresh (untrusted) clone, before anything
runs, it falls back to another format of the same output. So the dashboard's rich display holds,
next to ipywidgets' own widget view (what a running kernel shows, live):

* ``image/png``: the figure that its render function drew for the initial control values, with a
  caption saying that it is a picture and how to make it live;
* ``text/plain``: one line saying how to make the dashboard live (instead of ``VBox(children=…``).
"""

from __future__ import annotations

import base64
import io
from typing import Any, Callable, Mapping

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from IPython.display import display
from matplotlib.axes import Axes
from torch import nn

RUN_ALL = "run the notebook from the top (Run → Run All Cells) to make this dashboard live."
CAPTION = "Picture of the first view: run the notebook from the top (Run → Run All Cells) to make it live."


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live (the CPU for a model without any): its inputs go there."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def live_hint(title: str = "") -> str:
    """The one-line ``text/plain`` of a dashboard titled ``title``."""
    return f"{title or 'Interactive dashboard'} — {RUN_ALL}"


def first_view_png(figure: plt.Figure, title: str = "") -> bytes:
    """``figure`` as PNG bytes, as the inline backend draws it (tight bounding box), under a caption:
    ``title`` in bold, then :data:`CAPTION`; reduced to 256 colours when that makes it smaller."""
    from IPython.core.pylabtools import print_figure
    from matplotlib.transforms import offset_copy

    # the caption goes above everything the figure draws (titles, labels that stick out of an axes)
    get_renderer = getattr(figure.canvas, "get_renderer", None)  # Agg canvases (inline backend, Agg) have one
    top = figure.get_tightbbox(get_renderer()).y1 if get_renderer else figure.get_figheight()  # inches from the bottom
    style = dict(ha="center", va="bottom", fontsize=8, color="0.3")
    added = []
    for line, points, weight in ((CAPTION, 4, "normal"), (title, 16, "bold")):
        if line:
            # in figure coordinates: the tight bounding box shifts transFigure, not dpi_scale_trans
            place = offset_copy(figure.transFigure, fig=figure, y=points, units="points")
            added.append(figure.text(0.5, top / figure.get_figheight(), line, transform=place, fontweight=weight, **style))
    try:
        png = print_figure(figure, "png", bbox_inches="tight")
    finally:
        for text in added:
            text.remove()
    return _smaller_png(png)


def _smaller_png(png: bytes) -> bytes:
    """``png`` with at most 256 colours, when that is smaller: the picture is saved in the notebook
    (a scene's noisy background makes a full-colour PNG about three times larger)."""
    from PIL import Image

    quantized = Image.open(io.BytesIO(png)).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    quantized.save(buffer, "PNG", optimize=True)
    return buffer.getvalue() if buffer.tell() < len(png) else png


def labels_inside(ax: Axes, height: float = 6.0) -> None:
    """Move the box labels that would stick out above the image (boxes whose top edge is within
    ``height`` pixels of it) just inside their box, so that they never cover the panel's title."""
    for text in ax.texts:
        x, y = text.get_position()
        if text.get_va() == "bottom" and y < height - 0.5:  # draw_boxes puts a label at y1 - 1.5, above the box
            text.set_position((x, y + 1.5))
            text.set_va("top")


class Dashboard(W.VBox):
    """The VBox of a dashboard, whose rich display also carries a picture of its first view.

    The live widget (``application/vnd.jupyter.widget-view+json``) is unchanged; ``image/png``
    (when the first view was a figure) and a one-line ``text/plain`` are what a frontend shows when
    it cannot show the widget, e.g. an untrusted notebook opened before its cells were run.
    """

    def __init__(self, children: list[W.Widget], title: str = "", first_view: bytes | None = None, **kwargs: Any) -> None:
        super().__init__(children, **kwargs)
        self.title = title
        self.first_view = first_view  # PNG bytes or None; a plain attribute, never synced to the frontend

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = live_hint(self.title)
        if self.first_view:
            data["image/png"] = base64.b64encode(self.first_view).decode("ascii")
        return data


def dashboard(render: Callable[..., Any], controls: Mapping[str, W.ValueWidget], title: str = "") -> Dashboard:
    """A VBox of ``controls`` above an output that shows ``render(**values)`` and updates live.

    ``render`` returns a matplotlib figure (shown, then closed) or any displayable object. The
    first figure (drawn now, for the controls' initial values) is also kept as a PNG: the picture
    that the dashboard's rich display carries for frontends that cannot show the live widget.
    """
    out = W.Output()
    first_view: list[bytes | None] = []  # the PNG of the first call's figure (None if it drew none)

    def update(**values: Any) -> None:
        first = not first_view
        if first:
            first_view.append(None)
        with out:
            out.clear_output(wait=True)
            result = render(**values)
            if result is not None:
                display(result)
            if isinstance(result, plt.Figure):
                try:
                    if first:
                        first_view[0] = first_view_png(result, title)
                finally:
                    plt.close(result)

    W.interactive_output(update, dict(controls))
    header = [W.HTML(f"<b>{title}</b>")] if title else []
    children = [*header, W.HBox(list(controls.values()), layout=W.Layout(flex_flow="row wrap")), out]
    return Dashboard(children, title, first_view[0] if first_view else None)
