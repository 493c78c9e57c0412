"""Workloads: LLMServingSim JSONL traces and seeded synthetic generators.

A :class:`Workload` is a finite, arrival-sorted list of requests held as numpy arrays, with the
token ids of each prompt (and of the output, when the trace gives them) for prefix caching.
"""
from __future__ import annotations

import functools
import json
import stat
from dataclasses import InitVar, dataclass, field, replace
from itertools import compress, count, repeat
from operator import is_not
from pathlib import Path
from typing import Sequence

import numpy as np

from .config.reader import Section, DuplicateKey, unique_keys, as_path, as_whole, is_real, read_text
from .errors import InputError

TRACE_KEYS = {"input_toks", "output_toks", "arrival_time_ns", "input_tok_ids", "output_tok_ids",
              "session_id", "sub_requests"}
MAX_TOKENS = 10_000_000  # a sanity bound that catches unit slips (e.g. bytes for tokens)
MAX_ARRIVAL_NS = 30 * 86_400 * 10**9   # 30 days: results keep per-second series, so a longer span is a slip
MAX_REQUESTS = 10_000_000              # synthetic workloads: beyond this the arrays alone take gigabytes
MAX_CV = 10.0        # gamma arrivals: beyond this a handful of huge gaps hold nearly all the time
REGULAR_CV = 1e-12   # below this gaps vary by under a trillionth: regular arrivals (far below, 1/cv**2 overflows)
MAX_VOCAB = 2**31    # token ids of real tokenizers fit 32 bits (the largest vocabularies hold ~256k)
MAX_PREFIXES = 10**12  # any count above num_requests acts alike (each request picks one); keeps it an int64
EAGER_PREFIX_TOKENS = 2**22  # prefix tokens drawn up front, as before, so seeded workloads stay the same


def _token_ids_ok(ids: list | tuple | np.ndarray) -> bool:
    a = np.asarray(ids)
    return a.ndim == 1 and a.dtype.kind in "iu" and (a.size == 0 or int(a.min()) >= 0)


@dataclass
class Workload:
    """Requests to serve: arrival times (ns, sorted), prompt and output lengths, and token ids where prefix
    caching needs them. ``load_trace`` reads one, ``synthetic`` generates one; bad values are named on building."""

    arrival_ns: np.ndarray          # int64, sorted
    input_toks: np.ndarray          # int64 >= 1
    output_toks: np.ndarray         # int64 >= 1
    token_ids: list[list[int] | None] = field(default_factory=list)  # prompt (+output) ids or None
    name: str = "workload"
    lines: list[int] | None = None  # trace line of each request, for error messages
    # the ids are known to be whole numbers (read from a trace, drawn here, or taken from a checked workload):
    # checking them again costs 10-20 ms a run for long shared prefixes
    ids_checked: InitVar[bool] = False

    def where(self, i: int) -> str:
        return f"line {self.lines[i]}" if self.lines is not None else f"request {i}"

    def copy(self) -> Workload:
        """Fresh arrays and lists; each request's token ids are shared (nothing changes them)."""
        return replace(self, arrival_ns=self.arrival_ns.copy(), input_toks=self.input_toks.copy(),
                       output_toks=self.output_toks.copy(), token_ids=list(self.token_ids),
                       lines=None if self.lines is None else list(self.lines), ids_checked=True)

    def __post_init__(self, ids_checked: bool = False) -> None:
        self.arrival_ns = _whole_array(self.arrival_ns, "arrival_ns", self.name, 0, MAX_ARRIVAL_NS, rounding=True)
        self.input_toks = _whole_array(self.input_toks, "input_toks", self.name, 1, MAX_TOKENS)
        self.output_toks = _whole_array(self.output_toks, "output_toks", self.name, 1, MAX_TOKENS)
        n = len(self.arrival_ns)
        if self.token_ids is None or (isinstance(self.token_ids, (list, tuple)) and not self.token_ids):
            self.token_ids = [None] * n
        if not isinstance(self.token_ids, (list, tuple)):
            raise InputError(f"expected a list with the token ids (or None) of each request, got "
                             f"{type(self.token_ids).__name__}", self.name, "token_ids")
        if not (len(self.input_toks) == len(self.output_toks) == len(self.token_ids) == n):
            raise InputError("arrays of different lengths", self.name)
        if n == 0:
            raise InputError("the workload has no requests", self.name)
        self._check_token_ids(ids_checked)
        late = np.flatnonzero(np.diff(self.arrival_ns) < 0)
        if len(late):
            raise InputError("arrival times must be sorted", self.name, f"arrival_ns[{late[0] + 1}]")

    def _check_token_ids(self, ids_checked: bool) -> None:
        """Each request's ids cover its prompt, or its prompt and output, as a trace's do: the kernel hashes
        the ids into prefix-cache blocks, so a short or long list would give silently wrong cache hits."""
        for i in compress(count(), map(is_not, self.token_ids, repeat(None))):   # fast over a list of Nones
            ids = self.token_ids[i]
            where = self.where(i) if self.lines is not None else f"token_ids[{i}]"
            if not isinstance(ids, (list, tuple, np.ndarray)) or (isinstance(ids, np.ndarray) and ids.ndim != 1):
                raise InputError(f"expected a flat list of token ids or None, got {type(ids).__name__}",
                                 self.name, where)
            if not ids_checked and not _token_ids_ok(ids):
                raise InputError(f"token ids are whole numbers >= 0, got {ids[:8]!r}", self.name, where)
            n_in, n_out = int(self.input_toks[i]), int(self.output_toks[i])
            if len(ids) not in (n_in, n_in + n_out):
                raise InputError(f"has {len(ids)} token ids, but input_toks[{i}] is {n_in}: give the ids of the "
                                 f"prompt ({n_in}) or of the prompt and the output ({n_in + n_out})", self.name, where)

    def __len__(self) -> int:
        return len(self.arrival_ns)

    def head(self, n: int) -> Workload:
        """The first ``n`` requests (what ``--num-reqs`` selects)."""
        if as_whole(n) is None or n < 1:
            raise InputError(f"must be a whole number >= 1, got {n!r}", self.name, "head")
        n = int(n)
        return Workload(self.arrival_ns[:n], self.input_toks[:n], self.output_toks[:n],
                        self.token_ids[:n], self.name, None if self.lines is None else self.lines[:n], ids_checked=True)

    def sent_one_late(self) -> Workload:
        """The trace as a client that sleeps *after* each send delivers it: request ``i`` leaves at
        the trace time of request ``i - 1`` (the first keeps its own). A pause in the trace then
        comes one request late, so a burst takes in the first request of the next one; the real
        runs of the paper's Figs 6 and 7 were fed this way (README, "Paper figures")."""
        arrival = np.concatenate((self.arrival_ns[:1], self.arrival_ns[:-1]))
        return Workload(arrival, self.input_toks, self.output_toks, self.token_ids, self.name, self.lines,
                        ids_checked=True)

    def describe(self) -> dict:
        return {"requests": len(self), "input_mean": float(self.input_toks.mean()),
                "output_mean": float(self.output_toks.mean()),
                "duration_s": float((self.arrival_ns[-1] - self.arrival_ns[0]) / 1e9)}


def _whole_array(values: object, key: str, name: str, low: int, high: int, rounding: bool = False) -> np.ndarray:
    """``values`` as int64, or an error that names the first entry that is not a whole number from ``low`` to
    ``high`` (numpy alone would truncate 1.5 to 1, take True as 1, or fail on NaN or text with a bare error).
    ``rounding`` takes fractional values (nanoseconds from seconds x 1e9) to the nearest whole number."""
    try:
        a = np.asarray(values)
    except (TypeError, ValueError):   # ragged nesting
        raise InputError("expected a flat list of numbers", name, key) from None
    if a.ndim != 1:
        raise InputError(f"expected a flat list of numbers, got an array of shape {a.shape}", name, key)
    if isinstance(values, (list, tuple)) and (a.dtype.kind not in "iuf" or any(type(x) is bool for x in values)):
        a = np.array(values, dtype=object)   # as given: numpy made [1, ""] text and [1, True] the numbers 1, 1
    if a.dtype.kind in "iu":
        ok = (a >= low) & (a <= high)
    elif a.dtype.kind == "f":
        ok = np.isfinite(a) & (a == np.round(a) if not rounding else True) & (a >= low) & (a <= high)
    else:   # booleans, text, None, a mix: one by one
        ok = np.array([(is_real(x) if rounding else as_whole(x) is not None) and low <= x <= high
                       for x in a.tolist()], bool)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        x = a[i].item() if isinstance(a[i], np.generic) else a[i]
        what = "a whole number" if key != "arrival_ns" else "a time in ns"
        raise InputError(f"expected {what} from {low} to {high:,}, got {x!r}", name, f"{key}[{i}]")
    return a.astype(np.int64) if a.dtype.kind in "iu" else np.round(a.astype(np.float64)).astype(np.int64)


def _int_field(obj: dict, key: str, path: Path, lineno: int, minimum: int, required: bool = True) -> int | None:
    if key not in obj:
        if required:
            raise InputError(f"missing required key {key!r}", path, f"line {lineno}")
        return None
    v = obj[key]
    if isinstance(v, float) and v.is_integer():   # 1e9 or 10.0, as pandas and numpy often write them
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"{key} must be a whole number, got {v!r}", path, f"line {lineno}")
    limit = MAX_TOKENS if key != "arrival_time_ns" else MAX_ARRIVAL_NS
    if v < minimum or v > limit:
        raise InputError(f"{key} out of range: {v} (allowed {minimum} to {limit:.3g}"
                         f"{' ns, 30 days' if key == 'arrival_time_ns' else ''})", path, f"line {lineno}")
    return v


def _ids(obj: dict, key: str, expected: int, path: Path, lineno: int) -> list[int] | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, list) or not set(map(type, v)) <= {int}:   # JSON whole numbers (not bools)
        raise InputError(f"{key} must be a list of whole numbers", path, f"line {lineno}")
    if v and min(v) < 0:
        raise InputError(f"{key} holds a negative token id ({min(v)})", path, f"line {lineno}")
    if len(v) != expected:
        raise InputError(f"{key} has {len(v)} ids but the count says {expected}", path, f"line {lineno}")
    return v


def _session_id(obj: dict, path: Path, lineno: int) -> None:
    """LLMServingSim names an agentic session (a line with ``sub_requests``) with a string ``session_id``; on a
    plain request it plays no part there, nor here. Its type is checked all the same, as every other key's: a
    list or a number was accepted and ignored, hiding a trace writer's slip. JSON null stands for no id, as for
    the token ids."""
    v = obj.get("session_id")
    if v is not None and not isinstance(v, str):
        raise InputError(f"session_id must be a string (the session's name), got {v!r}", path, f"line {lineno}")


def load_trace(path: str | Path, num_requests: int | None = None) -> Workload:
    """Read an LLMServingSim JSONL trace (its first ``num_requests`` requests; None: all of them); every problem
    names the file and line."""
    path = as_path(path, "workload")
    if num_requests is not None:
        n = as_whole(num_requests)
        if n is None or n < 1:
            raise InputError(f"must be a whole number >= 1 (or None for the whole trace), got {num_requests!r}",
                             "argument", "num_requests")
        num_requests = n
    try:
        st = path.stat()
        fresh = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino) if stat.S_ISREG(st.st_mode) else None
    except OSError:
        fresh = None
    if fresh is None:    # missing, a pipe, a device: the reader names what is wrong
        return _parse_trace(path, num_requests)
    return _parsed_trace(fresh, path, num_requests).copy()


@functools.lru_cache(maxsize=8)
def _parsed_trace(fresh: tuple, path: Path, num_requests: int | None) -> Workload:
    """A trace parsed once per (file, size, modification time): the explorer and sweeps rerun the same one,
    and parsing a 300-request trace takes ~50 ms, a quarter of its run."""
    return _parse_trace(path, num_requests)


def _one_document_hint(text: str, lineno: int) -> str:
    """A JSON file spread over lines (a cluster config or a scenario) given as a trace: say what it is."""
    if lineno != 1:
        return ""
    try:
        json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return ""
    return ("; the file is one JSON document over several lines (a cluster config or a scenario?), where a trace "
            "holds one request object per line")


def _parse_trace(path: Path, num_requests: int | None) -> Workload:
    text = read_text(path)
    arrivals, ins, outs, ids, lines = [], [], [], [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if num_requests is not None and len(arrivals) >= num_requests:
            break
        try:
            obj = json.loads(line, object_pairs_hook=unique_keys)   # json alone keeps the last of two equal keys
        except json.JSONDecodeError as exc:
            raise InputError(f"malformed JSON: {exc.msg}{_one_document_hint(text, lineno)}", path,
                             f"line {lineno}") from None
        except RecursionError:
            raise InputError("nested too deeply to read", path, f"line {lineno}") from None
        except DuplicateKey as exc:
            raise InputError(f"key {str(exc)!r} given twice in one object", path, f"line {lineno}") from None
        if not isinstance(obj, dict):
            raise InputError("expected a JSON object per line", path, f"line {lineno}")
        unknown = sorted(set(obj) - TRACE_KEYS)
        if unknown:
            raise InputError(f"unknown key {unknown[0]!r}", path, f"line {lineno}")
        if "sub_requests" in obj:
            raise InputError("agentic sessions (sub_requests) are not supported yet", path, f"line {lineno}")
        n_in = _int_field(obj, "input_toks", path, lineno, 1)
        n_out = _int_field(obj, "output_toks", path, lineno, 1)
        t = _int_field(obj, "arrival_time_ns", path, lineno, 0)
        if arrivals and t < arrivals[-1]:
            raise InputError(f"arrival_time_ns {t} is earlier than the previous request's "
                             f"{arrivals[-1]}; sort the trace by arrival", path, f"line {lineno}")
        in_ids = _ids(obj, "input_tok_ids", n_in, path, lineno)
        out_ids = _ids(obj, "output_tok_ids", n_out, path, lineno)
        _session_id(obj, path, lineno)
        arrivals.append(t)
        lines.append(lineno)
        ins.append(n_in)
        outs.append(n_out)
        ids.append(None if in_ids is None else (in_ids + out_ids if out_ids is not None else in_ids))
    if not arrivals:
        raise InputError("the trace has no requests", path)
    return Workload(np.array(arrivals), np.array(ins), np.array(outs), ids, name=str(path), lines=lines,
                    ids_checked=True)


# ---- synthetic workloads --------------------------------------------------------------------------

@dataclass(frozen=True)
class LengthDist:
    """A token-length distribution: ``fixed``, ``uniform``, ``lognormal`` or ``sharegpt``.

    ``sharegpt`` is a lognormal whose median and spread match the bundled ShareGPT traces
    (prompt median ~730 tokens, output median ~630, clipped to their observed ranges).
    """

    kind: str = "fixed"
    a: float = 128
    b: float = 0.0
    low: int = 1
    high: int = 32768

    def __post_init__(self) -> None:
        """One built in Python is held to what ``parse`` takes (a NaN median or a list gave numpy's own errors)."""
        where = "length distribution"
        if self.kind not in ("fixed", "uniform", "lognormal"):
            raise InputError(f"must be 'fixed', 'uniform' or 'lognormal', got {self.kind!r}", where, "kind")
        args = Section({"a": self.a, "b": self.b, "low": self.low, "high": self.high}, where)
        low = args.integer("low", minimum=1)
        high = args.integer("high", minimum=low, maximum=MAX_TOKENS)
        if self.kind == "lognormal":
            args.number("a", minimum=1, maximum=high)
            args.number("b", minimum=0, maximum=5)
        else:
            a = args.integer("a", minimum=low, maximum=high)
            if self.kind == "uniform":
                args.integer("b", minimum=a, maximum=high)

    @classmethod
    def parse(cls, text: str, role: str = "input") -> LengthDist:
        """``"fixed:128"``, ``"uniform:100:1000"``, ``"lognormal:MEDIAN:SIGMA"``, ``"sharegpt"``."""
        top = cls.high
        forms = (f"use fixed:N, uniform:LO:HI (whole numbers from 1 to {top}), lognormal:MEDIAN:SIGMA (median 1 to "
                 f"{top}, sigma 0 to 5) or sharegpt")
        parts = str(text).split(":")
        kind = parts[0]
        try:
            nums = [float(p) for p in parts[1:]]
        except ValueError:
            raise InputError(f"bad length distribution {text!r}; {forms}", "argument", role) from None
        whole = all(n.is_integer() and 1 <= n <= top for n in nums)   # False for nan and inf
        if kind == "fixed" and len(nums) == 1 and whole:
            return cls("fixed", nums[0])
        if kind == "uniform" and len(nums) == 2 and whole and nums[0] <= nums[1]:
            return cls("uniform", nums[0], nums[1])
        if kind == "lognormal" and len(nums) == 2 and 1 <= nums[0] <= top and 0 <= nums[1] <= 5:
            return cls("lognormal", nums[0], nums[1])
        if kind == "sharegpt" and not nums:
            return cls("lognormal", 730, 0.55, 256, 4096) if role == "input" else cls("lognormal", 630, 0.2, 512, 1024)
        raise InputError(f"bad length distribution {text!r}; {forms}", "argument", role)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "fixed":
            x = np.full(n, self.a)
        elif self.kind == "uniform":
            x = rng.integers(int(self.a), int(self.b) + 1, size=n)
        else:
            x = rng.lognormal(np.log(self.a), self.b, size=n)
        return np.clip(np.round(x), max(1, self.low), self.high).astype(np.int64)


def check_generator(num_requests: int, rate: float, arrival: str, cv: float, seed: int, shared_prefix_len: int,
                    num_prefixes: int, vocab_size: int = 32000) -> tuple[int, float, float, int, int, int, int]:
    """:func:`synthetic`'s arguments (but the length distributions) checked, as plain numbers; a scenario checks
    its generator's fields with it when it is loaded, not when it runs."""
    args = Section({"num_requests": num_requests, "rate": rate, "cv": cv, "seed": seed, "vocab_size": vocab_size,
                    "shared_prefix_len": shared_prefix_len, "num_prefixes": num_prefixes}, "argument")
    num_requests = args.integer("num_requests", minimum=1, maximum=MAX_REQUESTS)
    rate, cv = float(args.number("rate", positive=True)), float(args.number("cv", minimum=0, maximum=MAX_CV))
    seed = args.integer("seed", minimum=0)
    shared_prefix_len = args.integer("shared_prefix_len", minimum=0, maximum=MAX_TOKENS - 1)
    num_prefixes = args.integer("num_prefixes", minimum=1, maximum=MAX_PREFIXES)
    vocab_size = args.integer("vocab_size", minimum=1, maximum=MAX_VOCAB)
    if num_requests / rate > MAX_ARRIVAL_NS / 1e9:
        raise InputError(f"{num_requests} requests at {rate} req/s span more than 30 days; raise the rate",
                         "argument", "rate")
    if arrival not in ("poisson", "gamma"):
        raise InputError(f"arrival must be 'poisson' or 'gamma', got {arrival!r}", "argument", "arrival")
    return num_requests, rate, cv, seed, shared_prefix_len, num_prefixes, vocab_size


def synthetic(num_requests: int = 100, rate: float = 10.0, input_len: LengthDist | str = "sharegpt",
              output_len: LengthDist | str = "sharegpt", arrival: str = "poisson", cv: float = 1.0,
              seed: int = 0, shared_prefix_len: int = 0, num_prefixes: int = 4,
              vocab_size: int = 32000) -> Workload:
    """A seeded synthetic workload.

    Arrivals are Poisson at ``rate`` req/s, or gamma with coefficient of variation ``cv`` from 0 to
    10 (bursty for cv > 1; below 1e-12, 0 included, regular: one request every 1/rate s). With
    ``shared_prefix_len`` > 0 every prompt starts with one of ``num_prefixes`` shared prefixes
    (a system prompt), so prefix caching has something to find; token ids are drawn from
    ``vocab_size`` (at most 2**31) ids. ``input_len`` and ``output_len`` are a :class:`LengthDist` or its text
    (``fixed:N``, ``uniform:LO:HI``, ``lognormal:MEDIAN:SIGMA`` or ``sharegpt``).
    """
    num_requests, rate, cv, seed, shared_prefix_len, num_prefixes, vocab_size = check_generator(
        num_requests, rate, arrival, cv, seed, shared_prefix_len, num_prefixes, vocab_size)
    rng = np.random.default_rng(seed)
    ind = input_len if isinstance(input_len, LengthDist) else LengthDist.parse(input_len, "input")
    outd = output_len if isinstance(output_len, LengthDist) else LengthDist.parse(output_len, "output")
    if arrival == "poisson":
        gaps = rng.exponential(1.0 / rate, size=num_requests)
    elif cv < REGULAR_CV:   # the limit cv -> 0: one request every 1/rate s
        gaps = np.full(num_requests, 1.0 / rate)
    else:
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, 1.0 / (rate * shape), size=num_requests)
    times = np.cumsum(gaps)
    if times[-1] > MAX_ARRIVAL_NS / 1e9:   # bursty gaps can stretch past the mean span checked above
        raise InputError(f"the drawn arrivals span {times[-1] / 86_400:.0f} days, more than 30; raise the rate"
                         + (" or lower cv" if arrival == "gamma" else ""), "argument", "rate")
    arrivals = np.round(times * 1e9).astype(np.int64)
    ins = ind.sample(rng, num_requests)
    outs = outd.sample(rng, num_requests)
    ids: list[list[int] | None] = [None] * num_requests
    if shared_prefix_len > 0:
        ins = np.maximum(ins, shared_prefix_len + 1)
        choice, prefixes = _prefixes(rng, num_requests, shared_prefix_len, num_prefixes, vocab_size)
        ids = [prefixes[c] + rng.integers(0, vocab_size, size=int(n) - shared_prefix_len).tolist()
               for c, n in zip(choice.tolist(), ins)]
    name = f"synthetic({arrival}, {rate}/s, n={num_requests}, seed={seed})"
    return Workload(arrivals, ins, outs, ids, name, ids_checked=True)


def _prefixes(rng: np.random.Generator, n: int, length: int, num: int,
              vocab_size: int) -> tuple[np.ndarray, dict[int, list[int]]]:
    """Which prefix each of ``n`` requests starts with, and the token ids of the prefixes used.

    At most ``n`` of the ``num`` prefixes can be used. Up to a few million prefix tokens (or when
    ``num <= n``, i.e. no more tokens than the prompts hold anyway) every prefix is drawn before the
    choice, in the order of earlier versions, so a seed gives the same workload as it did; beyond, the
    choice comes first and only the prefixes used are drawn, where drawing all would take hours.
    """
    if num <= n or num * length <= EAGER_PREFIX_TOKENS:
        drawn = [rng.integers(0, vocab_size, size=length) for _ in range(num)]
        choice = rng.integers(0, num, size=n)
        return choice, {c: drawn[c].tolist() for c in set(choice.tolist())}
    choice = rng.integers(0, num, size=n)
    return choice, {c: rng.integers(0, vocab_size, size=length).tolist() for c in sorted(set(choice.tolist()))}


def from_requests(requests: Sequence[tuple[float, int, int]], name: str = "requests") -> Workload:
    """A workload from ``(arrival_s, input_toks, output_toks)`` tuples; handy in notebooks and tests."""
    if not isinstance(requests, Sequence) or not requests:
        raise InputError(f"expected a non-empty list of (arrival_s, input_toks, output_toks), got {requests!r}", name)
    for i, r in enumerate(requests):
        if isinstance(r, (str, bytes)) or not isinstance(r, Sequence) or len(r) != 3 or not is_real(r[0]):
            raise InputError(f"expected (arrival_s, input_toks, output_toks) with a time in seconds, got {r!r}",
                             name, f"requests[{i}]")
    # list entries, so that Workload names a bad count by its index, the request's own
    return Workload([r[0] * 1e9 for r in requests], [r[1] for r in requests], [r[2] for r in requests], name=name)
