"""``llmss lab``: the README's first command starts JupyterLab on the quickstart notebook."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from llmss_lab.lab import QUICKSTART, lab_command, notebooks_dir

from .conftest import free_port, stop


def test_lab_command_opens_the_quickstart_headless():
    cmd = lab_command(port=9999, no_browser=True)
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    # the page to open, so the URL a headless start prints opens the quickstart (it opened an empty lab)
    assert cmd[3] == f"--LabApp.default_url=/lab/tree/{QUICKSTART}" and "--no-browser" in cmd
    assert "--ServerApp.port=9999" in cmd
    assert f"--ServerApp.root_dir={notebooks_dir()}" in cmd


def test_a_notebook_given_by_its_path_from_the_checkout_opens(monkeypatch):
    """`llmss lab --notebook notebooks/02_kv_cache.ipynb` was refused as outside the notebooks folder."""
    monkeypatch.chdir(notebooks_dir().parent)
    assert lab_command(notebook="notebooks/02_kv_cache.ipynb")[3] == "--LabApp.default_url=/lab/tree/02_kv_cache.ipynb"


def test_a_notebook_given_without_ipynb_or_by_its_number_opens():
    """`llmss lab --notebook 01_continuous_batching` was refused as no notebook; an ambiguous start still is."""
    from llmss_lab.errors import InputError
    for name in ("01_continuous_batching", "01"):
        assert lab_command(notebook=name)[3] == "--LabApp.default_url=/lab/tree/01_continuous_batching.ipynb"
    with pytest.raises(InputError, match="no notebook '0'"):    # 00_ to 07_
        lab_command(notebook="0")


def test_unknown_notebook_is_named():
    from llmss_lab.errors import InputError
    with pytest.raises(InputError, match="00_quickstart.ipynb"):
        lab_command(notebook="nope.ipynb")


def test_lab_arguments_jupyter_would_misread_are_refused(ref, tmp_path, monkeypatch, capsys):
    from llmss_lab.cli import main
    from llmss_lab.errors import InputError
    from llmss_lab.lab import lab_env

    with pytest.raises(InputError, match="outside the notebooks folder"):     # Jupyter exits 1 on it
        lab_command(notebook="../paper_figures/figure_05.ipynb")
    assert main(["lab", "--port", "70000"]) == 2                            # Jupyter took it mod 65536
    assert "--port: must be <= 65535, got 70000" in capsys.readouterr().err
    monkeypatch.chdir(ref.parent)                                           # a path relative to here...
    env = lab_env(ref.name)
    assert env["LLMSS_REFERENCE_DIR"] == str(ref.resolve())                 # ...reaches kernels in notebooks/


def test_llmss_lab_serves_the_quickstart(ref, tmp_path):
    port = free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path), JUPYTER_PLATFORM_DIRS="1")
    proc = subprocess.Popen([sys.executable, "-m", "llmss_lab", "lab", "--no-browser", "--port", str(port),
                             "--reference-dir", str(ref)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                files = [f for f in tmp_path.glob("jpserver-*.json")]
                if files:
                    token = json.loads(files[0].read_text())["token"]
                    url = f"http://127.0.0.1:{port}/api/contents/{QUICKSTART}?content=0&token={token}"
                    info = json.loads(urllib.request.urlopen(url, timeout=2).read())
                    break
            except (OSError, ValueError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"llmss lab did not serve the notebook:\n{proc.stdout.read()[-3000:]}")
            time.sleep(0.3)
        assert info["name"] == QUICKSTART and info["type"] == "notebook"
        # the page config turns off JupyterLab's news toast (it covers the explorer's plots)
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=10).read().decode()
        assert "@jupyterlab/apputils-extension:announcements" in page
        # the explorer's widgets and plots draw only with these extensions: a virtual environment made with
        # --system-site-packages missed the base Python's, and the explorer showed as the text "VBox(children=..."
        assert '"@jupyter-widgets/jupyterlab-manager"' in page and '"@bokeh/jupyter_bokeh"' in page
    finally:
        stop(proc)
    # stopping `llmss lab` stops JupyterLab too: no orphan left serving the port
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=2)
