"""ipywidgets panels: the :class:`Explorer` (controls, Run, Bokeh views, baseline comparison)."""
from .explorer import Explorer, load_bokeh, show

__all__ = ["Explorer", "load_bokeh", "show"]
