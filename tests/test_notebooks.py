"""Every notebook under papermill with its parameters changed (nbval runs them as they are: see
pyproject's pytest options). Kept small: one kernel per notebook, a few requests per run."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

papermill = pytest.importorskip("papermill")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_every_notebook_is_committed_clean_with_a_parameters_cell():
    assert len(NOTEBOOKS) >= 8
    papers = sorted((NOTEBOOKS[0].parent.parent / "paper_figures").glob("*.ipynb"))
    for path in NOTEBOOKS + papers:   # cell ids: nbformat says a missing one will become an error
        assert all("id" in c for c in json.loads(path.read_text())["cells"]), f"{path.name}: a cell has no id"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in nb.cells if c.cell_type == "code"), f"{path.name} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_under_papermill_with_changed_parameters(path, ref, tmp_path):
    params = {"reference_dir": str(ref), "num_requests": 24, "seed": 3}
    if path.stem == "00_quickstart":
        params["max_num_seqs"] = 16
    out = tmp_path / path.name
    papermill.execute_notebook(str(path), str(out), parameters=params, cwd=str(path.parent), progress_bar=False,
                               kernel_name="python3", execution_timeout=600)
    nb = nbformat.read(out, as_version=4)
    assert nb.metadata.papermill.parameters == params
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "num_requests = 24" in injected[0].source
    if path.stem == "00_quickstart":
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        assert "24 requests" in text


def test_design_space_names_a_scheduler_it_cannot_reach(ref, tmp_path):
    """-p scheduler junk ended in dask's bare ValueError (missing port number)."""
    path = NOTEBOOKS[0].parent / "design_space.ipynb"
    with pytest.raises(papermill.PapermillExecutionError, match="scheduler: cannot reach a dask scheduler at 'junk'"):
        papermill.execute_notebook(str(path), str(tmp_path / "out.ipynb"), cwd=str(path.parent), progress_bar=False,
                                   parameters={"reference_dir": str(ref), "scheduler": "junk"}, kernel_name="python3")


def test_design_space_says_why_when_every_point_failed(ref, tmp_path):
    """-p tp_values [3] ended in a 41-line KeyError: 'goodput'; the reason sat in the Dataset."""
    path = NOTEBOOKS[0].parent / "design_space.ipynb"
    with pytest.raises(papermill.PapermillExecutionError, match="tp_values: no point ran: .*tp_size 3 does not"):
        papermill.execute_notebook(str(path), str(tmp_path / "out.ipynb"), cwd=str(path.parent), progress_bar=False,
                                   parameters={"reference_dir": str(ref), "tp_values": [3], "num_requests": 8},
                                   kernel_name="python3")


def test_quickstart_says_in_words_why_it_did_not_run(ref, tmp_path):
    """-p max_num_seqs 0 (a value beyond its control's range then; num_requests 30000 is one now) ended in an
    AssertionError whose message was the status line's raw HTML."""
    path = NOTEBOOKS[0]
    with pytest.raises(papermill.PapermillExecutionError,
                       match=r"InputError: explorer: Not run: .*num_requests 30000 \(shown as 20000\)"):
        papermill.execute_notebook(str(path), str(tmp_path / "out.ipynb"), cwd=str(path.parent), progress_bar=False,
                                   parameters={"reference_dir": str(ref), "num_requests": 30000}, kernel_name="python3")


ALL_NOTEBOOKS = NOTEBOOKS + sorted((NOTEBOOKS[0].parent.parent / "paper_figures").glob("*.ipynb"))


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_checks_its_parameter_names_right_after_papermill_injects_them(path):
    """check_parameters only looks at the cell run just before its own, so it must be in the cell after the
    parameters cell, and every parameter there needs the annotation that declares it."""
    from papermill.translators import PythonTranslator

    nb = nbformat.read(path, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    assert "check_parameters(globals())" in nb.cells[at + 1].source
    params = PythonTranslator.inspect(nb.cells[at])
    assert params and all(p.inferred_type_name != "None" for p in params), path.name


def test_a_misspelt_papermill_parameter_stops_the_notebook_naming_the_one_meant(ref, tmp_path):
    """papermill only warned about -p hardwar H100, then ran both rows of figure 5 in full."""
    path = ALL_NOTEBOOKS[-1].parent / "figure_05.ipynb"
    with pytest.raises(papermill.PapermillExecutionError,
                       match=r"parameters: hardwar: this notebook has no parameter 'hardwar' \(did you mean 'hardware'\?\)"):
        papermill.execute_notebook(str(path), str(tmp_path / "out.ipynb"), cwd=str(tmp_path), progress_bar=False,
                                   parameters={"reference_dir": str(ref), "output_dir": str(tmp_path / "o"),
                                               "hardwar": ["H100"]}, kernel_name="python3")
    assert not (tmp_path / "o").exists()   # stopped before any simulation wrote a file


@pytest.fixture(scope="module")
def design_space(ref, tmp_path_factory):
    """design_space.ipynb as papermill saves it, on a small grid: 2 sweep points, 2 capacity searches."""
    path = NOTEBOOKS[0].parent / "design_space.ipynb"
    out = tmp_path_factory.mktemp("design_space") / path.name
    papermill.execute_notebook(str(path), str(out), cwd=str(path.parent), progress_bar=False, kernel_name="python3",
                               parameters={"reference_dir": str(ref), "num_requests": 8, "tp_values": [1, 2],
                                           "max_num_seqs_values": [64], "rates": [4.0]})
    return nbformat.read(out, as_version=4)


def _shown(nb, mime: str) -> list[str]:
    return ["".join(o.data[mime]) for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if mime in o.get("data", {})]


def test_design_space_saves_its_progress_bars_as_they_ended(design_space):
    """The saved notebook said 'sweep: 0%| | 0/18' and 'capacity: 0%| | 0/54' under runs that had finished: the
    text tqdm's notebook widget leaves beside it is the one it had when first shown."""
    import re

    bars = [t for t in _shown(design_space, "text/plain") if re.match(r"(sweep|capacity):", t)]
    assert [b.split(":")[0] for b in bars] == ["sweep", "capacity"]
    for bar in bars:
        done, total = re.search(r"(\d+)/(\d+)", bar).groups()
        assert "100%" in bar and done == total and int(total) > 0, bar


def test_design_space_heat_maps_name_their_units(design_space):
    """Their titles read 'goodput, TP 1' and 'energy_per_output_token_J, TP 1': the colour bars' units
    were the only place that said what the colours measure."""
    page = "".join(_shown(design_space, "text/html"))
    for title in ("goodput (req/s), tp=1", "energy_per_output_token_J (J/token), tp=1", "goodput (req/s), tp=2",
                  "rate (req/s)", "max_num_seqs (sequences)"):   # and their axes
        assert title in page


def test_every_view_a_teaching_notebook_shows_names_its_runs():
    """Notebook 06 drew one of its three pool runs titled 'Memory per tier', with no word of which: a view of a
    run alone names it only when given a label (those of two runs name both, derived or given)."""
    import ast

    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            for node in ast.walk(ast.parse(cell.source)):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "views"):
                    given = {k.arg for k in node.keywords}
                    assert "label" in given, f"{path.name}: views.{node.func.attr}(...) leaves its run unnamed"
