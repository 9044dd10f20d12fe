"""The one pattern every dashboard follows: controls → pure function → figure in an Output."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import ipywidgets as W
import matplotlib.pyplot as plt
from IPython.display import display


def dashboard(render: Callable[..., Any], controls: Mapping[str, W.ValueWidget], title: str = "") -> W.VBox:
    """A VBox of ``controls`` above an output that shows ``render(**values)`` and updates live.

    ``render`` returns a matplotlib figure (shown, then closed) or any displayable object.
    """
    out = W.Output()

    def update(**values: Any) -> None:
        with out:
            out.clear_output(wait=True)
            result = render(**values)
            if result is not None:
                display(result)
            if isinstance(result, plt.Figure):
                plt.close(result)

    W.interactive_output(update, dict(controls))
    header = [W.HTML(f"<b>{title}</b>")] if title else []
    return W.VBox([*header, W.HBox(list(controls.values()), layout=W.Layout(flex_flow="row wrap")), out])
