"""Figures to files, headless: standalone HTML (BokehJS inline, works offline), PNG screenshots of
that HTML in headless Chromium (Playwright), and PNG renderings of PDF pages (pypdfium2).

Chromium: ``$LLMSS_CHROMIUM`` when set (an explicit choice wins), else Playwright's own build when
``playwright install chromium`` has been run, else a system Chromium on PATH (Debian's ``chromium`` package).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from bokeh.embed import file_html
from bokeh.resources import INLINE

from ..errors import InputError
from ..files import replacing, write_bytes

PNG_EXPORT = "PNG export"   # the source its errors name when no file is at fault
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def save_html(obj, path: str | Path, title: str) -> Path:
    """A standalone HTML page of a Bokeh object, with BokehJS inline (no network needed to view it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes(path, file_html(obj, INLINE, title).encode("utf-8"))


def chromium_executable() -> str | None:
    """The Chromium to drive instead of Playwright's own: ``$LLMSS_CHROMIUM``, else one on PATH."""
    return os.environ.get("LLMSS_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)


def _launch(pw):
    env = os.environ.get("LLMSS_CHROMIUM")
    if env:
        if not Path(env).is_file():
            raise InputError("no such browser executable", env, "$LLMSS_CHROMIUM")
        try:
            return pw.chromium.launch(executable_path=env, args=["--no-sandbox"])
        except Exception as exc:   # noqa: BLE001 - Playwright's own Error: not executable, or not a browser
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"could not start it as headless Chromium ({first})", env, "$LLMSS_CHROMIUM") from None
    try:
        return pw.chromium.launch()
    except Exception:   # noqa: BLE001 - Playwright raises its own Error when its browser is not installed
        exe = chromium_executable()
        if exe is None:
            raise InputError("no headless Chromium: run `python -m playwright install chromium`, install "
                             "Debian's chromium, or set $LLMSS_CHROMIUM", PNG_EXPORT) from None
        return pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])


# A picture has no use for the pan, zoom and save buttons the page keeps: every plot and grid drops its toolbar,
# and the screenshot waits for the layout that follows (two animation frames)
WITHOUT_TOOLBARS = """async () => {
  for (const doc of Bokeh.documents)
    for (const m of doc.all_models)
      if ("toolbar_location" in m && m.toolbar_location != null) m.toolbar_location = null;
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
}"""


def html_to_png(html: str | Path, png: str | Path, width: int = 1400, timeout_s: float = 60.0) -> Path:
    """Screenshot a Bokeh HTML page once BokehJS has drawn it (the whole page, at 2x for print, without the
    plots' toolbars, cut to what is drawn)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise InputError("needs Playwright: pip install -e '.[figures]'", PNG_EXPORT) from None
    html, png = Path(html).resolve(), Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    with replacing(png, keep_suffix=True) as tmp, sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": width, "height": 100}, device_scale_factor=2)
            page.goto(html.as_uri())
            page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 "
                                   "&& Bokeh.documents[0].is_idle", timeout=timeout_s * 1000)
            page.evaluate(WITHOUT_TOOLBARS)
            page.screenshot(path=str(tmp), full_page=True)
        finally:
            browser.close()
        _trim(tmp)
    return png


def _trim(png: Path, margin: int = 16) -> None:
    """Cut the blank page right of and below the figure (a 620 px plot sat at the left of a 1400 px picture),
    keeping ``margin`` pixels; the page's own margin stays at the top and left."""
    from PIL import Image, ImageChops

    with Image.open(png) as img:
        rgb = img.convert("RGB")
    box = ImageChops.difference(rgb, Image.new("RGB", rgb.size, "white")).getbbox()
    if box is not None:
        rgb.crop((0, 0, min(rgb.width, box[2] + margin), min(rgb.height, box[3] + margin))).save(png)


def pdf_to_png(pdf: str | Path, png: str | Path, scale: float = 2.0) -> Path:
    """The first page of a PDF (the paper's published figure) as a PNG."""
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise InputError("rendering the published PDFs needs pypdfium2: pip install -e '.[figures]'", pdf) from None
    pdf, png = Path(pdf), Path(png)
    if not pdf.is_file():
        raise InputError("file does not exist", pdf)
    try:
        doc = pdfium.PdfDocument(str(pdf))
    except pdfium.PdfiumError as exc:
        raise InputError(f"not a readable PDF ({exc})", pdf) from None
    try:
        image = doc[0].render(scale=scale).to_pil()
    finally:
        doc.close()
    png.parent.mkdir(parents=True, exist_ok=True)
    with replacing(png, keep_suffix=True) as tmp:
        image.save(tmp)
    return png
