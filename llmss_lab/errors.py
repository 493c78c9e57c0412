"""One error type for everything a user can get wrong.

Every bad input (config, trace, profile, CLI argument) ends in an :class:`InputError`
that names the file and the key or line, so the CLI can print one clear line
instead of a traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


class LlmssError(Exception):
    """Base class of the kit's own errors (never a bug in the kit)."""


class InputError(LlmssError):
    """Bad or missing input. ``source`` is the file (or "argument"), ``where`` the key or line."""

    def __init__(self, message: str, source: str | Path | None = None, where: str | None = None):
        self.message = message
        self.source = str(source) if source is not None else None
        self.where = str(where) if where is not None else None
        super().__init__(self.__str__())

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.where) if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class WriteFailed(InputError):
    """An output file could not be written (a full disk, lost permissions): the caller may still save the
    data elsewhere."""


class ClusterStartError(LlmssError):
    """The machine could not start what a run needs (a local dask cluster): not the user's input."""


class UnsupportedFeature(InputError):
    """A config asks for a feature this version of the kernel does not model yet."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a Ctrl-C (in Jupyter, the interrupt button). It goes on as the KeyboardInterrupt it is,
    carrying what was simulated until then: ``results`` are the run so far, marked partial (their ``interrupted``
    attr; their summary is the finished requests'), or None when no request had finished yet. A Ctrl-C that comes
    once the run has finished, while its results are built, carries them whole (no ``interrupted`` attr)."""

    def __init__(self, message: str, results: Any = None):
        super().__init__(message)
        self.results = results
