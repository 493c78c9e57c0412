"""Progress bars of the long calls (sweeps, capacity searches): tqdm's, and in a notebook a line of text that a
saved notebook keeps as the bar last read."""
from __future__ import annotations

import io
from typing import Any

from tqdm.std import tqdm as text_tqdm


class NotebookLine(text_tqdm):
    """tqdm's text bar as one notebook output, replaced (by display id) at each refresh. tqdm's notebook widget
    leaves beside it the text it had when first shown, which is what a saved notebook shows without the widget's
    state or JavaScript (nbconvert offline, GitHub, JupyterLab by default): design_space.ipynb said
    'sweep: 0/18' under a sweep that ran all 18 points. Live and saved, this line says what the bar said last."""

    _handle: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("ascii", False)   # tqdm picks ASCII for a file without an encoding; notebooks show blocks
        super().__init__(*args, file=io.StringIO(), **kwargs)   # tqdm's own writes (the closing newline) go nowhere

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        from IPython.display import display

        data = {"text/plain": str(self) if msg is None else msg}
        if self._handle is None:
            self._handle = display(data, raw=True, display_id=True)
        else:
            self._handle.update(data, raw=True)
        return True


def progress_bar(**kwargs: Any) -> text_tqdm:
    """A tqdm bar (tqdm's keyword arguments): a :class:`NotebookLine` in a notebook, tqdm's own elsewhere."""
    from tqdm.auto import tqdm
    from tqdm.notebook import tqdm as widget_tqdm

    return NotebookLine(**kwargs) if issubclass(tqdm, widget_tqdm) else tqdm(**kwargs)
