"""Writes tiny random DeepSeek-V2/V3 checkpoints (Hugging Face layout) to tests/data/tiny/<name>/.

Deterministic: every tensor is drawn from numpy's PCG64 generator seeded with the
checkpoint's SEED below, in a fixed order, rounded to float32 (then to BF16 where
init weight_dtype is "BF16", or quantized to FP8 e4m3fn with 128x128 block scales),
and serialized by safetensors_io (sorted names, compact header).  Running this twice
gives byte-identical files.

    /usr/bin/python3 tests/reference/make_checkpoints.py            # all checkpoints
    /usr/bin/python3 tests/reference/make_checkpoints.py v3_tiny    # just one
    /usr/bin/python3 tests/reference/make_checkpoints.py --out /tmp/tiny   # elsewhere

The seeds were chosen (by make_goldens.py --find-seed) so that every routing
decision and every greedy argmax has a safe margin; see README.md.
"""

import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep tests/reference free of __pycache__
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402

OUT_ROOT = os.path.normpath(os.path.join(HERE, "..", "data", "tiny"))

BOS_ID = 0
EOS_ID = 1


def _common(arch, **kw):
    v3 = arch == "DeepseekV3ForCausalLM"
    cfg = {
        "architectures": [arch],
        "model_type": "deepseek_v3" if v3 else "deepseek_v2",
        "aux_loss_alpha": 0.001,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "ep_size": 1,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "max_position_embeddings": 256,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000,
        "seq_aux": True,
        "torch_dtype": "float32",
        "transformers_version": "4.46.3" if v3 else "4.39.3",
        "use_cache": True,
    }
    if v3:
        cfg["num_nextn_predict_layers"] = 0
    cfg.update(kw)
    cfg["num_key_value_heads"] = cfg["num_attention_heads"]
    return cfg


V3_YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
           "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}
V2_YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
           "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}
# mscale != mscale_all_dim: cos/sin are scaled by yarn_mscale(8, 1.0) / yarn_mscale(8, 0.707)
# (= 1.2079 / 1.1470 = 1.0531), and original_max_position_embeddings 8 < the 23-token golden run.
V2_YARN_MSCALE = {"type": "yarn", "factor": 8.0, "original_max_position_embeddings": 8,
                  "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.707}

# name -> dict(seed, config, init options, layout)
# init options: gate_mult (router weight std * sqrt(hidden)), bias_std (e_score_correction_bias),
# expert_down_mult (extra factor on routed experts' down_proj), head_mult (lm_head),
# embed_std (embedding std, default 1).
# weight_dtype: "F32" (default) or "BF16" (every tensor rounded float64 -> float32 -> bf16, RNE).
CHECKPOINTS = {
    "v3_tiny": dict(
        seed=1001,
        config=_common(
            "DeepseekV3ForCausalLM",
            vocab_size=512, hidden_size=64, num_hidden_layers=3, first_k_dense_replace=1, moe_layer_freq=1,
            num_attention_heads=4, q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
            v_head_dim=16, intermediate_size=96, moe_intermediate_size=32, n_routed_experts=8,
            n_shared_experts=1, num_experts_per_tok=2, n_group=4, topk_group=2, topk_method="noaux_tc",
            scoring_func="sigmoid", norm_topk_prob=True, routed_scaling_factor=2.5, rope_scaling=V3_YARN,
            tie_word_embeddings=False),
        init=dict(gate_mult=1.0, bias_std=0.1, expert_down_mult=1.0, head_mult=2.0),
        fp8=False, shards=2),
    "v2_lite_tiny": dict(
        seed=2006,
        config=_common(
            "DeepseekV2ForCausalLM",
            vocab_size=384, hidden_size=64, num_hidden_layers=3, first_k_dense_replace=1, moe_layer_freq=1,
            num_attention_heads=4, q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
            v_head_dim=16, intermediate_size=96, moe_intermediate_size=32, n_routed_experts=8,
            n_shared_experts=2, num_experts_per_tok=3, n_group=1, topk_group=1, topk_method="greedy",
            scoring_func="softmax", norm_topk_prob=False, routed_scaling_factor=1.0, rope_scaling=V2_YARN,
            tie_word_embeddings=True),
        # tied head: a small embedding keeps logits O(1) and stops "predict the input token" loops
        init=dict(gate_mult=1.5, bias_std=0.0, expert_down_mult=1.0, head_mult=1.0, embed_std=0.25),
        fp8=False, shards=1),
    "v2_tiny": dict(
        seed=3002,
        config=_common(
            "DeepseekV2ForCausalLM",
            vocab_size=256, hidden_size=64, num_hidden_layers=4, first_k_dense_replace=1, moe_layer_freq=2,
            num_attention_heads=3, q_lora_rank=24, kv_lora_rank=48, qk_nope_head_dim=16, qk_rope_head_dim=8,
            v_head_dim=20, intermediate_size=96, moe_intermediate_size=32, n_routed_experts=8,
            n_shared_experts=2, num_experts_per_tok=2, n_group=2, topk_group=1,
            topk_method="group_limited_greedy", scoring_func="softmax", norm_topk_prob=False,
            routed_scaling_factor=16.0, rope_scaling=None, tie_word_embeddings=False),
        init=dict(gate_mult=1.5, bias_std=0.0, expert_down_mult=0.125, head_mult=2.0),
        fp8=False, shards=1),
    "v3_fp8_tiny": dict(
        seed=4002,
        config=_common(
            "DeepseekV3ForCausalLM",
            vocab_size=256, hidden_size=192, num_hidden_layers=2, first_k_dense_replace=1, moe_layer_freq=1,
            num_attention_heads=2, q_lora_rank=160, kv_lora_rank=144, qk_nope_head_dim=16, qk_rope_head_dim=8,
            v_head_dim=16, intermediate_size=320, moe_intermediate_size=136, n_routed_experts=6,
            n_shared_experts=1, num_experts_per_tok=2, n_group=3, topk_group=2, topk_method="noaux_tc",
            scoring_func="sigmoid", norm_topk_prob=True, routed_scaling_factor=2.5, rope_scaling=V3_YARN,
            tie_word_embeddings=False,
            quantization_config={"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                 "weight_block_size": [128, 128]}),
        init=dict(gate_mult=1.0, bias_std=0.1, expert_down_mult=1.0, head_mult=2.0),
        fp8=True, shards=1),
    "v2_yarn_mscale_tiny": dict(
        seed=5001,
        config=_common(
            "DeepseekV2ForCausalLM",
            vocab_size=320, hidden_size=64, num_hidden_layers=3, first_k_dense_replace=1, moe_layer_freq=1,
            num_attention_heads=4, q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
            v_head_dim=16, intermediate_size=96, moe_intermediate_size=32, n_routed_experts=8,
            n_shared_experts=1, num_experts_per_tok=2, n_group=1, topk_group=1, topk_method="greedy",
            scoring_func="softmax", norm_topk_prob=False, routed_scaling_factor=1.0,
            rope_scaling=V2_YARN_MSCALE, tie_word_embeddings=False),
        init=dict(gate_mult=1.5, bias_std=0.0, expert_down_mult=1.0, head_mult=2.0),
        fp8=False, shards=1),
    "v3_bf16_tiny": dict(
        seed=1001,
        config=_common(
            "DeepseekV3ForCausalLM",
            vocab_size=512, hidden_size=64, num_hidden_layers=3, first_k_dense_replace=1, moe_layer_freq=1,
            num_attention_heads=4, q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
            v_head_dim=16, intermediate_size=96, moe_intermediate_size=32, n_routed_experts=8,
            n_shared_experts=1, num_experts_per_tok=2, n_group=4, topk_group=2, topk_method="noaux_tc",
            scoring_func="sigmoid", norm_topk_prob=True, routed_scaling_factor=2.5, rope_scaling=V3_YARN,
            tie_word_embeddings=False, torch_dtype="bfloat16"),
        init=dict(gate_mult=1.0, bias_std=0.1, expert_down_mult=1.0, head_mult=2.0, weight_dtype="BF16"),
        fp8=False, shards=1),
}


def is_moe_layer(cfg, i):
    return (cfg.get("n_routed_experts") is not None
            and i >= cfg.get("first_k_dense_replace", 0)
            and i % cfg.get("moe_layer_freq", 1) == 0)


def tensor_specs(cfg):
    """Ordered list of (name, shape, kind). kind: embed | norm | linear | expert_down | gate | bias | head.
    The order fixes the random stream; do not reorder."""
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nope, rope, vd = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    specs = [("model.embed_tokens.weight", (cfg["vocab_size"], H), "embed")]
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        specs.append((p + "input_layernorm.weight", (H,), "norm"))
        a = p + "self_attn."
        if cfg.get("q_lora_rank") is None:
            specs.append((a + "q_proj.weight", (nh * (nope + rope), H), "linear"))
        else:
            ql = cfg["q_lora_rank"]
            specs.append((a + "q_a_proj.weight", (ql, H), "linear"))
            specs.append((a + "q_a_layernorm.weight", (ql,), "norm"))
            specs.append((a + "q_b_proj.weight", (nh * (nope + rope), ql), "linear"))
        kvl = cfg["kv_lora_rank"]
        specs.append((a + "kv_a_proj_with_mqa.weight", (kvl + rope, H), "linear"))
        specs.append((a + "kv_a_layernorm.weight", (kvl,), "norm"))
        specs.append((a + "kv_b_proj.weight", (nh * (nope + vd), kvl), "linear"))
        specs.append((a + "o_proj.weight", (H, nh * vd), "linear"))
        specs.append((p + "post_attention_layernorm.weight", (H,), "norm"))
        m = p + "mlp."
        if is_moe_layer(cfg, i):
            E = cfg["n_routed_experts"]
            mi = cfg["moe_intermediate_size"]
            specs.append((m + "gate.weight", (E, H), "gate"))
            if cfg.get("topk_method") == "noaux_tc":
                specs.append((m + "gate.e_score_correction_bias", (E,), "bias"))
            for j in range(E):
                e = m + "experts.%d." % j
                specs.append((e + "gate_proj.weight", (mi, H), "linear"))
                specs.append((e + "up_proj.weight", (mi, H), "linear"))
                specs.append((e + "down_proj.weight", (H, mi), "expert_down"))
            if cfg.get("n_shared_experts"):
                si = mi * cfg["n_shared_experts"]
                s = m + "shared_experts."
                specs.append((s + "gate_proj.weight", (si, H), "linear"))
                specs.append((s + "up_proj.weight", (si, H), "linear"))
                specs.append((s + "down_proj.weight", (H, si), "linear"))
        else:
            inter = cfg["intermediate_size"]
            specs.append((m + "gate_proj.weight", (inter, H), "linear"))
            specs.append((m + "up_proj.weight", (inter, H), "linear"))
            specs.append((m + "down_proj.weight", (H, inter), "linear"))
    specs.append(("model.norm.weight", (H,), "norm"))
    if not cfg.get("tie_word_embeddings"):
        specs.append(("lm_head.weight", (cfg["vocab_size"], H), "head"))
    return specs


def quantize_fp8_blockwise(w, block=(128, 128)):
    """float64 [out, in] -> (uint8 e4m3 codes, float32 scale_inv [ceil(out/128), ceil(in/128)]).
    Per block: scale = amax / 448 (as float32); codes = e4m3(w / scale)."""
    bo, bi = block
    rows, cols = w.shape
    nr, nc = -(-rows // bo), -(-cols // bi)
    codes = np.zeros((rows, cols), dtype=np.uint8)
    scale = np.zeros((nr, nc), dtype=np.float32)
    for r in range(nr):
        for c in range(nc):
            blk = w[r * bo:(r + 1) * bo, c * bi:(c + 1) * bi]
            amax = float(np.max(np.abs(blk)))
            s = np.float32(amax / st.E4M3_MAX) if amax > 0 else np.float32(1.0)
            scale[r, c] = s
            codes[r * bo:(r + 1) * bo, c * bi:(c + 1) * bi] = st.e4m3_encode(blk / np.float64(s))
    return codes, scale


def build(name, seed=None):
    """Returns (config dict, entries dict name -> (dtype, shape, bytes)) for checkpoint `name`."""
    spec = CHECKPOINTS[name]
    cfg = json.loads(json.dumps(spec["config"]))
    init = spec["init"]
    rng = np.random.default_rng(spec["seed"] if seed is None else seed)
    H = cfg["hidden_size"]
    entries = {}
    for tname, shape, kind in tensor_specs(cfg):
        z = rng.standard_normal(shape)
        if kind == "embed":
            w = z * init.get("embed_std", 1.0)
        elif kind == "norm":
            w = 1.0 + 0.1 * z
        elif kind in ("linear", "expert_down"):
            w = z / math.sqrt(shape[1])
            if kind == "expert_down":
                w = w * init["expert_down_mult"]
        elif kind == "gate":
            w = z * init["gate_mult"] / math.sqrt(H)
        elif kind == "bias":
            w = z * init["bias_std"]
        elif kind == "head":
            w = z * init["head_mult"] / math.sqrt(H)
        else:
            raise AssertionError(kind)
        if spec["fp8"] and kind in ("linear", "expert_down"):
            # distinct magnitudes per 128x128 block so a mis-indexed scale is caught
            nr, nc = -(-shape[0] // 128), -(-shape[1] // 128)
            f = 2.0 ** rng.uniform(-1.0, 1.0, size=(nr, nc))
            w = w * np.repeat(np.repeat(f, 128, 0), 128, 1)[:shape[0], :shape[1]]
            codes, scale = quantize_fp8_blockwise(w)
            entries[tname] = st.entry_from_numpy(codes, "F8_E4M3")
            entries[tname + "_scale_inv"] = st.entry_from_numpy(scale)
        elif init.get("weight_dtype", "F32") == "BF16":
            entries[tname] = st.entry_from_numpy(w.astype(np.float32), "BF16")
        else:
            entries[tname] = st.entry_from_numpy(w.astype(np.float32))
    return cfg, entries


def _shard_of(tname, cfg, nshards):
    """v3_tiny layout: embeddings + first half of the layers in shard 1, the rest in shard 2."""
    if nshards == 1:
        return 0
    if tname.startswith("model.embed_tokens"):
        return 0
    if tname.startswith("model.layers."):
        layer = int(tname.split(".")[2])
        return 0 if layer < (cfg["num_hidden_layers"] + 1) // 2 else 1
    return 1


def _dump_json(path, obj):
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write(name, out_root=OUT_ROOT):
    spec = CHECKPOINTS[name]
    cfg, entries = build(name)
    d = os.path.join(out_root, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):   # remove stale weight files (keeps golden.safetensors)
        if f.startswith("model") and (f.endswith(".safetensors") or f.endswith(".json")):
            os.remove(os.path.join(d, f))
    _dump_json(os.path.join(d, "config.json"), cfg)
    _dump_json(os.path.join(d, "generation_config.json"), {
        "_from_model_config": True, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID,
        "do_sample": False, "transformers_version": cfg["transformers_version"]})
    n = spec["shards"]
    if n == 1:
        st.write_safetensors(os.path.join(d, "model.safetensors"), entries)
    else:
        shards = [dict() for _ in range(n)]
        for tname, e in entries.items():
            shards[_shard_of(tname.replace("_scale_inv", ""), cfg, n)][tname] = e
        weight_map = {}
        total = 0
        for k, sh in enumerate(shards):
            fname = "model-%05d-of-%05d.safetensors" % (k + 1, n)
            st.write_safetensors(os.path.join(d, fname), sh)
            for tname, e in sh.items():
                weight_map[tname] = fname
                total += len(e[2])
        _dump_json(os.path.join(d, "model.safetensors.index.json"),
                   {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    return d


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="checkpoints (default: all in CHECKPOINTS)")
    ap.add_argument("--out", metavar="DIR", default=OUT_ROOT,
                    help="output root; checkpoints go to DIR/<name>/ (default: tests/data/tiny)")
    args = ap.parse_args(argv)
    for name in args.names or list(CHECKPOINTS):
        if name not in CHECKPOINTS:
            sys.exit("unknown checkpoint %r (known: %s)" % (name, ", ".join(CHECKPOINTS)))
        d = write(name, args.out)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print("%-20s seed %-6d -> %s (%d bytes incl. any golden)" % (name, CHECKPOINTS[name]["seed"], d, size))


if __name__ == "__main__":
    main(sys.argv[1:])
