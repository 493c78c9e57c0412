"""Writing result files so that nothing is lost: to a temporary name beside the target, renamed over
it only once complete. A crash or an interruption leaves the previous file as it was and removes the
temporary one."""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from .errors import InputError, WriteFailed


KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
         (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))


def kind_of(path: Path) -> str:
    """What an existing path that is not a regular file is, in words ("a character device" for /dev/null)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "not a regular file"
    return next((what for test, what in KINDS if test(mode)), "not a regular file")


def absent(path: Path, what: str = "file") -> str | None:
    """Why ``path`` is not there to open, in words, or None when it is (as anything: a folder, a pipe). pathlib's
    ``exists`` calls a loop of links or a path through a file missing, and raises on a name too long or a
    folder closed to the user; each of these sends the user looking for the wrong thing."""
    try:
        path.stat()
        return None
    except ValueError:   # raised by stat itself, not an OSError
        return "the name holds a NUL character, which no file name can"
    except OSError as exc:
        code = exc.errno
    if code == errno.ELOOP:
        return "a loop of symbolic links, which leads to no file"
    if code == errno.ENAMETOOLONG:
        return "the name is too long for the file system"
    if code == errno.EACCES:
        return "no permission to reach it (a folder on its way is closed to you)"
    if code == errno.ENOTDIR:
        above = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
        return f"{above} is a file, not a folder" if above else f"{what} does not exist"
    if os.path.islink(path):
        return f"a symbolic link to {os.readlink(path)}, which does not exist"
    return f"{what} does not exist"


def reachable(path: Path) -> Path:
    """``path``, once sure no folder on its way is closed to the user, else the PermissionError (which
    :func:`permission_named` words where inputs are read): from Python 3.13 ``Path.is_file`` and ``is_dir``
    answer False there, which reads as "not there" (a profile missing: the analytical model would run in its
    place; a model config missing)."""
    try:
        path.stat()
    except PermissionError:
        raise
    except (OSError, ValueError):   # missing, a loop of links, a NUL in the name: the caller's own check says what
        pass
    return path


@contextmanager
def permission_named() -> Iterator[None]:
    """A PermissionError met while reading inputs, as one line naming the file or folder: the reference data is
    a tree of folders, any of which may be closed to the user, and Python before 3.13 raises from
    ``Path.is_file`` and ``exists`` there rather than answering False. Also a decorator."""
    try:
        yield
    except PermissionError as exc:
        if exc.filename is None:
            raise
        path = Path(os.fsdecode(exc.filename))
        raise InputError(absent(path) or f"no permission to read it ({'a folder' if path.is_dir() else 'a file'} "
                         "closed to you)", path) from None


@contextmanager
def replacing(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield the temporary path to write; on leaving the block it replaces ``path``, or, on any error
    (KeyboardInterrupt included), it is deleted. ``keep_suffix`` names it ``x.part.png`` rather than
    ``x.png.part``, for writers that choose the format from the extension."""
    path = _regular(Path(path))
    tmp = path.with_name(f"{path.stem}.part{path.suffix}" if keep_suffix else f"{path.name}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not str(exc).startswith("NetCDF"):   # netCDF's failed writes only
            raise
        raise WriteFailed(f"cannot write the file ({_why(exc, path.parent)})", path) from None
    finally:
        tmp.unlink(missing_ok=True)


def _why(exc: BaseException, folder: Path) -> str:
    """The cause of a failed write in words. A full disk first: HDF5 reports it as 'HDF error' or even as
    'Permission denied'."""
    try:
        st = os.statvfs(folder)
        if st.f_flag & os.ST_RDONLY:
            return "read-only file system"
        if st.f_blocks and st.f_bavail * st.f_frsize < 1 << 20:   # /proc and the like have no blocks at all
            return "no space left on the device"
    except (OSError, AttributeError):   # no statvfs on Windows
        pass
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else None) or str(exc)


def _regular(path: Path, key: str | None = None) -> Path:
    """The file a write lands in: a link's target (renaming over the link would cut it), and never a
    device, pipe or socket, which renaming would replace with a plain file (as root, /dev/full itself). A link
    whose target does not exist is refused: writing through it would create a file somewhere the user did not
    name, often a stale link's old place."""
    why = absent(path)
    if why and why.startswith(("the name is too long", "no permission")):
        raise InputError(why, path, key)
    if why and why.startswith("a symbolic link to"):
        raise InputError(f"{why}; a write would create that file through the link: remove the link, or give "
                         "another name", path, key)
    if path.is_symlink():
        try:
            path = path.resolve()
        except RuntimeError:   # Python < 3.13 raises this for a loop of links
            raise InputError("a loop of symbolic links; give a file name", path, key) from None
    if path.exists() and not path.is_file() and not path.is_dir():
        raise InputError("not a regular file (a device, pipe or socket); give a file name", path, key)
    return path


def write_text(path: str | Path, text: str) -> Path:
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


NO_NEW = "a folder of the system's that takes no new files, as /proc and /sys"


def _probe(folder: Path, key: str) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".llmss-probe-"):
            pass
    except OSError as e:
        why = NO_NEW if e.errno == errno.ENOENT else e.strerror or e   # /proc's own word is "No such file"
        raise InputError(f"cannot write a file in this folder ({why})", folder, key) from None


def check_writable_file(path: str | Path, key: str = "--out") -> Path:
    """Refuse an output file that cannot be written before any work is done, so no result is lost."""
    path = _regular(Path(path), key)
    if path.is_dir():
        raise InputError("is a folder; give a file name", path, key)
    if not path.parent.is_dir():
        above = next((p for p in path.parents if p.exists()), None)
        if above is not None and not above.is_dir():   # out.json/x.nc: a file where a folder would be
            raise InputError(f"is a file, not a folder, so {path.relative_to(above)} cannot be written in it", above,
                             key)
        raise InputError("output folder does not exist", path.parent, key)
    _probe(path.parent, key)
    return path


def refuse_to_replace(path: str | Path, inputs: Mapping[str, str | Path | None], key: str,
                      what: str = "results") -> None:
    """Refuse ``path`` as where ``what`` is written when it is one of ``inputs`` (what names each file, as the error
    says it -> the file), links and relative paths resolved: writes go through a link, so a run's results would
    replace the trace it read."""
    def real(p: str | Path) -> str | None:   # not Path.resolve, which raises on a loop of links (named by its writer)
        try:
            return os.path.realpath(p)
        except ValueError:   # a NUL in the name: no file, named by what opens it
            return None

    target = real(path)
    for name, file in inputs.items():
        if file and target is not None and real(file) == target:
            raise InputError(f"is also {name}, which the {what} would replace; write them to another file", path, key)


def refuse_inside(path: str | Path, protected: str | Path, what: str, key: str = "--out") -> None:
    """An output folder must not be, or lie inside, a folder we read from: writing there would replace the
    files a run reads (and a comparison would then score the run against itself)."""
    p, q = Path(os.path.realpath(path)), Path(os.path.realpath(protected))
    if p == q or p.is_relative_to(q):
        raise InputError(f"is inside {what} ({q}), whose files it would overwrite; write somewhere else", path, key)


def refuse_in_reference(path: str | Path, root: object, key: str = "--out") -> None:
    """The reference data (measurements, profiles) is read-only: every save of results, scenarios and sweeps
    refuses ``path`` inside ``root`` (a folder name; anything else, such as a file's missing or damaged
    ``reference_dir`` attr: nothing to keep), as the command line refuses ``--out`` there."""
    if isinstance(root, (str, Path)) and str(root):
        refuse_inside(path, root, "the reference data", key)


def check_writable_folder(path: str | Path, key: str = "--out") -> Path:
    """An output folder that exists (created if need be) and takes files, checked before any work."""
    path = Path(path)
    why = absent(path, "folder")
    if why and why != "folder does not exist":   # a loop of links, a name too long, a file on the way
        raise InputError(why, path, key)
    if path.exists() and not path.is_dir():
        raise InputError("not a folder" if path.is_file() else f"is {kind_of(path)}, not a folder", path, key)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        above = next((p for p in path.parents if p.is_dir()), None)
        why = f"{above}: {NO_NEW}" if e.errno == errno.ENOENT and above else e.strerror or e
        raise InputError(f"cannot create the folder ({why})", path, key) from None
    _probe(path, key)
    return path


def not_netcdf(path: Path) -> str | None:
    """What a file read as netCDF is instead, by its first bytes, or None when it starts as netCDF does (HDF5 or
    classic): netCDF's and xarray's own errors name their IO backends, not the file a user gave by mistake."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:   # the reader names it
        return None
    if head.startswith((b"\x89HDF", b"CDF")):
        return None
    if not head:
        return "the file is empty"
    try:
        text = head.decode("utf-8-sig").lstrip()
    except UnicodeDecodeError:
        return "the file is neither netCDF nor text"
    kind = "JSON" if text[:1] in "{[" else "text"
    return f"the file is {kind}, not netCDF"

