"""Broken figure tables end in an InputError naming the file and line, never a traceback or a silent score.

Each case rebuilds the artifact as a tree of symlinks (as ``cp -rs`` makes it) in which one table is
replaced by a broken version made at test time from the real one.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest

from llmss_lab.cli import main
from llmss_lab.errors import InputError
from llmss_lab.figures import latency_errors, pim_facts, power_errors, throughput_error

F9, F8 = "figures/figure_9", "figures/figure_8"


def broken_tree(ref: Path, tmp_path: Path, rel: str, edit: Callable[[str], str | bytes]) -> Path:
    """A symlink copy of ``ref/ispass26`` where ``rel`` holds ``edit(its real text)``; returns its root."""
    src, dst = ref / "ispass26", tmp_path / "ispass26"
    parts = Path(rel).parts
    for depth, name in enumerate(parts):
        here, there = src.joinpath(*parts[:depth]), dst.joinpath(*parts[:depth])
        there.mkdir(parents=True, exist_ok=True)
        for child in here.iterdir():
            if child.name != name:
                (there / child.name).symlink_to(child)
    content = edit((src / rel).read_text())
    (dst / rel).write_bytes(content if isinstance(content, bytes) else content.encode())
    return dst


def lines(text: str) -> list[str]:
    return text.splitlines()


def replace_cell(line_no: int, column: str, value: str) -> Callable[[str], str]:
    """An edit setting one cell (``line_no`` counts from 1, the header)."""
    def edit(text: str) -> str:
        rows = [r.split("\t") for r in lines(text)]
        rows[line_no - 1][rows[0].index(column)] = value
        return "".join("\t".join(r) + "\n" for r in rows)
    return edit


def insert_line(after: int, line: str) -> Callable[[str], str]:
    """An edit adding ``line`` after line ``after`` (counting from 1, the header)."""
    def edit(text: str) -> str:
        rows = lines(text)
        return "".join(r + "\n" for r in rows[:after] + [line] + rows[after:])
    return edit


def zero_second_column(text: str) -> str:
    rows = lines(text)
    return "".join([rows[0] + "\n"] + [r.split("\t")[0] + "\t0\n" for r in rows[1:]])


def scored(art: Path, rel: str) -> None:
    """Score the table ``rel`` of the broken tree as ``compare`` does (ours are the artifact's parsed files)."""
    folder, name = rel.rsplit("/", 1)
    base = folder.rsplit("/", 1)[0]
    stem = name.removesuffix(".tsv")
    sim, real = art / base / "parsed" / name, art / base / "reference" / name
    (throughput_error if stem.endswith("_throughput") else latency_errors)(sim, real)


CASES = [
    # (broken file, edit, the error after the file's path)
    (f"{F9}/reference/SD_latency.tsv", lambda t: "", "no rows (the file is empty)"),
    (f"{F9}/reference/SD_latency.tsv", lambda t: lines(t)[0] + "\n", "no rows (only a header)"),
    (f"{F9}/parsed/SD_latency.tsv", lambda t: "", "no rows (the file is empty)"),
    (f"{F9}/reference/SD_latency.tsv", replace_cell(2, "mean_ttft_ms", "abc"),
     "line 2: column 'mean_ttft_ms': not a number: 'abc'"),
    (f"{F9}/reference/SD_latency.tsv", replace_cell(2, "throughput_tok_s", "0"),
     "line 2: column 'throughput_tok_s' is 0; cannot score against it"),
    (f"{F9}/reference/SD_latency.tsv", lambda t: t + lines(t)[1] + "\n",
     "line 3: expected one row, got 2 (and no 'framework' column naming the vLLM one)"),
    (f"{F9}/reference/SD_latency.tsv", lambda t: lines(t)[0] + "\n" + lines(t)[1].rsplit("\t", 2)[0] + "\n",
     "line 2: expected 4 fields, got 2"),
    (f"{F9}/parsed/SD_latency.tsv", lambda t: t.replace("mean_ttft_ms", "ttft"),
     "line 1: no column 'mean_ttft_ms'"),
    (f"{F9}/reference/SD_latency.tsv", lambda t: t.encode().replace(b"57.29", b"57.\xe929"),
     "line 2: not UTF-8 text (byte 0xe9)"),
    (f"{F8}/reference/SD_latency.tsv", lambda t: "".join(r + "\n" for r in lines(t) if not r.startswith("vLLM")),
     "no vLLM row (column 'framework' has ['TokenSim', 'Vidur', 'APEX'])"),
    (f"{F8}/reference/SD_latency.tsv", lambda t: t + [r for r in lines(t) if r.startswith("vLLM")][0] + "\n",
     "line 6: a second vLLM row"),
    (f"{F9}/reference/SD_throughput.tsv", lambda t: "", "no rows (the file is empty)"),
    (f"{F9}/parsed/SD_throughput.tsv", lambda t: lines(t)[0] + "\n", "no rows (only a header)"),
    (f"{F9}/reference/SD_throughput.tsv", zero_second_column,
     "column 'throughput' is 0 on every row; cannot score against it"),
    (f"{F9}/reference/SD_throughput.tsv", lambda t: t.replace("time_s", "t", 1), "line 1: no column 'time_s'"),
    (f"{F9}/reference/SD_throughput.tsv", insert_line(3, "1"), "line 4: expected 2 fields, got 1"),
    # cut in the middle of line 10, before its second field
    (f"{F9}/reference/SD_throughput.tsv", lambda t: "\n".join(lines(t)[:10]).rsplit("\t", 1)[0],
     "line 10: expected 2 fields, got 1"),
    (f"{F9}/reference/SD_throughput.tsv", replace_cell(5, "throughput", "-12.5"),
     "line 5: column 'throughput' is negative (-12.5)"),
    (f"{F9}/parsed/SD_throughput.tsv", replace_cell(5, "time_s", "-4"), "line 5: column 'time_s' is negative (-4)"),
    (f"{F9}/reference/SD_throughput.tsv", replace_cell(5, "time_s", "2"),
     "line 5: column 'time_s' does not increase (2 after 2)"),
    (f"{F9}/reference/SD_throughput.tsv", replace_cell(5, "time_s", "3.5"),
     "line 5: column 'time_s' is not a whole second: '3.5'"),
]


@pytest.mark.parametrize("rel,edit,error", CASES, ids=[f"{c[0].split('/', 2)[2]}: {c[2]}" for c in CASES])
def test_a_broken_table_names_its_file_and_line(ref, tmp_path, rel, edit, error):
    art = broken_tree(ref, tmp_path, rel, edit)
    with pytest.raises(InputError, match=re.escape(f"{art / rel}: {error}")):
        scored(art, rel)


def test_only_an_x_cell_means_not_measured_an_empty_one_is_refused(ref, tmp_path):
    art = ref / "ispass26"
    assert set(latency_errors(art / F8 / "parsed/PDD_latency.tsv", art / F8 / "reference/PDD_latency.tsv")) == \
        {"throughput_tok_s", "mean_ttft_ms", "mean_tpot_ms"}       # peers marked X; Fig 8 measured no ITL
    rel = f"{F8}/reference/SD_latency.tsv"
    art = broken_tree(ref, tmp_path, rel, replace_cell(5, "mean_tpot_ms", ""))     # line 5: vLLM
    with pytest.raises(InputError, match=re.escape(f"{art / rel}: line 5: column 'mean_tpot_ms': not a number: ''")):
        scored(art, rel)


def test_a_reference_cut_at_the_end_of_a_line_is_scored_with_a_warning(ref, tmp_path, caplog):
    """No certain sign of a file cut between lines; but a real run is recorded until it drains to 0."""
    rel = f"{F9}/reference/SD_throughput.tsv"
    art = broken_tree(ref, tmp_path, rel, lambda t: "".join(r + "\n" for r in lines(t)[:20]))
    with caplog.at_level("WARNING", logger="llmss_lab.figures"):
        scored(art, rel)
    assert f"{art / rel}: the last second has" in caplog.text and "is the file cut short?" in caplog.text


def test_a_zero_power_or_idle_pim_table_is_refused(ref, tmp_path):
    rel = "figures/figure_6/reference/server_power_tp1.tsv"
    art = broken_tree(ref, tmp_path / "a", rel, zero_second_column)
    with pytest.raises(InputError, match=re.escape(f"{art / rel}: column 'power_w' is 0 on every row")):
        power_errors(art / "figures/figure_6/parsed/power_tp1.tsv", art / rel)
    rel = "figures/figure_10/parsed/pim_b256_throughput.tsv"
    art = broken_tree(ref, tmp_path / "b", rel, zero_second_column)
    with pytest.raises(InputError, match=re.escape(f"{art / rel}: column 'throughput' is 0 on every row")):
        pim_facts(art / "figures/figure_10/parsed", "pim")


def test_figure_data_compare_on_a_broken_reference_exits_2_naming_file_and_line(ref, tmp_path, capsys):
    rel = f"{F9}/reference/SD_throughput.tsv"
    art = broken_tree(ref, tmp_path, rel, insert_line(3, "1"))
    assert main(["figure-data", "9", "--reference-dir", str(art), "--out", str(tmp_path / "o"), "--compare"]) == 2
    assert f"llmss: error: {art / rel}: line 4: expected 2 fields, got 1" in capsys.readouterr().err


def test_the_paper_summary_reads_tables_with_the_same_checks(tmp_path):
    """`llmss figures` reads the tables with pandas, which filled a short row with NaN."""
    from llmss_lab.paper import read_table
    bad = tmp_path / "SD_throughput.tsv"
    bad.write_text("time_s\tthroughput\n0\t0\n1\n2\t5\n")
    with pytest.raises(InputError, match=r"SD_throughput\.tsv: line 3: expected 2 fields, got 1"):
        read_table(bad)


def test_output_folders_that_would_overwrite_what_a_run_reads_are_refused(tmp_path, capsys):
    """An --out inside the artifact replaced LLMServingSim's parsed/ tables, and --compare then scored the run
    against itself; `llmss figures --out paper_figures/` replaced the notebooks' sources with executed copies.
    The artifact here is a stand-in of empty folders, so a failing check writes nothing that matters."""
    from llmss_lab.files import refuse_inside
    from llmss_lab.paper_run import notebooks_dir, run_all

    art = tmp_path / "ispass26"
    (art / "figures" / "figure_9" / "parsed").mkdir(parents=True)
    assert main(["figure-data", "9", "--reference-dir", str(tmp_path), "--out", str(art / "figures")]) == 2
    assert "is inside the reference data" in capsys.readouterr().err
    assert list((art / "figures" / "figure_9" / "parsed").iterdir()) == []
    with pytest.raises(InputError, match="out: is inside the paper artifact"):   # the notebooks' call
        from llmss_lab.figures import write_figure_data
        write_figure_data(9, art, art / "out")
    with pytest.raises(InputError, match="--out: is the folder of the paper notebooks"):
        run_all(tmp_path, notebooks_dir(), only=["9"])
    with pytest.raises(InputError, match="is inside the reference folder"):
        run_all(tmp_path, tmp_path / "figs", only=["9"])
    refuse_inside(tmp_path / "ispass26x", art, "the paper artifact")                # a neighbour is fine


def test_figure_outputs_are_checked_before_any_simulation(ref, tmp_path):
    from llmss_lab.figures import write_figure_data

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="out: not a folder"):
        write_figure_data(9, ref / "ispass26", blocker)


def test_an_unknown_hardware_row_names_the_hardware_parameter():
    """figure_05 -p hardware '["B200"]' blamed 'scenarios: B200: no scenario'."""
    from llmss_lab.figures import scenario_filter

    assert scenario_filter(["MD"], ["H100"]) == ["H100/MD"]
    with pytest.raises(InputError, match=r"^hardware: B200: no figure has a row on 'B200'; rows: A6000, H100"):
        scenario_filter([], ["B200"])
