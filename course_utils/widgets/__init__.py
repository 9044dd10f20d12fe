"""Interactive dashboards, one per concept.

Each widget is a thin ipywidgets layer over pure functions (in the same submodule) that compute
what is shown; the tests call those functions directly, without a browser.
"""

from .scenes import scene_explorer, scene_figure

__all__ = ["scene_explorer", "scene_figure"]
