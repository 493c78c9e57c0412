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
import urllib.request
from pathlib import Path
from typing import Callable, Iterable

from .errors import InputError

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


def resolve_reference_dir(explicit: str | Path | None = None) -> Path:
    """The reference root to read from, or an error that says how to get one."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_dir():
            raise InputError("reference folder does not exist", p, "--reference-dir")
        return p
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise InputError("reference folder does not exist", p, f"${ENV_VAR}")
        return p
    for p in [*_beside_checkout(), default_cache_dir()]:
        if (p / "configs").is_dir() or (p / "profiles").is_dir():
            return p
    raise InputError(
        "no reference data found: pass --reference-dir, set $LLMSS_REFERENCE_DIR, "
        "or run `llmss fetch-reference` to download the public files", "reference data")


class ReferenceLayout:
    """Paths inside a reference root, laid out as ``../shared/reference/llmservingsim``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def model_config(self, model_name: str) -> Path:
        """``configs/model/<name>.json``, or ``model_config/<name>.json`` in the paper artifact's layout."""
        tried = [self.root / "configs" / "model" / f"{model_name}.json", self.root / "model_config" / f"{model_name}.json"]
        for p in tried:
            if p.is_file():
                return p
        raise InputError(f"no model config for {model_name!r} (looked for {tried[0]} and {tried[1]})",
                         self.root, "model_name")

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


def fetch_reference(dest: str | Path | None = None, commit: str = PINNED_COMMIT,
                    progress: Callable[[Iterable], Iterable] | None = None,
                    opener: Callable[[str], bytes] | None = None) -> Path:
    """Download the public reference files at a pinned commit into ``dest`` (the user cache).

    Files already present are kept, so an interrupted fetch resumes. Each file is written to a
    temporary name and renamed, so a partial download never looks complete.
    """
    dest = Path(dest) if dest is not None else default_cache_dir()
    opener = opener or _http_get
    items = fetch_manifest()
    it = progress(items) if progress else items
    for upstream, local in it:
        target = dest / local
        if target.is_file():
            continue
        url = RAW_URL.format(repo=UPSTREAM, commit=commit, path=upstream)
        try:
            data = opener(url)
        except (urllib.error.URLError, OSError) as exc:
            raise InputError(f"download failed ({exc}); the machine may have no internet access. "
                             f"Point --reference-dir at a copy instead", url) from None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)
    log.info("reference data ready in %s", dest)
    return dest


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - fixed https host
        return resp.read()
