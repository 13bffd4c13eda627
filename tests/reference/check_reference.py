"""Self-checks of the reference and the generated goldens (run after make_goldens.py):

  1. RoPE: interleaved-pair rotation == HF's de-interleave + rotate_half with cat(freqs, freqs).
  2. An ABSORBED-MLA, one-token-at-a-time KV-cache forward (cache = normalized c_kv and
     rotated k_pe per position; q_nope folded into kv_b's key part, the value part applied
     after the attention sum, as DeepSeek-V3 model.py "absorb" mode) reproduces the goldens.
  3. The same reference run entirely in float32 stays within ~1e-5 of the goldens and gives
     the same argmax everywhere (the margins are meant to make that hold for any F32 engine).
  4. golden.safetensors is consistent: decode_ids[0] = argmax(prefill_logits[P-1]),
     decode_ids[i+1] = argmax(decode_logits[i]).
  5. FP8 tensors contain no NaN codes and each has a matching _scale_inv; BF16 tensors contain
     no NaN/inf and survive a decode -> encode round trip bit-exactly.

    /usr/bin/python3 tests/reference/check_reference.py [names...]
"""

import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep tests/reference free of __pycache__
sys.path.insert(0, HERE)
import deepseek_ref as R  # noqa: E402
import make_checkpoints as mc  # noqa: E402
import safetensors_io as st  # noqa: E402

DT = torch.float64


def hf_style_rope(x, cfg, T):
    """HF modeling_deepseek: de-interleave (view(d/2, 2).transpose) then x*cos + rotate_half(x)*sin.
    Returns the result in the de-interleaved layout."""
    d = cfg["qk_rope_head_dim"]
    cos, sin = R.rope_tables(cfg, torch.arange(T))
    cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
    b = x.view(*x.shape[:-1], d // 2, 2).transpose(-1, -2).reshape(x.shape)
    rot = torch.cat([-b[..., d // 2:], b[..., :d // 2]], -1)
    return b * cos + rot * sin


def absorbed_incremental(m, ids):
    cfg = m.cfg
    eps = cfg["rms_norm_eps"]
    H = cfg["num_attention_heads"]
    nope, rope, vd, kvl = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
    L = cfg["num_hidden_layers"]
    cache_c = [[] for _ in range(L)]
    cache_pe = [[] for _ in range(L)]
    cos, sin = R.rope_tables(cfg, torch.arange(len(ids)))
    rows = []
    for pos, tok in enumerate(ids):
        cp, sp = cos[pos:pos + 1], sin[pos:pos + 1]
        h = m.w["model.embed_tokens.weight"][tok][None]
        for i in range(L):
            p = "model.layers.%d." % i
            a = p + "self_attn."
            x = R.rms_norm(h, m.w[p + "input_layernorm.weight"], eps)
            if cfg.get("q_lora_rank") is None:
                q = x @ m.w[a + "q_proj.weight"].t()
            else:
                q = R.rms_norm(x @ m.w[a + "q_a_proj.weight"].t(), m.w[a + "q_a_layernorm.weight"], eps)
                q = q @ m.w[a + "q_b_proj.weight"].t()
            q = q.view(H, nope + rope)
            q_nope = q[:, :nope]
            q_pe = R.apply_rope_interleaved(q[:, None, nope:], cp, sp)[:, 0]
            kv = x @ m.w[a + "kv_a_proj_with_mqa.weight"].t()
            cache_c[i].append(R.rms_norm(kv[:, :kvl], m.w[a + "kv_a_layernorm.weight"], eps)[0])
            cache_pe[i].append(R.apply_rope_interleaved(kv[:, kvl:], cp, sp)[0])
            C = torch.stack(cache_c[i])
            KP = torch.stack(cache_pe[i])
            wkv = m.w[a + "kv_b_proj.weight"].view(H, nope + vd, kvl)
            q_c = torch.einsum("hd,hdc->hc", q_nope, wkv[:, :nope])          # absorbed W_UK
            probs = torch.softmax((q_c @ C.t() + q_pe @ KP.t()) * m.softmax_scale, -1)
            o = torch.einsum("hc,hdc->hd", probs @ C, wkv[:, nope:]).reshape(1, H * vd)   # W_UV after
            h = h + o @ m.w[a + "o_proj.weight"].t()
            y = R.rms_norm(h, m.w[p + "post_attention_layernorm.weight"], eps)
            h = h + (m.moe(p + "mlp.", y, i, None) if R.is_moe_layer(cfg, i) else m.ffn(p + "mlp.", y))
        h = R.rms_norm(h, m.w["model.norm.weight"], eps)
        head = m.w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else m.w["lm_head.weight"]
        rows.append((h @ head.t())[0])
    return torch.stack(rows)


def check(name):
    d = os.path.join(mc.OUT_ROOT, name)
    g = st.load_numpy(os.path.join(d, "golden.safetensors"))
    P = len(g["prompt_ids"])
    ids = g["prompt_ids"].tolist() + g["decode_ids"].tolist()
    gold = np.concatenate([g["prefill_logits"], g["decode_logits"]]).astype(np.float64)
    ok = True

    # 4. golden self-consistency
    am = [int(np.argmax(g["prefill_logits"][P - 1]))] + [int(np.argmax(r)) for r in g["decode_logits"][:-1]]
    if am != g["decode_ids"].tolist():
        print("  FAIL decode_ids are not the greedy argmaxes"); ok = False

    R.DT = DT
    m = R.DeepseekRef.from_pretrained(d)
    cfg = m.cfg
    # 1. rope equivalence
    T = len(ids)
    x = torch.randn(3, T, cfg["qk_rope_head_dim"], dtype=DT, generator=torch.Generator().manual_seed(0))
    cos, sin = R.rope_tables(cfg, torch.arange(T))
    ours = R.apply_rope_interleaved(x, cos, sin)
    dh = cfg["qk_rope_head_dim"]
    ours_de = ours.view(3, T, dh // 2, 2).transpose(-1, -2).reshape(3, T, dh)
    e1 = float((ours_de - hf_style_rope(x, cfg, T)).abs().max())
    # 2. absorbed incremental
    e2 = float((absorbed_incremental(m, ids) - torch.from_numpy(gold)).abs().max())
    # 3. float32 run
    m.w = {k: v.float() for k, v in m.w.items()}
    R.DT = torch.float32
    try:
        out32 = m.forward(ids)
    finally:
        R.DT = DT
    e3 = float((out32.double() - torch.from_numpy(gold)).abs().max())
    same = bool((out32.argmax(-1).numpy() == gold.argmax(-1)).all())
    print("  rope HF-equivalence %.2g | absorbed+KV-cache vs golden %.2g | float32 run vs golden %.2g, "
          "argmax identical: %s | max|logit| %.3g" % (e1, e2, e3, same, np.abs(gold).max()))
    ok &= e1 < 1e-12 and e2 < 1e-5 and e3 < 1e-4 and same

    # 5. fp8 sanity
    entries = R.read_checkpoint_entries(d)
    for k, e in entries.items():
        if e[0] == "F8_E4M3":
            c = st.entry_raw_numpy(e)
            if np.any((c & 0x7F) == 0x7F) or k + "_scale_inv" not in entries:
                print("  FAIL fp8 tensor", k); ok = False
        elif e[0] == "BF16":
            raw = st.entry_raw_numpy(e)
            v = st.bf16_decode(raw)
            if not np.all(np.isfinite(v)) or not np.array_equal(st.bf16_encode(v), raw):
                print("  FAIL bf16 tensor", k); ok = False
    return ok


def main(argv):
    torch.set_num_threads(1)
    bad = []
    for name in argv or list(mc.CHECKPOINTS):
        print(name)
        if not check(name):
            bad.append(name)
    if bad:
        sys.exit("FAILED: %s" % ", ".join(bad))
    print("all checks passed")


if __name__ == "__main__":
    main(sys.argv[1:])
