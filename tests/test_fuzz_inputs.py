"""One fuzz test across the kit's input files: each kind of real input from the reference data (cluster and
model configs, traces, profile tables and meta.yaml, PIM device files, hardware specs and the efficiency fit,
scenario and grid files the kit writes, measurement folders, the figure tables scored against, results files,
command-line values, the explorer's controls), broken by structured mutations
with a fixed seed, goes through the command (or API call) that reads it, in process. Each case must succeed or
end in one ``llmss: error:`` line (an :class:`InputError`) naming the broken file - never another exception,
never longer than its time budget, and never leaving a half-written ``--out``.

The mutations: a key dropped, a value of the wrong type, negative, zero, huge, NaN or infinite, unicode, a key
given twice, deeply nested junk; the file truncated at random offsets, empty, with a BOM, with CRLF line ends,
with a byte that is not UTF-8, or a folder in its place. Profile, model and PIM files are swapped into a tree
of symlinks to the reference data (never copied or changed)."""
from __future__ import annotations

import copy
import csv
import functools
import io
import json
import math
import random
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import llmss_lab as ll
from llmss_lab.cli import main
from llmss_lab.errors import InputError
from tests.conftest import alarm
from tests.test_bad_inputs import overlay

SEED = 20261124
CASE_BUDGET_S = 20       # a case that takes this long is a hang (a good one takes well under a second)
LLAMA = "profiles/RTXPRO6000/meta-llama/Llama-3.1-8B/bf16"
QWEN_MOE = "profiles/RTXPRO6000/Qwen/Qwen3-30B-A3B-Instruct-2507/bf16"
GOOD_CLUSTER = "configs/cluster/single_node_single_instance.json"
TRACE = "workloads/example_trace.jsonl"
SPECS = Path(__file__).resolve().parents[1] / "profiles"

DIR = object()   # a folder in place of the file
WRONG = ["x", [], {}, None, True, -1, 0, 0.5, 1e308, 2 ** 70, math.nan, math.inf, -math.inf, "ü\u202e模型\x00"]
WRONG_CELLS = ["", "x", "-1", "0", "1e300", "nan", "inf", "-inf", "1,5", "ü模型"]
DEEP = 100_000


# ---- mutations --------------------------------------------------------------------------------------

BYTE_LEVEL = ("empty", "folder", "bom", "crlf")   # with the cuts and bad bytes (name@offset)


def byte_mutations(raw: bytes, rng: random.Random, cuts: int = 3) -> Iterator[tuple[str, bytes | object]]:
    """What can happen to any file on its way: cut short, emptied, re-encoded, replaced by a folder."""
    yield "empty", b""
    yield "folder", DIR
    yield "bom", b"\xef\xbb\xbf" + raw
    yield "crlf", raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    at = rng.randrange(len(raw))
    yield f"not-utf8@{at}", raw[:at] + b"\xff\xfe" + raw[at:]
    yield f"nul@{at}", raw[:at] + b"\x00" + raw[at:]
    for at in sorted(rng.sample(range(1, len(raw)), min(cuts, len(raw) - 1))):
        yield f"cut@{at}", raw[:at]


def paths(node, here=()) -> Iterator[tuple]:
    """Every key path of a JSON/YAML document."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield here + (k,)
            yield from paths(v, here + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):     # a long list's first items stand for the rest
            yield here + (i,)
            yield from paths(v, here + (i,))


def edited(doc, path: tuple, value=None, drop: bool = False):
    doc = copy.deepcopy(doc)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def tree_mutations(doc, rng: random.Random, n: int) -> Iterator[tuple[str, object]]:
    """``n`` seeded (key path, change) pairs over a parsed document: dropped, or a wrong value."""
    every = list(paths(doc))
    for _ in range(n):
        path = rng.choice(every)
        name = ".".join(map(str, path))
        if rng.random() < 0.2:
            yield f"drop {name}", edited(doc, path, drop=True)
        else:
            value = rng.choice(WRONG)
            yield f"{name}={value!r}", edited(doc, path, value)


def json_mutations(raw: bytes, rng: random.Random, n: int) -> Iterator[tuple[str, bytes | object]]:
    yield from byte_mutations(raw, rng)
    doc = json.loads(raw)
    for name, d in tree_mutations(doc, rng, n):
        yield name, json.dumps(d, indent=2, ensure_ascii=rng.random() < 0.5).encode()
    text = raw.decode()
    brace = text.index("{") + 1
    yield "duplicate key", (text[:brace] + text[brace:].split(",", 1)[0] + "," + text[brace:]).encode()
    yield "deeply nested", (text[:brace] + '"junk": ' + "[" * DEEP + "]" * DEEP + "," + text[brace:]).encode()
    yield "a list", b"[" + raw + b"]"


def yaml_mutations(raw: bytes, rng: random.Random, n: int) -> Iterator[tuple[str, bytes | object]]:
    yield from byte_mutations(raw, rng)
    doc = yaml.safe_load(raw)
    for name, d in tree_mutations(doc, rng, n):
        yield name, yaml.safe_dump(d, allow_unicode=rng.random() < 0.5).encode()
    first = next(ln for ln in raw.decode().splitlines() if ln and not ln[0].isspace() and not ln.startswith("#"))
    yield "duplicate key", (raw.decode() + "\n" + first + "\n").encode()
    yield "deeply nested", raw + b"\njunk: " + b"[" * DEEP + b"]" * DEEP + b"\n"
    yield "a list", b"- 1\n- 2\n"


def jsonl_mutations(raw: bytes, rng: random.Random, n: int) -> Iterator[tuple[str, bytes | object]]:
    yield from byte_mutations(raw, rng)
    lines = raw.decode().splitlines()
    for _ in range(n):
        i = rng.randrange(len(lines))
        doc = json.loads(lines[i])
        for name, d in tree_mutations(doc, rng, 1):
            yield f"line {i + 1}: {name}", "\n".join(lines[:i] + [json.dumps(d)] + lines[i + 1:]).encode()
    i = rng.randrange(len(lines))
    yield f"line {i + 1} twice", "\n".join(lines[:i + 1] + lines[i:]).encode()
    yield f"line {i + 1} dropped", "\n".join(lines[:i] + lines[i + 1:]).encode()
    yield f"blank line {i + 1}", "\n".join(lines[:i] + [""] + lines[i:]).encode()
    yield f"duplicate key on line {i + 1}", "\n".join(lines[:i] + ['{"input_toks": 3, ' + lines[i][1:]]
                                                      + lines[i + 1:]).encode()
    yield f"deeply nested on line {i + 1}", "\n".join(lines[:i] + ["[" * DEEP + "]" * DEEP] + lines[i:]).encode()


def csv_mutations(raw: bytes, rng: random.Random, n: int, delimiter: str = ",") -> Iterator[tuple[str, bytes | object]]:
    yield from byte_mutations(raw, rng)
    rows = list(csv.reader(io.StringIO(raw.decode()), delimiter=delimiter))

    def out(rs) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerows(rs)
        return buf.getvalue().encode()

    for _ in range(n):
        r, c = rng.randrange(1, len(rows)), rng.randrange(len(rows[0]))
        cell = rng.choice(WRONG_CELLS)
        yield f"line {r + 1} {rows[0][c]}={cell!r}", out(rows[:r] + [rows[r][:c] + [cell] + rows[r][c + 1:]]
                                                         + rows[r + 1:])
    c = rng.randrange(len(rows[0]))
    yield f"column {rows[0][c]} dropped", out([row[:c] + row[c + 1:] for row in rows])
    yield f"column {rows[0][c]} renamed", out([rows[0][:c] + [rows[0][c] + "_"] + rows[0][c + 1:]] + rows[1:])
    r = rng.randrange(1, len(rows))
    yield f"line {r + 1} twice", out(rows[:r + 1] + rows[r:])
    yield f"line {r + 1} with an extra field", out(rows[:r] + [rows[r] + ["1"]] + rows[r + 1:])
    yield "header only", out(rows[:1])


def ini_mutations(raw: bytes, rng: random.Random, n: int) -> Iterator[tuple[str, bytes | object]]:
    yield from byte_mutations(raw, rng)
    lines = raw.decode().splitlines()
    keyed = [i for i, ln in enumerate(lines) if "=" in ln]
    for _ in range(n):
        i = rng.choice(keyed)
        key = lines[i].split("=")[0].strip()
        if rng.random() < 0.2:
            yield f"drop {key}", "\n".join(lines[:i] + lines[i + 1:]).encode()
        else:
            value = rng.choice(WRONG_CELLS)
            yield f"{key}={value!r}", "\n".join(lines[:i] + [f"{key} = {value}"] + lines[i + 1:]).encode()
    i = rng.choice(keyed)
    yield f"line {i + 1} twice", "\n".join(lines[:i + 1] + lines[i:]).encode()
    yield "no section", "\n".join(ln for ln in lines if not ln.startswith("[")).encode()


MUTATIONS = {".json": json_mutations, ".yaml": yaml_mutations, ".jsonl": jsonl_mutations, ".csv": csv_mutations,
             ".tsv": functools.partial(csv_mutations, delimiter="\t"), ".ini": ini_mutations}


def mutants(raw: bytes, suffix: str, seed: str, n: int, whole_file: bool = True) -> list[tuple[str, bytes | object]]:
    """The seeded mutations of one file; ``whole_file`` False leaves out those that do not depend on its
    content (empty, a folder, BOM, CRLF, cuts), which one file of a kind covers for the rest."""
    found = MUTATIONS[suffix](raw, random.Random(f"{SEED}:{seed}"), n)
    return [m for m in found if whole_file or m[0] not in BYTE_LEVEL and "@" not in m[0]]


def put(path: Path, content: bytes | object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is DIR:
        path.mkdir()
    else:
        path.write_bytes(content)   # type: ignore[arg-type]
    return path


# ---- running a case -----------------------------------------------------------------------------------

# the mutations of a whole file, whose message need name no key or line (an empty file, a list for an object)
WHOLE_FILE = re.compile(r": (empty|folder|bom|crlf|(cut|nul|not-utf8)@\d+|a list|header only|no section)$")
# a key path (nodes[0].tp_size, classes.xla/act_fn.u) or a line after the file, a command-line flag, or a
# file named that does not exist (a path given as a flag's value)
WHERE = re.compile(r": line \d+|: [A-Za-z_][\w\[\]., /-]*: |--[a-z-]+|: file does not exist")

@dataclass
class Outcome:
    case: str
    problem: str


def check(case: str, named: str | tuple[str, ...], call: Callable[[], int | None], out: Path | None,
          capsys) -> Outcome | None:
    """Run one case; what is wrong with how it ended, or None. ``call`` returns the CLI's status (None: an API
    call that returned); the error must contain ``named`` (or one of them)."""
    before = set(out.parent.iterdir()) if out is not None else set()
    t0 = time.perf_counter()
    try:
        with alarm(CASE_BUDGET_S):
            code = call()
    except InputError as exc:
        capsys.readouterr()
        code, err = 2, f"llmss: error: {exc}"
    except BaseException as exc:   # noqa: BLE001 - anything else is the finding
        capsys.readouterr()
        return Outcome(case, f"{type(exc).__name__}: {str(exc)[:300]}")
    else:
        err = capsys.readouterr().err
    took = time.perf_counter() - t0
    if out is not None:
        left = {p.name for p in set(out.parent.iterdir()) - before} - {out.name}
        if left:
            return Outcome(case, f"left {sorted(left)} beside --out")
        if code == 0 and not out.is_file():
            return Outcome(case, "succeeded without writing --out")
        if code not in (0, None) and out.exists():
            return Outcome(case, f"exit {code} but --out was written")
        if out.exists():
            out.unlink()
    if took > CASE_BUDGET_S / 2:
        return Outcome(case, f"took {took:.1f} s")
    if code in (0, None):
        return None
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    # ours, or argparse's refusal of a command-line value ("llmss run: error: argument --rate: ...")
    if code != 2 or not lines or not re.match(r"llmss( run)?: error: ", lines[-1]) or "Traceback" in err:
        return Outcome(case, f"exit {code}: {err.strip()[-300:]}")
    if not any(n in lines[-1] for n in ((named,) if isinstance(named, str) else named)):
        return Outcome(case, f"does not name {named}: {lines[-1]}")
    if not WHOLE_FILE.search(case) and not WHERE.search(lines[-1].split("error: ", 1)[1]):
        return Outcome(case, f"names no key or line: {lines[-1]}")
    return None


def report(kind: str, cases: int, found: list[Outcome]) -> None:
    print(f"{kind}: {cases} cases, {len(found)} findings")
    assert not found, "\n".join(f"{o.case}: {o.problem}" for o in found)


def run_argv(*args: str | Path) -> Callable[[], int]:
    return lambda: main([str(a) for a in args])


# ---- the input kinds ----------------------------------------------------------------------------------

def test_cluster_configs(ref, tmp_path, capsys):
    found, n = [], 0
    for i, config in enumerate(sorted((ref / "configs/cluster").glob("*.json"))):
        for name, content in mutants(config.read_bytes(), ".json", config.name, 5, whole_file=i % 5 == 0):
            case = tmp_path / f"c{n}"
            mutated, out = put(case / config.name, content), case / "out.nc"
            outcome = check(f"{config.name}: {name}", config.name, run_argv(
                "run", mutated, "--workload", TRACE, "--num-requests", 4, "--reference-dir", ref, "--out", out, "-q"),
                out, capsys)
            found += [outcome] if outcome else []
            n += 1
    report("cluster configs", n, found)


def test_traces(ref, tmp_path, capsys):
    found, n = [], 0
    for trace in ("example_trace.jsonl", "workload_me2_01_mixed.jsonl", "sharegpt-qwen3-32b-300-sps10.jsonl"):
        raw = b"".join((ref / "workloads" / trace).read_bytes().splitlines(keepends=True)[:10])
        for name, content in mutants(raw, ".jsonl", trace, 15):
            case = tmp_path / f"t{n}"
            mutated, out = put(case / trace, content), case / "out.nc"
            outcome = check(f"{trace}: {name}", trace, run_argv(
                "run", ref / GOOD_CLUSTER, "--workload", mutated, "--reference-dir", ref, "--out", out, "-q"),
                out, capsys)
            found += [outcome] if outcome else []
            n += 1
    report("traces", n, found)


# (file in the reference data, the cluster config that reads it, structured mutations)
SWAPPED = [
    (f"{LLAMA}/meta.yaml", GOOD_CLUSTER, 20),   # a label it changes is named in the table that uses it
    (f"{LLAMA}/tp1/dense.csv", GOOD_CLUSTER, 20),
    (f"{LLAMA}/tp1/per_sequence.csv", GOOD_CLUSTER, 15),
    (f"{LLAMA}/tp1/attention.csv", GOOD_CLUSTER, 15),
    (f"{LLAMA}/tp1/skew_fit.csv", GOOD_CLUSTER, 15),
    (f"{QWEN_MOE}/tp1/moe.csv", "configs/cluster/single_node_moe_single_instance.json", 15),
    ("configs/model/meta-llama/Llama-3.1-8B.json", GOOD_CLUSTER, 20),
    ("configs/model/Qwen/Qwen3-30B-A3B-Instruct-2507.json", "configs/cluster/single_node_moe_single_instance.json", 15),
    ("configs/pim/DDR4_8GB_3200_pim.ini", "configs/cluster/single_node_pim_instance.json", 20),
]


@pytest.mark.parametrize("rel,cluster,count", SWAPPED, ids=[s[0].rsplit("/", 2)[-2] + "/" + s[0].rsplit("/", 1)[-1]
                                                             for s in SWAPPED])
def test_reference_files_swapped_for_broken_ones(rel, cluster, count, ref, tmp_path, capsys):
    found, n = [], 0
    source = ref / rel
    for name, content in mutants(source.read_bytes(), source.suffix, rel, count):
        case = tmp_path / f"s{n}"
        root = overlay(ref, case, rel, put(case / "broken" / source.name, content))
        out = case / "out.nc"
        named = (source.name, f"{Path(rel).parent}/tp1/") if source.name == "meta.yaml" else source.name
        outcome = check(f"{rel}: {name}", named, run_argv(
            "run", root / cluster, "--workload", TRACE, "--num-requests", 4, "--reference-dir", root, "--out", out,
            "-q"), out, capsys)
        found += [outcome] if outcome else []
        n += 1
    report(rel, n, found)


H100 = "configs/cluster/single_node_single_instance_H100.json"


def test_hardware_specs_and_the_efficiency_fit(ref, tmp_path, capsys, monkeypatch):
    """A broken spec of the hardware a run needs (profiles/hardware/H100.yaml) or of another one, and a
    broken --efficiency file, under --latency analytical."""
    from llmss_lab import api
    from llmss_lab.latency.analytical import find_spec

    found, n = [], 0
    for rel, count in (("hardware/H100.yaml", 25), ("hardware/A100.yaml", 8), ("efficiency.yaml", 25)):
        source = SPECS / rel
        for name, content in mutants(source.read_bytes(), ".yaml", rel, count):
            case = tmp_path / f"h{n}"
            specs = case / "hardware"
            shutil.copytree(SPECS / "hardware", specs)
            eff = case / "efficiency.yaml"
            shutil.copy(SPECS / "efficiency.yaml", eff)
            broken = case / rel
            broken.unlink()
            put(broken, content)
            monkeypatch.setattr(api, "find_spec", functools.partial(find_spec, folder=specs))
            out = case / "out.nc"
            outcome = check(f"{rel}: {name}", source.name, run_argv(
                "run", ref / H100, "--latency", "analytical", "--efficiency", eff, "--workload", TRACE,
                "--num-requests", 4, "--reference-dir", ref, "--out", out, "-q"), out, capsys)
            found += [outcome] if outcome else []
            n += 1
    report("hardware specs and efficiency", n, found)


def test_scenario_files(ref, tmp_path, capsys):
    """Scenario files as the kit (and the explorer's Save scenario) writes them, loaded and run."""
    found, n = [], 0
    written = {"plain": ll.Scenario(num_requests=4),
               "pd": ll.Scenario(instances=2, prefill_instances=1, num_requests=4, prefix_storage="cpu"),
               "file": ll.Scenario(cluster_config=str(ref / GOOD_CLUSTER), trace=TRACE, num_requests=4)}
    for label, scenario in written.items():
        raw = scenario.save(tmp_path / f"{label}.json").read_bytes()
        for name, content in mutants(raw, ".json", label, 30):
            mutated = put(tmp_path / f"sc{n}" / "scenario.json", content)
            # what only a run can tell (a trace or hardware that does not exist) names the file too
            outcome = check(f"scenario {label}: {name}", "scenario.json",
                            lambda: ll.Scenario.load(mutated).run(ref) and None, None, capsys)
            found += [outcome] if outcome else []
            n += 1
    report("scenario files", n, found)


# past WRONG, each field's edges: the engine's limits (4M KV blocks, a 64-bit whole number), a request that fits
# no longer (72 tokens: 64 + 8), and the efficiency file as a path of every odd kind
RUN_FLAG_EDGES = {
    "num_gpu_blocks": [1, 4, 5, 1 << 22, (1 << 22) + 1, 2 ** 63 - 1, 2 ** 63],
    "max_model_len": [1, 71, 72, 2 ** 31, 2 ** 63 - 1],
    "long_prefill_token_threshold": [1, 2 ** 31, 2 ** 63 - 1],
    "reserve_full_isl": [False, "false", 1],
    "efficiency_file": ["", "fit.yaml", " fit.yaml ", "missing.yaml", ".", "LOOP", "FIT/x", "~nobody-here/fit.yaml"],
}


def test_scenario_files_setting_the_run_flags(ref, tmp_path, capsys):
    """The fields a scenario sets in place of `llmss run`'s --num-gpu-blocks, --max-model-len,
    --long-prefill-token-threshold, --[no-]reserve-full-isl and --efficiency: each at every wrong value and its
    edges, and the efficiency fit it names broken, through `llmss run --scenario ... --out`. Each names the
    scenario file or the fit: a request of the generated workload that no longer fits the KV cache or max_model_len
    too, at the key that set the limit (it named the workload, 'synthetic(poisson, ...): request 0')."""
    found, n = [], 0
    base = ll.Scenario(num_requests=4, input_len="fixed:64", output_len="fixed:8", latency="analytical",
                       num_gpu_blocks=300, max_model_len=4096, long_prefill_token_threshold=16,
                       reserve_full_isl=False, efficiency_file="fit.yaml").to_dict()
    fit = (SPECS / "efficiency.yaml").read_bytes()
    (tmp_path / "loop.yaml").symlink_to("loop.yaml")
    odd = {"LOOP": str(tmp_path / "loop.yaml"), "FIT/x": str(tmp_path / "fit.yaml" / "x")}
    put(tmp_path / "fit.yaml", fit)
    cases = [(f"{k}={v!r}", {**base, k: odd.get(v, v) if isinstance(v, str) else v}, fit)
             for k, edges in RUN_FLAG_EDGES.items() for v in WRONG + edges]
    cases += [(f"fit: {name}", base, content) for name, content in mutants(fit, ".yaml", "scenario fit", 25)]
    for name, scenario, content in cases:
        case = tmp_path / f"f{n}"
        put(case / "fit.yaml", content)
        put(case / "s.json", json.dumps(scenario).encode())
        out = case / "out.nc"
        outcome = check(name, ("s.json", "fit.yaml"), run_argv("run", "--scenario", case / "s.json", "--reference-dir",
                                                               ref, "--out", out, "-q"), out, capsys)
        found += [outcome] if outcome else []
        n += 1
    report("scenario files setting the run flags", n, found)


def test_grid_files(ref, tmp_path, capsys):
    """Grids read, expanded over a scenario and their first point run."""
    from llmss_lab.sweeps import expand, read_grid

    found, n = [], 0
    base = ll.Scenario(num_requests=4)
    grids = {"cartesian": b"tp: [1, 2]\nmax_num_seqs: [4, 64]\nrate: [2.0, 8.0]\n",
             "points": b"points:\n  - {instances: 2, router: round_robin}\n  - {prefill_instances: 1, instances: 2}\n",
             "run flags": b"num_gpu_blocks: [0, 300]\nmax_model_len: [0, 4096]\nlong_prefill_token_threshold: [0, 64]\n"
                          b"reserve_full_isl: [true, false]\n"}

    def first_point(path: Path) -> None:
        _, points = expand(base, read_grid(path), str(path), ref)
        ll.Scenario.from_dict(points[0], str(path)).run(ref)

    for label, raw in grids.items():
        for name, content in mutants(raw, ".yaml", label, 30):
            mutated = put(tmp_path / f"g{n}" / "grid.yaml", content)
            outcome = check(f"grid {label}: {name}", "grid.yaml", lambda: first_point(mutated), None, capsys)
            found += [outcome] if outcome else []
            n += 1
    report("grid files", n, found)


def test_results_files(ref, tmp_path, capsys):
    raw = ll.simulate(ref / GOOD_CLUSTER, TRACE, reference_dir=ref, num_requests=3).save(tmp_path / "r.nc").read_bytes()
    found, n = [], 0
    for name, content in byte_mutations(raw, random.Random(f"{SEED}:results"), cuts=12):
        mutated = put(tmp_path / f"r{n}" / "run.nc", content)
        outcome = check(f"results: {name}", "run.nc", run_argv("summary", mutated), None, capsys)
        found += [outcome] if outcome else []
        n += 1
    report("results files", n, found)


FIGURES = "ispass26/figures"


def test_figure_tables(ref, tmp_path, capsys):
    """The real measurements `llmss figure-data --compare` scores against (Figs 5-8), broken, scored against
    the artifact's own simulator output."""
    from llmss_lab.figures import latency_errors, memory_errors, power_errors, throughput_error

    found, n = [], 0
    for rel, score in (("figure_5/A6000/reference/MD_throughput.tsv", throughput_error),
                       ("figure_6/reference/server_power_tp1.tsv", power_errors),
                       ("figure_7/reference/SD+PC.tsv", memory_errors),
                       ("figure_8/reference/PDD_latency.tsv", latency_errors)):
        real = ref / FIGURES / rel
        sim = real.parent.parent / "parsed" / real.name.replace("server_", "")
        for name, content in mutants(real.read_bytes(), ".tsv", rel, 20):
            mutated = put(tmp_path / f"f{n}" / real.name, content)
            outcome = check(f"{rel}: {name}", str(mutated), lambda: score(sim, mutated) and None, None, capsys)
            found += [outcome] if outcome else []
            n += 1
    report("figure tables", n, found)


MEASUREMENT = "measurements/RTXPRO6000/Llama-3.1-8B"


def test_measurement_folders(ref, tmp_path, capsys):
    """``llmss validate`` on a copy of a real measurement with one file broken (a few cases: each replays 300
    requests)."""
    found, n = [], 0
    for rel, suffix, count in (("vllm/meta.json", ".json", 6), ("config.json", ".json", 4),
                               ("vllm/requests.jsonl", ".jsonl", 2)):
        raw = (ref / MEASUREMENT / rel).read_bytes()
        for name, content in mutants(raw, suffix, rel, count)[::2]:
            case = tmp_path / f"m{n}"
            shutil.copytree(ref / MEASUREMENT, case, ignore=shutil.ignore_patterns("outputs", "validation"))
            (case / rel).unlink()
            put(case / rel, content)
            outcome = check(f"{rel}: {name}", Path(rel).name, run_argv("validate", case, "--reference-dir", ref),
                            None, capsys)
            found += [outcome] if outcome else []
            n += 1
    report("measurement folders", n, found)


FLAGS = ["--max-num-seqs", "--max-num-batched-tokens", "--block-size", "--gpu-memory-utilization", "--num-gpu-blocks",
         "--long-prefill-token-threshold", "--max-model-len", "--rate", "--num-requests", "--input-len", "--output-len",
         "--seed", "--gate-skew", "--scheduler", "--router", "--eviction", "--expert-gate", "--kv-transfer",
         "--prefix-storage", "--prefix-sharing", "--latency", "--what-if", "--efficiency", "--workload"]


def test_command_line_values(ref, tmp_path, capsys):
    found, n = [], 0
    rng = random.Random(f"{SEED}:argv")
    for flag in FLAGS:
        for value in rng.sample(WRONG_CELLS, 4) + ["1e30", "-0"]:
            out = tmp_path / f"a{n}" / "out.nc"
            out.parent.mkdir()
            code = None

            def call() -> int:
                nonlocal code
                try:
                    code = main(["run", str(ref / GOOD_CLUSTER), "--reference-dir", str(ref), "--num-requests", "4",
                                 "--out", str(out), "-q", flag, value])
                except SystemExit as exc:   # argparse's own refusal
                    code = exc.code
                return code
            named = (flag, f"error: {value}: ") if flag in ("--workload", "--efficiency") else flag   # a path
            outcome = check(f"{flag} {value!r}", named, call, out, capsys)
            found += [outcome] if outcome else []
            n += 1
    report("command-line values", n, found)



def test_explorer_controls(ref, capsys):
    """Every control of the explorer set from code to values of the wrong type and out of range, then Run:
    a note under the status line or the run's status line, never an exception."""
    from llmss_lab.widgets import Explorer

    values = WRONG + [-1e9, 10 ** 9, "", " ", "../nowhere.json"]
    default = ll.Scenario(num_requests=4)
    ex = Explorer(ref, default)
    found, n = [], 0
    rng = random.Random(f"{SEED}:explorer")
    for i, name in enumerate(ex.controls):   # every other control's run: ~0.3 s each
        for value in rng.sample(values, 6):   # a Run after the last of them (a Run draws its plots: ~0.3 s)
            def call() -> None:
                try:
                    ex.controls[name].value = value
                except InputError as exc:   # the panel's own error is still an exception in the notebook
                    raise AssertionError(f"InputError: {exc}") from None
            outcome = check(f"explorer {name}={value!r}", "", call, None, capsys)
            found += [outcome] if outcome else []
            n += 1

        def run() -> None:   # run() says what went wrong in the status line; an internal error is a finding
            if ex.run() is None and "Internal error" in ex.status_text:
                raise AssertionError(ex.status_text)
        # a Run where a value was taken (the default scenario's run is the same every time); thousands of
        # requests, the most the box takes, are a long run that was asked for
        if ex.scenario() != default and ex.controls["num_requests"].value <= 100 and i % 2 == 0:
            outcome = check(f"explorer: Run after {name}={ex.controls[name].value!r}", "", run, None, capsys)
            found += [outcome] if outcome else []
            n += 1
        ex.set_scenario(default)
    report("explorer controls", n, found)


# ---- llmss sweep and llmss capacity: their own flags, grid files and --known sweep files ------------------

@pytest.fixture(scope="module")
def dask_address():
    """One local dask cluster for every sweep and capacity case that gets as far as running (one worker)."""
    from tests.conftest import local_dask_client

    pytest.importorskip("distributed")
    for client in local_dask_client(1):
        yield client.scheduler.address


SMALL = ll.Scenario(num_requests=3, max_num_seqs=8)
SWEEP_FLAGS = ["--slo-ttft-ms", "--slo-tpot-ms", "--slo-quantile", "--workers", "--dask-scheduler", "--grid", "--out"]
CAPACITY_FLAGS = ["--slo-ttft-ms", "--slo-tpot-ms", "--slo-quantile", "--rate-min", "--rate-max", "--rel-tol",
                  "--workers", "--dask-scheduler", "--grid", "--out", "--known"]
ODD_VALUES = WRONG_CELLS + ["1e30", "-0", "0.999", "1e-300", "tcp://127.0.0.1:1", "127.0.0.1", "tcp://:0", ".",
                            "x.csv", "x.nc", "/", "nowhere/x.nc"]


def _sweep_argv(command: str, case: Path, address: str, ref: Path, **flags: str) -> tuple[list[str], Path]:
    """A sweep or capacity search of SMALL that runs in a second or two on the shared cluster, ``flags``
    replacing its defaults (a flag's value None: left out); returns the argv and its --out."""
    scenario = SMALL.save(case / "scenario.json")
    grid = case / "grid.yaml"
    grid.write_text("max_num_seqs: [4, 8]\n")
    out = case / "out.nc"
    base = {"--grid": str(grid), "--out": str(out), "--dask-scheduler": address, "--slo-ttft-ms": "5000"}
    if command == "capacity":
        base |= {"--rate-min": "2", "--rate-max": "8", "--rel-tol": "1"}
    given = {**base, **flags}
    if "--workers" in flags:   # a local cluster of its own: only with no scheduler given
        given.pop("--dask-scheduler")
    argv = [command, str(scenario), "--reference-dir", str(ref), "-q"]
    for flag, value in given.items():
        if value is not None:
            argv += [f"{flag}={value}"] if value.startswith("-") else [flag, value]
    return argv, out


def _cli_case(argv: list[str]) -> Callable[[], int]:
    def call() -> int:
        try:
            return main(argv)
        except SystemExit as exc:   # argparse's own refusal
            return int(exc.code or 0)
    return call


def _check_command(case: str, named, argv: list[str], out: Path, capsys, whole_file: bool = False) -> Outcome | None:
    """``check`` for sweep and capacity: argparse names them ``llmss sweep: error:``; a sweep that ran but whose
    every point failed ends with status 1, each point's failure named (README), and keeps the file of its points.
    ``out`` is the case's default --out: nothing but it (or the --out given) may be left in its folder."""
    before = set(out.parent.iterdir())
    t0 = time.perf_counter()
    try:
        with alarm(CASE_BUDGET_S):
            code = _cli_case(argv)()
    except BaseException as exc:   # noqa: BLE001 - the finding
        capsys.readouterr()
        return Outcome(case, f"{type(exc).__name__}: {str(exc)[:300]}")
    said = capsys.readouterr()
    err = said.err
    took = time.perf_counter() - t0
    given = argv[argv.index("--out") + 1] if "--out" in argv else ""
    left = {p.name for p in set(out.parent.iterdir()) - before} - {out.name, Path(given).name}
    if left:
        return Outcome(case, f"left {sorted(left)} beside --out")
    if took > CASE_BUDGET_S / 2:
        return Outcome(case, f"took {took:.1f} s")
    if "Traceback" in err or "Traceback" in said.out:
        return Outcome(case, f"a traceback: {err.strip()[-300:]}")
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith("WARNING ")]   # logged
    names = (named,) if isinstance(named, str) else named
    wrong = next((ln for ln in lines if ln.startswith("failed: ") and not any(n in ln for n in names)), None)
    if wrong:   # the base scenario is good: what failed a point is this case's own input
        return Outcome(case, f"a failed point does not name {named}: {wrong}")
    if code in (0, 1) and (lines or code == 0) and all(ln.startswith("failed: ") for ln in lines):
        return None   # it ran: every point that failed (with 1, all of them) said why
    if lines and re.match(r"llmss (sweep|capacity): error: ", lines[-1]):   # argparse's: its usage, then one line
        lines = lines[-1:]
    if code != 2 or len(lines) != 1 or not re.match(r"llmss( sweep| capacity)?: error: ", lines[-1]):
        return Outcome(case, f"exit {code}: {err.strip()[-300:]}")
    if out.exists():   # the case's folder is its own and new: an --out in it is this case's
        return Outcome(case, "refused, but --out was written")
    if not any(n in lines[-1] for n in names):
        return Outcome(case, f"does not name {named}: {lines[-1]}")
    if not (whole_file or WHOLE_FILE.search(case)) and not WHERE.search(lines[-1].split("error: ", 1)[1]):
        return Outcome(case, f"names no key or line: {lines[-1]}")
    return None


@pytest.mark.parametrize("command,flags", [("sweep", SWEEP_FLAGS), ("capacity", CAPACITY_FLAGS)])
def test_sweep_and_capacity_command_values(command, flags, dask_address, ref, tmp_path, capsys):
    found, n = [], 0
    rng = random.Random(f"{SEED}:{command}-argv")
    for flag in flags:
        for value in rng.sample(ODD_VALUES, 7):
            case = tmp_path / f"v{n}"
            case.mkdir()
            if flag in ("--out", "--known", "--grid") and value.strip() and not value.startswith("/"):
                value = str(case / value)   # a path of the case's own, never beside the tests
            argv, out = _sweep_argv(command, case, dask_address, ref, **{flag: value})
            named = (flag, f"error: {value}", "error: command line", "error: slo") if value else flag
            outcome = _check_command(f"{command} {flag} {value!r}", named, argv, out, capsys,
                                     whole_file=flag in ("--out", "--known", "--grid"))   # the file is the flag's
            found += [outcome] if outcome else []
            n += 1
    report(f"{command} values", n, found)


GRIDS = {"cartesian": b"max_num_seqs: [4, 8]\nblock_size: [16]\nrouter: [round_robin]\n",
         "points": b"points:\n  - {instances: 2, router: round_robin}\n  - {max_num_seqs: 4}\n",
         "names": b"input_len: ['fixed:32', 'uniform:8:64']\nhardware: [RTXPRO6000]\ncluster_config: ['']\n",
         "memory": b"points:\n  - {npu_mem_gib: 96.0, gpu_memory_utilization: 0.9}\n  - {pim_device: '', tp: 1}\n"}


@pytest.mark.parametrize("command", ["sweep", "capacity"])
def test_grid_files_through_the_commands(command, dask_address, ref, tmp_path, capsys):
    """A grid broken the ways any YAML file can be, through `llmss sweep` and `llmss capacity` (read, checked
    against the scenario, expanded and, if it is still a grid, run)."""
    found, n = [], 0
    for label, raw in GRIDS.items():
        for name, content in mutants(raw, ".yaml", f"{command}-{label}", 20, whole_file=label != "names"):
            case = tmp_path / f"g{n}"
            case.mkdir()
            grid = put(case / "broken" / "grid.yaml", content)
            argv, out = _sweep_argv(command, case, dask_address, ref, **{"--grid": str(grid)})
            outcome = _check_command(f"{command} grid {label}: {name}", "grid.yaml", argv, out, capsys)
            found += [outcome] if outcome else []
            n += 1
    report(f"{command} grid files", n, found)


def test_known_sweep_files(dask_address, ref, tmp_path, capsys):
    """The sweep file `llmss capacity --known` reuses, broken on its way (cut, emptied, re-encoded, a folder)."""
    case = tmp_path / "made"
    case.mkdir()
    argv, out = _sweep_argv("sweep", case, dask_address, ref)
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    raw = out.read_bytes()
    found, n = [], 0
    for name, content in byte_mutations(raw, random.Random(f"{SEED}:known"), cuts=10):
        case = tmp_path / f"k{n}"
        case.mkdir()
        known = put(case / "sweep.nc", content)
        argv, out = _sweep_argv("capacity", case, dask_address, ref, **{"--known": str(known)})
        outcome = _check_command(f"--known: {name}", "sweep.nc", argv, out, capsys)
        found += [outcome] if outcome else []
        n += 1
    report("--known sweep files", n, found)
