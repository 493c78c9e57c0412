"""Writing result files so that nothing is lost: to a temporary name beside the target, renamed over
it only once complete. A crash or an interruption leaves the previous file as it was and removes the
temporary one."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replacing(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield the temporary path to write; on leaving the block it replaces ``path``, or, on any error
    (KeyboardInterrupt included), it is deleted. ``keep_suffix`` names it ``x.part.png`` rather than
    ``x.png.part``, for writers that choose the format from the extension."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.part{path.suffix}" if keep_suffix else f"{path.name}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
