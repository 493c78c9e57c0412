"""Reading data files safely, with errors that name the file and the key or line.

Files are parsed as data only: ``json``, ``yaml.safe_load`` and ``csv``; nothing is evaluated.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml

from ..errors import InputError
from ..files import absent


def as_path(value: Any, key: str = "path", source: str = "argument") -> Path:
    """``value`` as a Path; anything but a string or path-like object is named (pathlib's own TypeError does not
    say which argument was wrong)."""
    if isinstance(value, Path):
        return value
    if not isinstance(value, (str, os.PathLike)) or (isinstance(value, str) and not value.strip()):
        raise InputError(f"expected a file path, got {value!r}", source, key)
    return Path(value)


# what a path that exists but is no regular file is, by its mode: "results file does not exist" for /dev/null
# sent the user looking for a file that is there
def read_text(path: str | Path) -> str:
    p = as_path(path)
    if why := absent(p):
        raise InputError(why, p)
    if p.is_dir():
        raise InputError("is a folder, expected a file", p)
    if not p.is_file():   # a pipe would block the read until something writes to it
        raise InputError("not a regular file (a pipe, device or socket); give a file", p)
    try:
        data = p.read_bytes()
        return data.decode("utf-8-sig")   # a byte-order mark (Windows editors save one) is dropped
    except UnicodeDecodeError as exc:
        kind = next((what for magic, what in NOT_TEXT if data.startswith(magic)), None)
        raise InputError(f"not UTF-8 text: {kind}" if kind else f"not UTF-8 text (byte {exc.start})", p) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", p) from None


# what a file that is not UTF-8 is, by its first bytes: "(byte 1)" alone leaves the user guessing
NOT_TEXT = ((b"\x1f\x8b", "it is gzip-compressed; decompress it first (gunzip -k)"),
            (b"\xff\xfe", "it is UTF-16 (Windows PowerShell's > writes it); save it as UTF-8"),
            (b"\xfe\xff", "it is UTF-16; save it as UTF-8"),
            (b"\x89HDF", "it is a netCDF file (results or a sweep), not a text input"))


class DuplicateKey(Exception):
    """A key given twice in one object (JSON or YAML); each reader names its file and line."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects whose keys repeat are refused: json.loads would silently keep the last value."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKey(k)
        out[k] = v
    return out


# no input of the kit nests beyond a handful of levels; parsers recurse per level (PyYAML's C composer beyond
# the C stack: a segmentation fault at ~100,000 levels), so deeper nesting is refused before it is built
MAX_DEPTH = 100


def _deep_line(text: str) -> str | None:
    """The line where JSON text first nests beyond :data:`MAX_DEPTH` (outside strings), for the error."""
    depth, in_string, escaped = 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return f"line {text.count(chr(10), 0, i) + 1}"
        elif ch in "]}":
            depth -= 1
    return None


def _json_lines_hint(text: str, exc: json.JSONDecodeError) -> str:
    """A file of one JSON object per line (a trace) where one JSON document is read: JSON itself only says
    'Extra data', which does not tell a user they gave the wrong file."""
    if exc.msg != "Extra data":
        return ""
    try:
        json.loads(text.splitlines()[0])
    except (json.JSONDecodeError, IndexError, RecursionError):
        return ""
    return ("; the file holds JSON Lines, an object per line, where one JSON object is read: a trace goes to "
            "--workload or a scenario's trace")


def read_json(path: str | Path) -> Any:
    text = read_text(path)
    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except RecursionError:
        raise InputError(f"nested more than {MAX_DEPTH} levels deep (lists or objects within each other)", path,
                         _deep_line(text)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg} (column {exc.colno}){_json_lines_hint(text, exc)}", path,
                         f"line {exc.lineno}") from None
    except DuplicateKey as exc:
        key = str(exc)
        quoted = json.dumps(key)
        second = text.find(quoted, text.find(quoted) + 1)
        where = f"line {text.count(chr(10), 0, second) + 1}" if second >= 0 else None
        raise InputError(f"key {key!r} given twice in one object", path, where) from None


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):   # data only, no tags
    """YAML keeps the last of two equal keys without a word; here a repeated key is an error."""

    def construct_mapping(self, node, deep=False):
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                if key.value in seen:
                    raise DuplicateKey(key.value, key.start_mark.line + 1)
                seen.add(key.value)
        return super().construct_mapping(node, deep)


# YAML 1.1 (PyYAML) reads 1e5 and 4.2015e8 as text: a float needs a dot and a signed exponent there; take
# YAML 1.2's floats too, as a person writing a grid or a spec expects
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _check_depth(text: str, path: str | Path) -> None:
    """Refuse YAML nested beyond :data:`MAX_DEPTH`, found from the parser's events (which do not recurse)."""
    depth = 0
    for event in yaml.parse(text, Loader=_UniqueKeyLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise InputError(f"nested more than {MAX_DEPTH} levels deep (lists or mappings within each other)",
                                 path, f"line {event.start_mark.line + 1}")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def read_yaml(path: str | Path) -> Any:
    text = read_text(path)
    try:
        _check_depth(text, path)
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except DuplicateKey as exc:
        key, line = exc.args
        raise InputError(f"key {key!r} given twice in one mapping", path, f"line {line}") from None
    except yaml.reader.ReaderError as exc:   # its text spans two lines and gives a character offset
        raise InputError(f"malformed YAML: character {exc.character:#06x} is not allowed (a control character)",
                         path, f"line {text.count(chr(10), 0, exc.position) + 1}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        raise InputError(f"malformed YAML: {getattr(exc, 'problem', exc)}", path, where) from None


def is_real(x: Any) -> bool:
    """A finite real number of any kind (numpy's and Python's ints of any size too), not a bool."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        return False
    return isinstance(x, numbers.Integral) or math.isfinite(float(x))


def plain(x: Any) -> Any:
    """A numpy scalar (or 0-d array) as the Python value it holds (np.int64(2) -> 2, np.bool_ -> bool,
    np.str_ -> str), so values from numpy grids and arrays are stored and saved as JSON's own kinds."""
    if isinstance(x, np.generic) or (isinstance(x, np.ndarray) and x.ndim == 0):
        return x.item()
    return x


def store_plain(obj: Any) -> None:
    """Replace numpy scalars in the fields of a (frozen) dataclass by the plain values they hold, so settings
    built from a user's arrays compare, print and save as plain numbers."""
    for f in fields(obj):
        v = getattr(obj, f.name)
        if plain(v) is not v:
            object.__setattr__(obj, f.name, plain(v))


def as_whole(x: Any) -> int | None:
    """x as an int if it is a whole number (2, np.int64(2), 2.0), else None."""
    if not is_real(x):
        return None
    if isinstance(x, numbers.Integral):
        return int(x)
    return int(x) if float(x).is_integer() else None


@dataclass
class Section:
    """A mapping read from a file, with typed accessors whose errors name file and key path."""

    data: dict
    source: str
    path: str = ""

    @classmethod
    def of(cls, data: Any, source: str | Path, path: str = "") -> "Section":
        if not isinstance(data, dict):
            raise InputError(f"expected an object, got {type(data).__name__}", source, path or None)
        return cls(data, str(source), path)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> InputError:
        return InputError(message, self.source, self.key(name))

    def has(self, name: str) -> bool:
        return name in self.data and self.data[name] is not None

    def _get(self, name: str, required: bool, default: Any) -> Any:
        if name not in self.data or self.data[name] is None:
            if required:
                raise self.error(name, "missing required key")
            return default
        return self.data[name]

    def number(self, name: str, required: bool = True, default: float | None = None,
               minimum: float | None = None, positive: bool = False, maximum: float | None = None) -> float:
        v = self._get(name, required, default)
        if v is None:
            return v
        if not is_real(v):
            raise self.error(name, f"expected a number, got {v!r}{_text_number_hint(v, self.source)}")
        if positive and v <= 0:
            raise self.error(name, f"must be > 0, got {v}")
        if minimum is not None and v < minimum:
            raise self.error(name, f"must be >= {minimum}, got {v}")
        if maximum is not None and v > maximum:
            raise self.error(name, f"must be <= {maximum}, got {v}")
        return v

    def integer(self, name: str, required: bool = True, default: int | None = None,
                minimum: int | None = None, maximum: int | None = None) -> int:
        v = self._get(name, required, default)
        if v is None:
            return v
        k = as_whole(v)
        if k is None:
            raise self.error(name, f"expected a whole number, got {v!r}")
        v = k
        if minimum is not None and v < minimum:
            raise self.error(name, f"must be >= {minimum}, got {v}")
        if maximum is not None and v > maximum:
            raise self.error(name, f"must be <= {maximum}, got {v}")
        return v

    def string(self, name: str, required: bool = True, default: str | None = None,
               choices: Iterable[str] | None = None) -> str:
        v = self._get(name, required, default)
        if v is None:
            return v
        if not isinstance(v, str):
            raise self.error(name, f"expected a string, got {v!r}")
        if choices is not None and v not in choices:
            raise self.error(name, f"must be one of {sorted(choices)}, got {v!r}")
        return v

    def boolean(self, name: str, required: bool = True, default: bool | None = None) -> bool:
        v = self._get(name, required, default)
        if v is None:
            return v
        if not isinstance(v, bool):
            raise self.error(name, f"expected true or false, got {v!r}")
        return v

    def section(self, name: str, required: bool = True) -> "Section | None":
        v = self._get(name, required, None)
        if v is None:
            return None
        return Section.of(v, self.source, self.key(name))

    def sections(self, name: str) -> list["Section"]:
        v = self._get(name, True, None)
        if not isinstance(v, list):
            raise self.error(name, f"expected a list, got {type(v).__name__}")
        return [Section.of(item, self.source, f"{self.key(name)}[{i}]") for i, item in enumerate(v)]

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for k in self.data:
            if k not in allowed:
                hint = closest(k, allowed)
                extra = f" (did you mean {hint!r}?)" if hint else ""
                raise InputError(f"unknown key{extra}", self.source, self.key(k))


def _text_number_hint(v: Any, source: str) -> str:
    """Why a number arrived as text: YAML 1.1 reads ``1e9`` (no dot) as a string; JSON keeps quotes."""
    if not isinstance(v, str):
        return ""
    try:
        float(v)
    except ValueError:
        return ""
    if source.lower().endswith((".yaml", ".yml")) and re.fullmatch(r"\s*[-+]?\d+[eE][-+]?\d+\s*", v):
        return f" (YAML reads an exponent without a dot as text: write {v.strip().lower().replace('e', '.0e', 1)})"
    return " (a number in quotes is text: drop the quotes)"


def closest(word: str, options: Iterable[str]) -> str | None:
    import difflib

    options = list(options)
    same = [o for o in options if o.casefold() == word.casefold()]   # a slip of case: difflib weighs it heavily
    found = same or difflib.get_close_matches(word, options, n=1, cutoff=0.75)
    return found[0] if found else None
