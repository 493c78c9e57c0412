"""The explorer in a real browser: JupyterLab on a loopback port, the quickstart notebook run in
headless Chromium, a control changed, Run pressed, the Bokeh timeline redrawn, a second plot tab
drawn when opened, and the page reloaded and run again on the same kernel.

Needs Debian's chromium (``.ci/run`` installs it) and the playwright package; without them the
test is skipped with the reason shown. The screenshot lands in ``build/test-artifacts/``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from llmss_lab.lab import LAB_CONFIG, labextension_args

from .conftest import free_port, stop

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "build" / "test-artifacts"
CHROMIUM = os.environ.get("LLMSS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium browser on PATH (apt-get install chromium)")


@pytest.fixture()
def lab(ref, tmp_path):
    """JupyterLab serving copies of the quickstart and a teaching notebook; yields its base URL."""
    for name in ("00_quickstart.ipynb", "01_continuous_batching.ipynb"):
        shutil.copy(ROOT / "notebooks" / name, tmp_path)
    port = free_port()
    env = dict(os.environ, LLMSS_REFERENCE_DIR=str(ref), BOKEH_RESOURCES="inline", JUPYTER_PLATFORM_DIRS="1",
               JUPYTER_CONFIG_PATH=str(LAB_CONFIG))   # as `llmss lab` starts it
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
           f"--ServerApp.root_dir={tmp_path}", "--allow-root", "--LabApp.news_url=None", *labextension_args()]
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield url
    finally:
        stop(proc)
        log.close()


def _wait_for_idle_kernel(url: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sessions = json.loads(urllib.request.urlopen(f"{url}/api/sessions", timeout=5).read())
            if any(sess["kernel"]["execution_state"] == "idle" for sess in sessions):
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    pytest.fail("the notebook's kernel did not become idle")


def _run_all(page, lab: str, notebook: str | None = None) -> None:
    """Open ``notebook`` (or wait for the reloaded page's), wait for its kernel, and Run All Cells."""
    if notebook is not None:
        page.goto(f"{lab}/lab/workspaces/t{uuid.uuid4().hex[:8]}/tree/{notebook}?reset")
    page.locator(".jp-NotebookPanel:visible .jp-Notebook").wait_for(timeout=60_000)
    _wait_for_idle_kernel(lab)    # a cold kernel (fresh install: no bytecode yet) can take a while
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def test_explorer_runs_and_redraws_in_jupyterlab(lab):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        try:
            _run_all(page, lab, "00_quickstart.ipynb")

            explorer = page.locator(".llmss-explorer")
            explorer.wait_for(timeout=120_000)
            plot = explorer.locator(".bk-Canvas, canvas").first     # Bokeh draws into a canvas
            plot.wait_for(timeout=120_000)
            status = explorer.locator(".widget-html-content").first
            page.wait_for_function("() => [...document.querySelectorAll('.llmss-explorer .widget-html-content')]"
                                   ".some(e => e.textContent.includes('steps'))", timeout=120_000)
            first_status = status.text_content()
            # the plot tab's width of 100% plus a widget's 2 px margins ran past the panel: a 4 px scroll bar
            overflow = explorer.evaluate("e => e.scrollWidth - e.clientWidth")
            time.sleep(1.0)   # let Bokeh finish its first paint
            before = plot.screenshot()

            explorer.locator(".lm-TabBar-tab", has_text="Engine").first.click()
            box = explorer.locator(".widget-inline-hbox", has=page.locator("label", has_text="max num seqs")).first
            field = box.locator("input")
            field.fill("")
            field.press_sequentially("4.4")     # typed key by key: ipywidgets' int box dropped the ".": 44
            field.press("Enter")
            page.wait_for_function("(e) => e.value === '4'", arg=field.element_handle(), timeout=30_000)
            explorer.locator("button.mod-primary").first.click()     # Run
            page.wait_for_function(
                "(old) => { const e = document.querySelector('.llmss-explorer .widget-html-content');"
                " return e && e.textContent.includes('steps') && e.textContent !== old; }",
                arg=first_status, timeout=120_000)
            time.sleep(1.0)
            plot = explorer.locator(".bk-Canvas, canvas").first
            plot.wait_for(timeout=60_000)
            after = plot.screenshot()
            page.screenshot(path=str(ARTIFACTS / "explorer_browser.png"), full_page=True)
            # the other plot tabs are built when first opened: the CDF tab's four figures draw then (a Bokeh
            # figure draws into one canvas or more)
            explorer.locator(".lm-TabBar-tab", has_text="Latency CDFs").first.click()
            shown = explorer.locator(".widget-tab-contents canvas:visible")
            deadline = time.monotonic() + 60
            while shown.count() < 4 and time.monotonic() < deadline:
                time.sleep(0.2)
            drawn = shown.count()
            news = page.get_by_text("Jupyter news").count()   # the toast would have shown long before now

            # a reloaded page on the same kernel has lost BokehJS: running the notebook again must resend it
            page.reload()
            _run_all(page, lab)
            page.locator(".llmss-explorer .bk-Canvas, .llmss-explorer canvas").first.wait_for(timeout=120_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "explorer_browser_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert before != after, "the Bokeh timeline did not change after Run"
    assert overflow == 0, f"the explorer's panel scrolls sideways by {overflow} px"
    assert drawn >= 4, f"the Latency CDFs tab drew {drawn} canvases when opened, for four figures"
    assert news == 0, "JupyterLab's news toast covers the explorer"


def test_a_teaching_notebooks_static_views_draw_in_jupyterlab(lab):
    """``show()`` embeds a view as HTML and script (no widget), which JupyterLab must run when trusted."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        try:
            _run_all(page, lab, "01_continuous_batching.ipynb")
            page.locator(".jp-OutputArea-output canvas").first.wait_for(timeout=120_000)
        except Exception:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "teaching_browser_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
