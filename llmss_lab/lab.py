"""``llmss lab``: open JupyterLab on the quickstart notebook (the explorer)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from .errors import InputError, LlmssError
from .reference import resolve_reference_dir

QUICKSTART = "00_quickstart.ipynb"
# a Jupyter config folder put first on JUPYTER_CONFIG_PATH for the server it starts: its page_config turns off
# JupyterLab's "get Jupyter news?" toast, which covers the explorer's plots (the user's own settings still apply)
LAB_CONFIG = Path(__file__).resolve().parent / "lab_config"


def notebooks_dir() -> Path:
    """The checkout's ``notebooks/`` (the kit is installed from a checkout with ``pip install -e .``)."""
    d = Path(__file__).resolve().parent.parent / "notebooks"
    if not (d / QUICKSTART).is_file():
        raise InputError("the notebooks/ folder is not beside the installed package; install from a checkout "
                         "with `python -m pip install -e .`", d, QUICKSTART)
    return d


def lab_command(port: int | None = None, no_browser: bool = False, notebook: str = QUICKSTART) -> list[str]:
    root = notebooks_dir()
    given = Path(notebook).resolve()
    if not (root / notebook).is_file() and given.is_file() and given.is_relative_to(root.resolve()):
        notebook = given.relative_to(root.resolve()).as_posix()          # notebooks/02_kv_cache.ipynb from the checkout
    if not (root / notebook).resolve().is_relative_to(root.resolve()):   # Jupyter serves one folder
        raise InputError(f"{notebook!r} is outside the notebooks folder JupyterLab serves; give a notebook name "
                         f"such as {QUICKSTART!r}", root, "notebook")
    if not (root / notebook).is_file():   # a name without .ipynb, or its number: '01_continuous_batching', '02'
        starts = [p.name for p in root.glob("*.ipynb") if p.name.startswith(notebook)]
        notebook = starts[0] if len(starts) == 1 else notebook
    if not (root / notebook).is_file():
        raise InputError(f"no notebook {notebook!r} (have: {', '.join(sorted(p.name for p in root.glob('*.ipynb')))})",
                         root, "notebook")
    # the notebook as the page to open: the browser opens it, and so does the URL printed for a headless start
    cmd = [sys.executable, "-m", "jupyterlab", f"--LabApp.default_url=/lab/tree/{quote(notebook)}",
           f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1", *labextension_args()]
    if port:
        cmd.append(f"--ServerApp.port={port}")
    headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if no_browser or headless:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def labextension_args() -> list[str]:
    """The folders JupyterLab reads its extensions from, when its own default misses some: in a virtual
    environment made with ``--system-site-packages`` JupyterLab and ipywidgets can come from the base Python,
    whose ``share/jupyter/labextensions`` (the widget manager, jupyter_bokeh) JupyterLab looks for only under
    the environment's prefix. Without it the explorer shows as the text ``VBox(children=...)``. The base's
    folder goes last, so an extension the environment installs itself still wins; [] when nothing is missed."""
    base = Path(sys.base_prefix, "share", "jupyter", "labextensions")
    if sys.prefix == sys.base_prefix or not base.is_dir():
        return []
    from jupyter_core.paths import jupyter_path
    paths = jupyter_path("labextensions")
    if any(Path(p).resolve() == base.resolve() for p in paths if Path(p).exists()):
        return []
    return [f"--LabApp.labextensions_path={p}" for p in [*paths, str(base)]]


def lab_env(reference_dir: str | Path | None = None) -> dict[str, str]:
    """The environment of JupyterLab and its kernels: the reference folder as an absolute path (kernels run
    in the notebooks folder, where a relative one would name nothing), BokehJS inline, our lab settings."""
    config_path = os.pathsep.join(p for p in (str(LAB_CONFIG), os.environ.get("JUPYTER_CONFIG_PATH")) if p)
    return dict(os.environ, LLMSS_REFERENCE_DIR=str(resolve_reference_dir(reference_dir).resolve()),
                BOKEH_RESOURCES="inline", JUPYTER_CONFIG_PATH=config_path)


def launch(port: int | None = None, no_browser: bool = False, reference_dir: str | None = None,
           notebook: str = QUICKSTART, replace: bool = False) -> int:
    """Run JupyterLab until it is stopped; kernels find the reference data and load BokehJS inline.

    ``replace`` (the CLI's choice): on POSIX this process becomes JupyterLab (exec), so a signal
    that stops ``llmss lab`` stops the server too, instead of leaving an orphan holding the port.
    A Python caller keeps its process and waits for JupyterLab as a child."""
    env = lab_env(reference_dir)
    cmd = lab_command(port, no_browser, notebook)
    if importlib.util.find_spec("jupyterlab") is None:
        raise LlmssError(f"JupyterLab is not installed in this Python ({sys.executable}); install the kit with "
                         "`python -m pip install -e .`")
    if "--no-browser" in cmd:
        print("JupyterLab is starting; open the http://127.0.0.1:... URL it prints below, which opens the notebook "
              "(Ctrl-C stops it).",
              file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    if replace and os.name == "posix":
        os.execve(cmd[0], cmd, env)
    return subprocess.call(cmd, env=env)
