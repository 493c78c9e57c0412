"""``llmss figures``: run every paper notebook with papermill and lay the results next to the published figures.

For each notebook of ``paper_figures/`` it writes, into the output folder: the executed notebook, the notebook
as HTML, the figure as standalone HTML (the notebook saves it) and as PNG (headless Chromium), and the
published figure rendered from the artifact's ``*_ref.pdf``; then ``index.html`` shows ours beside theirs.
A notebook that fails is reported with its error and the others still run.
"""
from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .errors import InputError
from .files import check_writable_folder, refuse_inside, write_text
from .figures import artifact_root
from .reference import reference_key, resolve_reference_dir

log = logging.getLogger(__name__)
SUMMARY = "validation_summary"


def notebooks_dir() -> Path:
    """The checkout's ``paper_figures/`` (the kit is installed from a checkout with ``pip install -e .``)."""
    d = Path(__file__).resolve().parent.parent / "paper_figures"
    if not (d / f"{SUMMARY}.ipynb").is_file():
        raise InputError("the paper_figures/ folder is not beside the installed package; install from a checkout "
                         "with `python -m pip install -e .`", d)
    return d


def notebooks(only: Iterable[str] | None = None) -> list[Path]:
    """The paper notebooks in order (figure_05 ... figure_10, then the summary), or those named:
    a figure number (``5``) or ``summary``."""
    d = notebooks_dir()
    every = sorted(d.glob("figure_*.ipynb")) + [d / f"{SUMMARY}.ipynb"]
    if not only:
        return every
    by_key = {p.stem.removeprefix("figure_").lstrip("0"): p for p in every}
    by_key["summary"] = d / f"{SUMMARY}.ipynb"
    picked = []
    for key in only:
        k = str(key).strip().lstrip("0")
        if k not in by_key:
            raise InputError(f"no paper notebook {key!r} (have: {', '.join(sorted(by_key, key=lambda x: x.zfill(3)))})",
                             "figures", str(key))
        picked.append(by_key[k])
    return list(dict.fromkeys(picked))


@dataclass
class NotebookRun:
    notebook: Path
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)
    error: str | None = None

    def failed(self, why: str) -> None:
        """Record a failure; a later step's (the PNG export's) does not hide an earlier one's (the HTML's)."""
        self.error = f"{self.error}; {why}" if self.error else why


def _figure_number(nb: Path) -> int | None:
    stem = nb.stem.removeprefix("figure_")
    return int(stem) if stem.isdigit() else None


def nbconvert_templates() -> list[str]:
    """The template folder that nbconvert's own installation wrote (its package RECORD lists the files).

    nbconvert looks for templates only in the Jupyter data folders of the running interpreter's prefix. A venv
    made with ``--system-site-packages`` imports nbconvert from the base interpreter, whose templates lie under
    the base prefix's ``share/jupyter``, outside that search: the export failed with "No template sub-directory
    with name 'lab'". Naming the templates that match the nbconvert in use finds them wherever it was installed.
    """
    from importlib.metadata import PackageNotFoundError, files

    try:
        record = files("nbconvert") or []
    except PackageNotFoundError:
        return []
    for f in record:
        if f.name == "conf.json" and f.parent.name == "lab" and f.parent.parent.name == "templates":
            return [str(Path(str(f.locate())).resolve().parent.parent)]
    return []


def _notebook_html(executed: Path, target: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    dirs = nbconvert_templates()   # each template's folder, and the root its templates extend from ('base/null.j2')
    exporter = HTMLExporter(extra_template_basedirs=dirs, extra_template_paths=dirs)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    return write_text(target, body)


def run_notebook(nb: Path, out: Path, parameters: dict, png: bool, art: Path | None) -> NotebookRun:
    """Execute one notebook and export what it drew; errors are caught into the returned record."""
    import papermill

    from .views.export import PNG_EXPORT, html_to_png, pdf_to_png

    run = NotebookRun(nb)
    t0 = time.perf_counter()
    executed = out / nb.name
    try:
        papermill.execute_notebook(str(nb), str(executed), parameters=parameters, cwd=str(nb.parent),
                                   progress_bar=False, kernel_name="python3", execution_timeout=1800,
                                   extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except papermill.PapermillExecutionError as exc:
        run.failed(f"{exc.ename}: {exc.evalue} (cell {exc.exec_count}; see {executed})")
    except Exception as exc:   # noqa: BLE001 - a kernel that will not start, a broken file: report, go on
        run.failed(f"{type(exc).__name__}: {exc}")
    ran = run.error is None
    took = {"executed": time.perf_counter() - t0}   # each part's wall time, for -v: PNG export can outlast the run
    if executed.is_file():
        run.files.append(executed)
        t = time.perf_counter()
        try:
            run.files.append(_notebook_html(executed, out / f"{nb.stem}.notebook.html"))
        except Exception as exc:   # noqa: BLE001 - nbconvert without its templates, ...: report, go on
            run.failed(f"notebook HTML: {type(exc).__name__}: {' '.join(str(exc).split())}")
        took["notebook HTML"] = time.perf_counter() - t
    n = _figure_number(nb)
    figure_html = out / (f"figure_{n}.html" if n is not None else f"{nb.stem}.html")
    if ran and figure_html.is_file():   # the figure stands without the notebook's HTML
        run.files.append(figure_html)
        if png:
            t = time.perf_counter()
            try:
                run.files.append(html_to_png(figure_html, figure_html.with_suffix(".png")))
            except InputError as exc:
                run.failed(str(exc) if exc.source == PNG_EXPORT else f"{PNG_EXPORT}: {exc}")
            took["PNG"] = time.perf_counter() - t
    if n is not None and art is not None:
        t = time.perf_counter()
        for pdf in sorted((art / "figures" / f"figure_{n}").glob("*_ref.pdf")):
            run.files.append(pdf_to_png(pdf, out / "published" / pdf.with_suffix(".png").name))
        took["published figure"] = time.perf_counter() - t
    run.seconds = time.perf_counter() - t0
    log.info("%s: %s; wrote %s", nb.name, ", ".join(f"{k} in {v:.2f} s" for k, v in took.items()),
             ", ".join(str(f) for f in run.files) or "nothing")
    return run


def run_all(reference_dir: str | Path | None = None, out: str | Path | None = None, only: Iterable[str] | None = None,
            num_requests: int = 0, seed: int = 0, png: bool = True,
            on_done: Callable[[NotebookRun], None] | None = None) -> tuple[Path, list[NotebookRun]]:
    """Run the paper notebooks into ``out`` (default ``paper_figures/output``); returns the ``index.html``
    that shows them beside the published figures, and one record per notebook."""
    if num_requests < 0:
        raise InputError(f"must be >= 0, got {num_requests}", "figures", "--num-requests")
    root = resolve_reference_dir(reference_dir).resolve()   # the notebooks run in paper_figures/
    art = artifact_root(root)
    if not (art / "figures").is_dir():
        raise InputError("no paper artifact here: expected figures/ or ispass26/figures/ "
                         "(`llmss fetch-reference --artifact` downloads it)", root, reference_key(reference_dir))
    nbs = notebooks(only)
    try:   # up front, as the PNG export names its own extras
        import papermill  # noqa: F401
    except ImportError:
        raise InputError("running the paper notebooks needs papermill: pip install -e '.[figures]'",
                         "llmss figures") from None
    out = Path(out) if out is not None else notebooks_dir() / "output"
    refuse_inside(out, root, "the reference folder")
    if out.resolve() == notebooks_dir().resolve():
        raise InputError("is the folder of the paper notebooks, whose sources the executed copies would replace; "
                         "write somewhere else (default: paper_figures/output)", out, "--out")
    out = check_writable_folder(out).resolve()
    params = {"reference_dir": str(root), "output_dir": str(out), "num_requests": num_requests, "seed": seed}
    log.info("running %s from %s with %s", ", ".join(nb.name for nb in nbs), notebooks_dir(), params)
    runs = []
    for nb in nbs:
        run = run_notebook(nb, out, params, png, art)
        runs.append(run)
        if on_done is not None:
            on_done(run)
    return write_index(out, runs, params), runs


def write_index(out: Path, runs: list[NotebookRun], params: dict) -> Path:
    """A page with our figure beside the published one, for every notebook that ran."""
    parts = ["<!doctype html><meta charset='utf-8'><title>llmss_lab: the LLMServingSim 2.0 paper figures</title>",
             "<style>body{font-family:sans-serif;margin:20px}img{max-width:100%;border:1px solid #ddd}"
             ".pair{display:grid;grid-template-columns:1fr 1fr;gap:16px;align-items:start}"
             ".err{color:#b00020}</style>",
             "<h1>LLMServingSim 2.0 paper figures, regenerated by llmss_lab</h1>",
             f"<p>Parameters: <code>{html.escape(str(params))}</code>. Left: llmss_lab (with the real system and "
             "LLMServingSim 2.0's artifact output drawn in). Right: the figure as published.</p>"]
    for run in runs:
        name = run.notebook.stem
        parts.append(f"<h2>{html.escape(name)}</h2><p><a href='{name}.notebook.html'>notebook</a> · "
                     f"<a href='{run.notebook.name}'>executed .ipynb</a> · {run.seconds:.1f} s</p>")
        if run.error:
            parts.append(f"<p class='err'>failed: {html.escape(run.error)}</p>")
        ours = [f for f in run.files if f.suffix == ".png" and f.parent == out]
        theirs = [f for f in run.files if f.parent.name == "published"]
        left = "".join(f"<img src='{f.name}'>" for f in ours) or "<p>(no PNG)</p>"
        right = "".join(f"<img src='published/{f.name}'>" for f in theirs)
        parts.append(f"<div class='pair'><div>{left}</div><div>{right}</div></div>")
    return write_text(out / "index.html", "\n".join(parts))
