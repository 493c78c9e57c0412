"""Operator FLOPs and bytes against hand-computed values for Llama-3.1-8B (hidden 4096, 32 heads, 8 KV
heads, head dim 128, MLP 14336, vocabulary 128256, 32 layers, BF16), and the hardware spec files."""
from __future__ import annotations

import pytest

from llmss_lab.config.model import ModelSpec
from llmss_lab.errors import InputError
from llmss_lab.latency.ops import Shapes
from llmss_lab.latency.specs import load_spec, load_specs


@pytest.fixture(scope="module")
def llama(ref) -> ModelSpec:
    return ModelSpec.from_hf_config(ref / "configs/model/meta-llama/Llama-3.1-8B.json")


def test_gemms_of_one_token(llama):
    s = Shapes(llama, tp=1)
    qkv = s.qkv_proj(1)          # [1, 4096] x [4096, (32 + 2*8) * 128 = 6144]
    assert qkv.flops == 2 * 4096 * 6144 == 50_331_648
    assert qkv.weight_bytes == 4096 * 6144 * 2 == 50_331_648
    assert qkv.act_bytes == (4096 + 6144) * 2 == 20_480
    assert s.o_proj(1).flops == 2 * 4096 * 4096 == 33_554_432
    assert s.gate_up_proj(1).flops == 2 * 4096 * 28672 == 234_881_024
    assert s.down_proj(1).flops == 2 * 14336 * 4096 == 117_440_512
    assert s.lm_head(1).flops == 2 * 4096 * 128256 == 1_050_673_152
    # a batch of 256 tokens: FLOPs scale with tokens, weights are read once
    assert s.qkv_proj(256).flops == 256 * 50_331_648 and s.qkv_proj(256).weight_bytes == 50_331_648


def test_tensor_parallel_splits_heads_and_mlp(llama):
    s = Shapes(llama, tp=2)
    assert s.qkv_proj(1).flops == 2 * 4096 * (16 + 2 * 4) * 128 == 25_165_824
    assert s.gate_up_proj(1).flops == 2 * 4096 * 14336 == 117_440_512
    assert s.lm_head(1).flops == 2 * 4096 * 64128
    with pytest.raises(InputError, match="tp 3 does not split"):
        Shapes(llama, tp=3)


def test_attention_decode_and_prefill(llama):
    s = Shapes(llama, tp=1)
    d = s.attention_decode(1000)
    assert d.flops == 4 * 1001 * 128 * 32 == 16_400_384
    assert d.kv_bytes == 1000 * 2 * 8 * 128 * 2 + 2 * 8 * 128 * 2 == 4_100_096   # read the cache, write one token
    p = s.attention_prefill(512, 0)                      # causal: 512 * 513 / 2 query-key pairs
    assert p.flops == 4 * 131_328 * 128 * 32 == 2_151_677_952
    assert p.kv_bytes == 2 * 512 * 2 * 8 * 128 * 2 == 4_194_304
    q = s.attention_prefill(256, 1024)                   # a later chunk: 256 * 1024 + 256 * 257 / 2 pairs
    assert q.flops == 4 * (256 * 1024 + 32_896) * 128 * 32
    assert d.intensity < 5 < p.intensity                 # decode attention is memory bound, prefill is not


def test_weights_add_up_to_the_model(llama):
    # per layer: qkv 25,165,824 + o 16,777,216 + gate_up 117,440,512 + down 58,720,256 + 2 norms 8,192
    # = 218,112,000 parameters; x 32 layers, + embedding and LM head 2 x 525,336,576, + final norm 4,096
    expected = (218_112_000 * 32 + 2 * 525_336_576 + 4096) * 2
    assert Shapes(llama).weight_bytes_per_rank() == expected == 16_060_522_496
    assert llama.weight_bytes_per_rank(1, 1, 1, 2) == expected


def test_moe_experts_need_a_moe_model(llama, ref):
    with pytest.raises(InputError, match="not a mixture-of-experts model"):
        Shapes(llama).moe_experts(4, 2)
    moe = ModelSpec.from_hf_config(ref / "configs/model/Qwen/Qwen3-30B-A3B-Instruct-2507.json")
    s = Shapes(moe)
    one = s.moe_experts(1, moe.experts_per_token)
    # one token through top-k experts of 3 matrices each, plus the router
    assert one.flops == 2 * moe.experts_per_token * 3 * moe.hidden_size * moe.moe_intermediate_size \
        + 2 * moe.hidden_size * moe.num_experts


def test_every_named_accelerator_has_a_spec_with_sources():
    specs = load_specs()
    for name in ("A6000", "RTX4090", "RTXPRO6000", "A100", "H100", "H200", "B200", "MI300X", "TPU-v6e-1"):
        s = specs[name]
        assert s.memory_gib > 0 and s.memory_bw_gbs > 0 and s.bf16_tflops > 0 and s.sources, name
    # every GPU gives its SMs and shared cache, which vLLM's attention counts scale by; a TPU has neither
    assert {n for n, s in specs.items() if s.sms is None or s.cache_mb is None} == {"TPU-v6e-1"}
    assert (specs["RTXPRO6000"].sms, specs["H100"].sms, specs["A6000"].sms) == (188, 132, 84)
    h = specs["H100"]
    assert h.scaled(memory_bw_gbs=2).memory_bw_gbs == 2 * h.memory_bw_gbs
    with pytest.raises(InputError, match="not a numeric spec field"):
        h.scaled(vendor=2)


@pytest.mark.parametrize("text,key", [
    ("name: X\nvendor: Y\nmemory_gib: 8\nmemory_bw_gbs: 100\nbf16_tflops: 10\n", "sources"),
    ("name: X\nvendor: Y\nmemory_gib: -8\nmemory_bw_gbs: 100\nbf16_tflops: 10\nsources: [a]\n", "memory_gib"),
    ("name: X\nvendor: Y\nmemory_gib: 8\nmemory_bw_gbs: 100\nbf16_tflop: 10\nsources: [a]\n", "bf16_tflop"),
    ("name: X\nvendor: Y\nmemory_gib: 8\nmemory_bw_gbs: 100\nbf16_tflops: 10\nsms: 0\nsources: [a]\n", "sms"),
    ("name: X\nvendor: Y\nmemory_gib: 8\nmemory_bw_gbs: 100\nbf16_tflops: 10\ncache_mb: big\nsources: [a]\n", "cache_mb"),
])
def test_bad_spec_files_name_the_key(tmp_path, text, key):
    p = tmp_path / "x.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as exc:
        load_spec(p)
    assert str(p) in str(exc.value) and key in str(exc.value)
