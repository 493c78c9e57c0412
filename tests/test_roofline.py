"""The analytical model's fit: it recovers known efficiency curves, finds every profiled bundle in both
formats, and `llmss profile-check` reports the operator-by-operator error."""
from __future__ import annotations

import numpy as np
import pytest

from llmss_lab.cli import main
from llmss_lab.config.reader import read_yaml
from llmss_lab.latency import roofline as R
from llmss_lab.latency.specs import HardwareSpec, load_specs


def fake_spec(name: str, tflops: float, bw: float) -> HardwareSpec:
    return HardwareSpec(name, "test", 80, bw, tflops, None, None, None, None, ("synthetic",))


def test_fit_recovers_known_efficiency_curves():
    specs = {"X": fake_spec("X", 400, 2000), "Y": fake_spec("Y", 100, 700)}
    truth = R.Efficiency(e_max=0.6, f_half=2e9, u=0.8, t0_us=6.0)
    rng = np.random.default_rng(0)
    samples = []
    for cls in R.CLASSES:
        op = "qkv_proj" if cls == "gemm" else cls
        for hw in specs:
            for f in np.geomspace(1e6, 1e13, 40):
                b = f / rng.uniform(0.5, 500)             # from memory-bound to compute-bound
                t = float(truth.time_ns(f, b, specs[hw]))
                if cls == "attention_mixed":              # a prefill part rides along, timed by its own curve
                    pf, pb = f / 3, b / 3
                    samples.append(R.Sample(f"{hw}/m/tp1", hw, op, f, b, t + float(truth.time_ns(pf, pb, specs[hw])),
                                            "vllm", pf, pb))
                else:
                    samples.append(R.Sample(f"{hw}/m/tp1", hw, op, f, b, t))
    eff = R.fit(samples, specs)
    for cls, e in eff.items():
        assert e.e_max == pytest.approx(0.6, rel=0.05) and e.u == pytest.approx(0.8, rel=0.05), cls
        assert e.t0_us == pytest.approx(6.0, rel=0.1) and e.f_half == pytest.approx(2e9, rel=0.2), cls
    assert np.abs(R.errors_pct(samples, eff, specs)).max() < 1.0


def test_both_profile_formats_are_found_and_the_stored_fit_covers_them(ref):
    found = R.profiled_bundles(ref)
    names = {f"{hw}/{m}/tp{tp}" for _, hw, m, tp in found}
    assert "RTXPRO6000/meta-llama/Llama-3.1-8B/tp1" in names            # current format
    assert "H100/meta-llama/Llama-3.1-70B/tp4" in names                 # the paper artifact's format
    assert "TPU-v6e-1/meta-llama/Llama-3.1-8B/tp1" in names
    stored = read_yaml(R.EFFICIENCY_FILE)
    assert set(stored["provenance"]["fitted_on"]) == names               # fitted on exactly these
    assert set(R.load_efficiency()) >= set(R.CLASSES)                   # vLLM's curves, and other stacks'
    assert {"artifact/attention_decode", "xla/rms_norm"} <= set(R.load_efficiency())


def test_samples_carry_the_operator_costs(ref):
    from llmss_lab.config.model import ModelSpec
    from llmss_lab.latency.ops import Shapes

    d = ref / "profiles/RTXPRO6000/meta-llama/Llama-3.1-8B/bf16/tp1"
    model = ModelSpec.from_hf_config(ref / "configs/model/meta-llama/Llama-3.1-8B.json")
    s = R.bundle_samples(d, model, load_specs()["RTXPRO6000"], 1, "x")
    qkv = [x for x in s if x.op == "qkv_proj"]
    assert qkv and all(x.flops == Shapes(model).qkv_proj(round(x.flops / 50_331_648)).flops for x in qkv)
    assert {x.cls for x in s} >= {"gemm", "attention_prefill", "attention_decode", "attention_mixed", "rms_norm"}
    mixed = [x for x in s if x.cls == "attention_mixed"]
    assert mixed and all(x.pre_flops > 0 and x.flops > 0 for x in mixed)


def test_profile_check_reports_each_operator(ref, capsys):
    assert main(["profile-check", "RTXPRO6000", "meta-llama/Llama-3.1-8B", "--tp", "1",
                 "--reference-dir", str(ref)]) == 0
    out = capsys.readouterr().out
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines()[2:]}
    assert {"qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head", "attention_prefill", "attention_decode",
            "attention_mixed", "rms_norm", "all"} <= set(rows)
    for op in ("qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head"):
        assert float(rows[op][2]) < 20.0, rows[op]          # GEMMs: median |error| within 20 %
    assert main(["profile-check", "H900", "meta-llama/Llama-3.1-8B", "--reference-dir", str(ref)]) == 2
    assert "no spec for hardware 'H900'" in capsys.readouterr().err
    assert main(["profile-check", "A6000", "Qwen/Qwen3-32B", "--reference-dir", str(ref)]) == 2
    assert "no profile of Qwen/Qwen3-32B on A6000" in capsys.readouterr().err
