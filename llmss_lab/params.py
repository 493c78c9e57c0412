"""A notebook's papermill parameters, checked by name.

papermill only logs a warning for a ``-p`` name the parameters cell does not declare, then runs every
default: a misspelt ``-p hardwar H100`` costs a full run of the wrong thing. Each notebook's parameters
cell declares its parameters with type annotations, and the cell after it calls :func:`check_parameters`
before any work, which refuses a name papermill injected that no annotation declares, or a value of another
kind than its annotation's (``-p output_dir 5`` ended in a TypeError deep in pathlib).
"""
from __future__ import annotations

import ast
from typing import Mapping

from .config.reader import closest
from .errors import InputError

# the first line papermill writes into the cell it injects (``parameterize_notebook``'s comment, and the one it
# writes when it re-parameterises an already injected notebook)
INJECTED_MARKERS = ("# Parameters", "# Injected parameters")


def injected_names(source: str) -> list[str]:
    """The names a papermill-injected cell assigns; empty when ``source`` is not such a cell."""
    if source.lstrip().split("\n", 1)[0].strip() not in INJECTED_MARKERS:
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name)]


def check_parameters(namespace: Mapping[str, object]) -> None:
    """Refuse a papermill parameter the notebook does not declare, naming the ones it does.

    ``namespace`` is the notebook's ``globals()``: its ``__annotations__`` are the declared parameters and
    its ``In`` the sources run so far; only the last cell before this one counts, so a notebook run by hand,
    or cells re-run in any order, are never refused."""
    sources = namespace.get("In") or []
    if len(sources) < 2:
        return
    annotations = dict(namespace.get("__annotations__") or {})
    declared = list(annotations)
    injected = injected_names(sources[-2])
    unknown = [n for n in injected if n not in declared]
    if not unknown:
        for name in (n for n in injected if n in namespace):
            _check_kind(name, namespace[name], annotations[name])
        return
    name = unknown[0]
    near = closest(name, declared) or next((d for d in declared if d.lower() == name.lower()), None)
    hint = f" (did you mean {near!r}?)" if near else ""
    raise InputError(f"this notebook has no parameter {name!r}{hint}. Its parameters: {', '.join(declared)}",
                     "parameters", name)


# the kinds checked, in words; a list parameter takes a list, a comma-separated text or a number (figures.as_names)
KINDS = {str: "a text (str)", int: "a whole number (int)", float: "a number (float)"}


def _check_kind(name: str, value: object, kind: object) -> None:
    """A value injected for ``name`` must be of its annotation's kind: a whole float (``-p n 1e3``) is an int and
    an int a float, True is neither, and None is an int's "none" (num_requests: the whole trace) but no text."""
    if kind not in KINDS or (kind is int and value is None):
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {str: isinstance(value, str), float: number,
          int: number and float(value).is_integer()}[kind]   # type: ignore[arg-type]
    if not ok:
        raise InputError(f"must be {KINDS[kind]}, got {value!r}", "parameters", name)
