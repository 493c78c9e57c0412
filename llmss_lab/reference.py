"""Where reference data (profiles, model configs, workloads, measurements) comes from.

Order: an explicit ``--reference-dir``; else ``$LLMSS_REFERENCE_DIR``; else
``../shared/reference/llmservingsim`` beside the checkout (or the working directory); else the
per-user cache that ``llmss fetch-reference`` fills from the public LLMServingSim repository at a
pinned commit. The files are read in place; nothing is copied into the project.
"""
from __future__ import annotations

import logging
import os
import urllib.error
from pathlib import Path
from typing import Callable, Iterable

from .config.reader import as_path, closest
from .errors import InputError, LlmssError
from .files import absent, check_writable_folder, kind_of, reachable, write_bytes
from .instruments import raw_paths

log = logging.getLogger(__name__)

ENV_VAR = "LLMSS_REFERENCE_DIR"
UPSTREAM = "casys-kaist/LLMServingSim"
PINNED_COMMIT = "5daddb21a545658d5150b535712d0494584b5278"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmss_lab" / "reference" / PINNED_COMMIT[:7]


def _beside_checkout() -> list[Path]:
    here = Path(__file__).resolve().parent.parent
    return [here.parent / "shared" / "reference" / "llmservingsim",
            Path.cwd().parent / "shared" / "reference" / "llmservingsim"]


# Folders a reference root holds (the bench layout, the paper artifact's, or both): one is enough.
ROOT_MARKERS = ("configs", "profiles", "workloads", "measurements", "ispass26", "model_config", "figures")


def reference_key(explicit: str | Path | None = None) -> str:
    """How the user named the reference folder, for an error to point at: the ``reference_dir`` argument
    (``--reference-dir`` on the command line), the environment variable, or neither (found by itself)."""
    if explicit is not None:
        return "reference_dir"
    return f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "reference data"


def resolve_reference_dir(explicit: str | Path | None = None) -> Path:
    """The reference root to read from, or an error that says how to get one."""
    key = reference_key(explicit)
    if explicit is not None:
        p = as_path(explicit, key, "reference data").expanduser()
    elif os.environ.get(ENV_VAR):
        p = Path(os.environ[ENV_VAR]).expanduser()
    else:
        looked = list(dict.fromkeys([*_beside_checkout(), default_cache_dir()]))
        for p in looked:
            if _is_root(p):
                return p
        raise InputError(   # where it looked: data a folder off is then seen at a glance
            f"no reference data found (looked in {', '.join(map(str, looked))}): pass --reference-dir, set "
            "$LLMSS_REFERENCE_DIR, or run `llmss fetch-reference` to download the public files", "reference data")
    if why := absent(p, "reference folder"):
        raise InputError(why, p, key)
    if not p.is_dir():
        raise InputError(f"is {'a file' if p.is_file() else kind_of(p)}, not the reference folder", p, key)
    if not _is_root(p):
        for m in ROOT_MARKERS:   # closed to the user, it answers "no such folder" from Python 3.13: named instead
            reachable(p / m)
        near = [c for c in (p / "llmservingsim", p / "reference" / "llmservingsim", p.parent) if _is_root(c)]
        hint = f"; did you mean {near[0]}?" if near else ""
        raise InputError(f"not a reference folder: it holds none of {', '.join(m + '/' for m in ROOT_MARKERS)} "
                         f"(the layout of ../shared/reference/llmservingsim or of its ispass26/){hint}; "
                         "`llmss fetch-reference` downloads one (with --artifact, the paper's too)", p, key)
    return p


def _is_root(p: Path) -> bool:
    return any((p / m).is_dir() for m in ROOT_MARKERS)


BENCH_FOLDERS = ("configs", "workloads", "measurements")


def bench_root(root: str | Path) -> Path:
    """The reference root of the bench layout (configs/, workloads/, measurements/): ``root`` itself, or its
    parent when ``root`` is the paper artifact inside it (``llmservingsim/ispass26``), so either level serves
    the bench commands as either serves the paper figures."""
    root = Path(root)
    if not any((root / d).is_dir() for d in BENCH_FOLDERS) and any((root.parent / d).is_dir() for d in BENCH_FOLDERS):
        return root.parent
    return root


def protected_root(explicit: str | Path | None = None) -> Path | None:
    """The reference data no save may write into: the root a run would read (the whole root when named by its
    ispass26/, whose parent the bench commands read), absolute, or None where none is found. Folders only are
    looked at: nothing is fetched."""
    try:
        return bench_root(resolve_reference_dir(explicit)).absolute()
    except LlmssError:   # no root: nothing to keep out of (what reads one says so itself)
        return None


class ReferenceLayout:
    """Paths inside a reference root, laid out as ``../shared/reference/llmservingsim``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def model_config(self, model_name: str) -> Path:
        """``configs/model/<name>.json``, or ``model_config/<name>.json`` in the paper artifact's layout."""
        tried = [self.root / "configs" / "model" / f"{model_name}.json", self.root / "model_config" / f"{model_name}.json"]
        for p in tried:
            if reachable(p).is_file():
                return p
        known = [str(q.relative_to(d).with_suffix("")) for d in (p.parent.parent for p in tried)
                 if d.is_dir() for q in d.glob("*/*.json")]
        near = closest(model_name, known)
        raise InputError(f"no model config for {model_name!r} (looked for {tried[0]} and {tried[1]})"
                         + (f"; did you mean {near!r}?" if near else ""), self.root, "model_name")

    def profile_dir(self, hardware: str, model_name: str, variant: str = "bf16") -> Path:
        """The profile of a (hardware, model): a current-format bundle ``<model>/<variant>/`` or,
        in the paper artifact's format, the model folder holding ``tpN/layers.csv``."""
        model_dir = self.root / "profiles" / hardware / model_name
        p = model_dir / variant
        if p.is_dir():
            return p
        if any((d / "layers.csv").is_file() for d in model_dir.glob("tp*")):
            return model_dir
        have = sorted(d.name for d in (self.root / "profiles").glob("*") if d.is_dir())
        raise InputError(f"no profile for hardware {hardware!r}, model {model_name!r}, "
                         f"variant {variant!r} (looked for {p}; hardware with profiles: {have})",
                         self.root, "hardware")

    def pim_dirs(self) -> list[Path]:
        """Folders of PIM device INIs: ``configs/pim`` or the paper artifact's ``pim_config``."""
        return [self.root / "configs" / "pim", self.root / "pim_config"]

    def resolve(self, relative: str | Path) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p

    def find(self, path: str | Path) -> Path:
        """A user's file: ``path`` as given (relative to the working directory), else under the reference
        root. One found in neither place is named with both, as the user may have meant either."""
        p = Path(path)
        if p.is_absolute() or absent(p) != "file does not exist":
            return p     # what reads it names a missing absolute path, a folder or a loop of links itself
        if not absent(self.resolve(p)):
            return self.resolve(p)
        raise InputError(f"file does not exist (looked in the current directory, {Path.cwd() / p}, and in the "
                         f"reference folder, {self.resolve(p)})", p)


# What `llmss fetch-reference` downloads: upstream path -> path under the cache root.
_MODELS = ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-70B", "Qwen/Qwen3-32B",
           "Qwen/Qwen3-30B-A3B-Instruct-2507", "mistralai/Mixtral-8x7B-v0.1", "microsoft/Phi-mini-MoE-instruct")
_BUNDLES = {"RTXPRO6000": ("meta-llama/Llama-3.1-8B", "Qwen/Qwen3-32B", "Qwen/Qwen3-30B-A3B-Instruct-2507")}
_BUNDLE_FILES = ("dense.csv", "per_sequence.csv", "attention.csv", "skew_fit.csv")
_MEASUREMENTS = ("RTXPRO6000/Llama-3.1-8B", "RTXPRO6000/Qwen3-32B")
_WORKLOADS = ("sharegpt-llama-3.1-8b-300-sps10.jsonl", "sharegpt-qwen3-32b-300-sps10.jsonl",
              "sharegpt-qwen3-30b-a3b-300-sps10.jsonl", "example_trace.jsonl")
_CLUSTERS = ("single_node_single_instance.json",)


def fetch_manifest() -> list[tuple[str, str]]:
    files: list[tuple[str, str]] = []
    for m in _MODELS:
        files.append((f"configs/model/{m}.json", f"configs/model/{m}.json"))
    for c in _CLUSTERS:
        files.append((f"configs/cluster/{c}", f"configs/cluster/{c}"))
    for hw, models in _BUNDLES.items():
        for m in models:
            base = f"{hw}/{m}/bf16"
            files.append((f"profiler/perf/{base}/meta.yaml", f"profiles/{base}/meta.yaml"))
            for tp in ("tp1", "tp2"):
                for f in _BUNDLE_FILES:
                    files.append((f"profiler/perf/{base}/{tp}/{f}", f"profiles/{base}/{tp}/{f}"))
            if "A3B" in m:
                files.append((f"profiler/perf/{base}/tp1/moe.csv", f"profiles/{base}/tp1/moe.csv"))
    for case in _MEASUREMENTS:
        for f in ("config.json", "vllm/meta.json", "vllm/requests.jsonl", "vllm/timeseries.csv"):
            files.append((f"bench/examples/{case}/{f}", f"measurements/{case}/{f}"))
    for w in _WORKLOADS:
        files.append((f"workloads/{w}", f"workloads/{w}"))
    return files


# The paper's artifact (branch ispass26-artifact): what the paper notebooks read, laid out under
# ``ispass26/`` as in ``../shared/reference``. Figure files live under ``evaluation/artifacts/figure_N``
# (with ``evaluation/figure_N`` as a second place to look), profiles under ``llm_profile/perf_models``.
ARTIFACT_REF = "ispass26-artifact"
_FIGURE_FILES = {
    5: [f"{hw}/{kind}/{sc}_{suffix}" for hw in ("A6000", "H100") for sc in ("MD", "SD+PC", "PDD", "SM")
        for kind, suffix in (("config", "config.json"), ("reference", "throughput.tsv"), ("parsed", "throughput.tsv"))]
       + ["figure_5_ref.pdf"],
    6: [f"config/power_config_tp{t}.json" for t in (1, 2)] + [f"reference/server_power_tp{t}.tsv" for t in (1, 2)]
       + [f"parsed/power_tp{t}.tsv" for t in (1, 2)] + ["parsed/component_energy.tsv"]
       + [f"figure_6{x}_ref.pdf" for x in "abc"],
    7: [f"config/{sc}_config.json" for sc in ("SD+PC", "MD+PC+PS")]
       + [f"{kind}/{nm}.tsv" for kind in ("reference", "parsed")
          for nm in ("SD+PC", "MD+PC+PS_inst0", "MD+PC+PS_inst1", "MD+PC+PS_shared_cpu")] + ["figure_7_ref.pdf"]
       + [f"raw_data/{p}" for p in raw_paths()],
    8: [f"config/{sc}_config.json" for sc in ("SD", "MD", "PDD", "SM")]
       + [f"{kind}/{sc}_{what}.tsv" for kind in ("reference", "parsed") for sc in ("SD", "MD", "PDD", "SM")
          for what in ("latency", "sim_time")] + [f"figure_8{x}_ref.pdf" for x in "ab"],
    9: ["config/SD_config.json"] + [f"{kind}/SD_{what}.tsv" for kind in ("reference", "parsed")
                                    for what in ("latency", "throughput")] + [f"figure_9{x}_ref.pdf" for x in "ab"],
    10: [f"config/{c}_config.json" for c in ("gpu_only", "pim")]
        + [f"parsed/{v}_b256_throughput.tsv" for v in ("gpu_only", "pim", "pim_sbi")]
        + ["parsed/component_energy.tsv", "parsed/energy_per_token.tsv", "figure_10_ref.pdf"],
}
_ARTIFACT_DATASETS = ("sharegpt_req300_rate10_llama.jsonl", "sharegpt_req300_rate10_phi.jsonl",
                      "sharegpt_req300_rate10_mixtral.jsonl", "sharegpt_pulse_req10_n3_delay60.jsonl",
                      "sharegpt_pulse_req50_n6_delay15_pc.jsonl", "fixed_in128_out512_req256_rate10.jsonl")
_ARTIFACT_MODELS = ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-70B", "microsoft/Phi-mini-MoE-instruct",
                    "mistralai/Mixtral-8x7B-v0.1")
_ARTIFACT_PROFILES = ("A6000/meta-llama/Llama-3.1-8B/tp1", "A6000/meta-llama/Llama-3.1-8B/tp2",
                      "A6000/microsoft/Phi-mini-MoE-instruct/tp1", "H100/meta-llama/Llama-3.1-70B/tp4",
                      "H100/mistralai/Mixtral-8x7B-v0.1/tp4", "TPU-v6e-1/meta-llama/Llama-3.1-8B/tp1")
_LEGACY_FILES = ("layers.csv", "attention.csv", "predictions/attn_prefill_predictions.csv",
                 "predictions/attn_decode_predictions.csv")


def artifact_manifest() -> list[tuple[tuple[str, ...], str]]:
    """(upstream paths to try in order, local path) of the paper artifact's files the figures read."""
    files: list[tuple[tuple[str, ...], str]] = []
    for n, rels in _FIGURE_FILES.items():
        for rel in rels:
            files.append(((f"evaluation/artifacts/figure_{n}/{rel}", f"evaluation/figure_{n}/{rel}"),
                          f"ispass26/figures/figure_{n}/{rel}"))
    files += [((f"dataset/{d}",), f"ispass26/dataset/{d}") for d in _ARTIFACT_DATASETS]
    files += [((f"model_config/{m}.json",), f"ispass26/model_config/{m}.json") for m in _ARTIFACT_MODELS]
    files.append((("pim_config/HBM2_1GB_2000_pim.ini",), "ispass26/pim_config/HBM2_1GB_2000_pim.ini"))
    files += [((f"llm_profile/perf_models/{p}/{f}",), f"ispass26/profiles/{p}/{f}")
              for p in _ARTIFACT_PROFILES for f in _LEGACY_FILES]
    return files


def fetch_reference(dest: str | Path | None = None, commit: str = PINNED_COMMIT,
                    progress: Callable[[Iterable], Iterable] | None = None,
                    opener: Callable[[str], bytes] | None = None, artifact: bool = False) -> Path:
    """Download the public reference files at a pinned commit into ``dest`` (the user cache); with
    ``artifact``, also the paper artifact's files (branch ``ispass26-artifact``) under ``dest/ispass26``.

    Files already present are kept, so an interrupted fetch resumes. Each file is written to a
    temporary name and renamed, so a partial download never looks complete.
    """
    if dest is not None:
        dest = as_path(dest, "--dest", "fetch-reference")
        inside = next((p for p in Path(os.path.realpath(dest)).parents if _is_root(p)), None)
        if inside is not None and (os.path.isdir(dest) or not os.path.lexists(dest)):   # a file there: "not a
            # folder" below; checked before the folder is made, as a nested copy would land in the data
            raise InputError(f"is inside the reference data ({inside}), whose folders it would add to; fetch into "
                             "a folder of its own (or into that root itself, to complete it)", dest, "--dest")
        dest = check_writable_folder(dest, "--dest")
    else:      # checked before the first download, naming where the folder comes from
        dest = check_writable_folder(default_cache_dir(), "the default cache ($XDG_CACHE_HOME or ~/.cache; "
                                                          "pass --dest to choose another)")
    opener = opener or _http_get
    items = [((u,), local, commit) for u, local in fetch_manifest()]
    if artifact:
        items += [(ups, local, ARTIFACT_REF) for ups, local in artifact_manifest()]
    it = progress(items) if progress else items
    for upstreams, local, ref in it:
        target = dest / local
        if target.is_file():
            continue
        data = _download([RAW_URL.format(repo=UPSTREAM, commit=ref, path=u) for u in upstreams], opener)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(target, data)
    log.info("reference data ready in %s", dest)
    return dest


def _download(urls: list[str], opener: Callable[[str], bytes]) -> bytes:
    """The first of ``urls`` that exists; a 404 moves on to the next, any other failure stops."""
    for url in urls:
        try:
            return opener(url)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise InputError(f"download failed ({exc})", url) from None
        except (urllib.error.URLError, OSError) as exc:
            raise InputError(f"download failed ({exc}); the machine may have no internet access. "
                             f"Point --reference-dir at a copy instead", url) from None
    raise InputError(f"not found upstream (tried {len(urls)} places)", urls[0])


def _http_get(url: str) -> bytes:
    import urllib.request   # here: its http.client and ssl (~50 ms) would load with every run, which never downloads

    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - fixed https host
        return resp.read()
