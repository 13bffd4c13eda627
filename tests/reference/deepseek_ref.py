"""Independent float64 PyTorch reference for DeepseekV2ForCausalLM / DeepseekV3ForCausalLM.

Written from the published model definitions (DeepSeek-V3 ``inference/model.py`` and
Hugging Face ``modeling_deepseek.py`` for V2/V3) and the conventions documented in
tests/reference/README.md.  It is deliberately plain: no KV cache, no weight
absorption (full MLA: c_kv is expanded through kv_b_proj into per-head keys and
values), every position recomputed, all arithmetic in float64.

Usage as a library:
    model = DeepseekRef.from_pretrained("tests/data/tiny/v3_tiny")
    logits = model.forward([0, 17, 91])          # torch.float64 [T, vocab]

Usage from the command line (greedy continuation, for eyeballing):
    /usr/bin/python3 tests/reference/deepseek_ref.py tests/data/tiny/v3_tiny 0 17 91 --steps 8
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True  # keep tests/reference free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io as st  # noqa: E402

DT = torch.float64


# --------------------------------------------------------------------------- #
# Loading
# --------------------------------------------------------------------------- #
def read_checkpoint_entries(model_dir):
    """All tensors of a HF checkpoint directory as raw entries (single file or sharded)."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        entries = {}
        for fname in sorted(set(weight_map.values())):
            shard = st.read_safetensors(os.path.join(model_dir, fname))
            for name, e in shard.items():
                if weight_map.get(name) != fname:
                    raise ValueError("%s found in %s but index maps it to %s" % (name, fname, weight_map.get(name)))
                entries[name] = e
        missing = set(weight_map) - set(entries)
        if missing:
            raise ValueError("tensors listed in the index but absent: %s" % sorted(missing)[:5])
        return entries
    return st.read_safetensors(os.path.join(model_dir, "model.safetensors"))


def dequantize_entries(entries, block=(128, 128)):
    """Entries -> dict name -> float64 tensor.

    A weight stored as F8_E4M3 is dequantized with its companion ``<name>_scale_inv``
    (F32, shape [ceil(out/bo), ceil(in/bi)]):  W[i, j] = fp8(W)[i, j] * scale_inv[i // bo, j // bi].
    BF16 / F16 / F32 weights are just widened.  The ``_scale_inv`` tensors are consumed.
    """
    bo, bi = block
    out = {}
    for name, e in entries.items():
        if name.endswith("_scale_inv"):
            continue
        w = st.entry_to_torch(e, DT)
        if e[0] == "F8_E4M3":
            s_name = name + "_scale_inv"
            if s_name not in entries:
                raise ValueError("FP8 tensor %s has no %s" % (name, s_name))
            s = st.entry_to_torch(entries[s_name], DT)
            rows, cols = w.shape
            if tuple(s.shape) != (-(-rows // bo), -(-cols // bi)):
                raise ValueError("%s: scale_inv shape %s does not match %s" % (name, tuple(s.shape), tuple(w.shape)))
            s_full = s.repeat_interleave(bo, 0)[:rows].repeat_interleave(bi, 1)[:, :cols]
            w = w * s_full
        out[name] = w
    for name in entries:
        if name.endswith("_scale_inv") and name[: -len("_scale_inv")] not in entries:
            raise ValueError("orphan scale tensor %s" % name)
    return out


# --------------------------------------------------------------------------- #
# Building blocks
# --------------------------------------------------------------------------- #
def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def silu(x):
    return x * torch.sigmoid(x)


def yarn_mscale(scale, mscale):
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def _yarn_correction_dim(num_rotations, dim, base, orig_max_pos):
    return (dim * math.log(orig_max_pos / (num_rotations * 2 * math.pi))) / (2 * math.log(base))


def rope_tables(cfg, positions):
    """cos/sin [T, rope_dim/2] (float64) for interleaved-pair rotary embedding."""
    d = cfg["qk_rope_head_dim"]
    base = float(cfg.get("rope_theta", 10000.0))
    idx = torch.arange(0, d, 2, dtype=DT)                       # 2i
    freq_extra = 1.0 / (base ** (idx / d))
    rs = cfg.get("rope_scaling")
    attn_factor = 1.0
    if rs:
        rtype = rs.get("type", rs.get("rope_type"))
        if rtype != "yarn":
            raise NotImplementedError("rope_scaling type %r" % rtype)
        factor = float(rs["factor"])
        orig = float(rs["original_max_position_embeddings"])
        beta_fast = float(rs.get("beta_fast", 32))
        beta_slow = float(rs.get("beta_slow", 1))
        mscale = float(rs.get("mscale", 1))
        mscale_all_dim = float(rs.get("mscale_all_dim", 0))
        freq_inter = freq_extra / factor
        low = math.floor(_yarn_correction_dim(beta_fast, d, base, orig))
        high = math.ceil(_yarn_correction_dim(beta_slow, d, base, orig))
        low, high = max(low, 0), min(high, d - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(d // 2, dtype=DT) - low) / (high - low)).clamp(0, 1)
        extra_mask = 1.0 - ramp
        inv_freq = freq_inter * (1 - extra_mask) + freq_extra * extra_mask
        attn_factor = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
    else:
        inv_freq = freq_extra
    ang = torch.as_tensor(positions, dtype=DT)[:, None] * inv_freq[None, :]
    return torch.cos(ang) * attn_factor, torch.sin(ang) * attn_factor


def apply_rope_interleaved(x, cos, sin):
    """x [..., T, d]: rotate pairs (x[2i], x[2i+1]) by angle pos * inv_freq[i].
    cos/sin [T, d/2]."""
    x0 = x[..., 0::2]
    x1 = x[..., 1::2]
    r0 = x0 * cos - x1 * sin
    r1 = x0 * sin + x1 * cos
    return torch.stack([r0, r1], dim=-1).flatten(-2)


def softmax_scale(cfg):
    scale = (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]) ** -0.5
    rs = cfg.get("rope_scaling")
    if rs:
        mad = float(rs.get("mscale_all_dim", 0) or 0)
        if mad:
            m = yarn_mscale(float(rs["factor"]), mad)
            scale = scale * m * m
    return scale


def is_moe_layer(cfg, i):
    return (cfg.get("n_routed_experts") is not None
            and i >= cfg.get("first_k_dense_replace", 0)
            and i % cfg.get("moe_layer_freq", 1) == 0)


def _topk_gap(values, k):
    """Per row: sorted_desc[k-1] - sorted_desc[k] (inf when nothing finite is rejected)."""
    s = torch.sort(values, dim=-1, descending=True).values
    if s.shape[-1] <= k:
        return torch.full(s.shape[:-1], math.inf, dtype=DT)
    gap = s[..., k - 1] - s[..., k]
    return torch.where(torch.isinf(s[..., k]), torch.full_like(gap, math.inf), gap)


# --------------------------------------------------------------------------- #
# Model
# --------------------------------------------------------------------------- #
class DeepseekRef:
    def __init__(self, config, weights):
        self.cfg = dict(config)
        self.w = weights
        arch = (config.get("architectures") or ["?"])[0]
        if arch not in ("DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM"):
            raise ValueError("unsupported architecture %r" % arch)
        if config.get("hidden_act", "silu") != "silu":
            raise NotImplementedError("hidden_act %r" % config.get("hidden_act"))
        self.softmax_scale = softmax_scale(self.cfg)

    @classmethod
    def from_entries(cls, config, entries):
        qc = config.get("quantization_config") or {}
        block = tuple(qc.get("weight_block_size", (128, 128)))
        return cls(config, dequantize_entries(entries, block))

    @classmethod
    def from_pretrained(cls, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            config = json.load(f)
        return cls.from_entries(config, read_checkpoint_entries(model_dir))

    # -- pieces -------------------------------------------------------------- #
    def _lin(self, name, x):
        return x @ self.w[name].t()

    def attention(self, p, x, cos, sin):
        cfg = self.cfg
        T = x.shape[0]
        H = cfg["num_attention_heads"]
        nope, rope, vd = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
        kvr = cfg["kv_lora_rank"]
        eps = cfg["rms_norm_eps"]

        if cfg.get("q_lora_rank") is None:
            q = self._lin(p + "q_proj.weight", x)
        else:
            cq = rms_norm(self._lin(p + "q_a_proj.weight", x), self.w[p + "q_a_layernorm.weight"], eps)
            q = self._lin(p + "q_b_proj.weight", cq)
        q = q.view(T, H, nope + rope).transpose(0, 1)             # [H, T, nope+rope]
        q_nope, q_pe = q[..., :nope], q[..., nope:]

        kv_a = self._lin(p + "kv_a_proj_with_mqa.weight", x)      # [T, kvr+rope]
        c = rms_norm(kv_a[:, :kvr], self.w[p + "kv_a_layernorm.weight"], eps)
        k_pe = kv_a[:, kvr:]                                      # [T, rope], shared by heads
        kv = self._lin(p + "kv_b_proj.weight", c).view(T, H, nope + vd).transpose(0, 1)
        k_nope, v = kv[..., :nope], kv[..., nope:]                # [H, T, nope], [H, T, vd]

        q_pe = apply_rope_interleaved(q_pe, cos, sin)
        k_pe = apply_rope_interleaved(k_pe, cos, sin)

        scores = (q_nope @ k_nope.transpose(-1, -2) + q_pe @ k_pe.t()[None]) * self.softmax_scale
        causal = torch.ones(T, T, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(causal, -math.inf)
        probs = torch.softmax(scores, dim=-1)
        out = (probs @ v).transpose(0, 1).reshape(T, H * vd)
        return self._lin(p + "o_proj.weight", out)

    def ffn(self, p, x):
        return self._lin(p + "down_proj.weight",
                         silu(self._lin(p + "gate_proj.weight", x)) * self._lin(p + "up_proj.weight", x))

    def route(self, p, x, layer, trace):
        """Returns (topk_idx [T, k] long, topk_weight [T, k] float64)."""
        cfg = self.cfg
        E = cfg["n_routed_experts"]
        k = cfg["num_experts_per_tok"]
        n_group = cfg.get("n_group") or 1
        topk_group = cfg.get("topk_group") or 1
        method = cfg.get("topk_method", "greedy")
        logits = self._lin(p + "gate.weight", x)                  # [T, E]
        sf = cfg.get("scoring_func", "softmax")
        if sf == "softmax":
            scores = torch.softmax(logits, dim=-1)
        elif sf == "sigmoid":
            scores = torch.sigmoid(logits)
        else:
            raise NotImplementedError("scoring_func %r" % sf)
        bias = self.w.get(p + "gate.e_score_correction_bias")
        if method == "noaux_tc" and bias is None:
            raise ValueError("noaux_tc needs %se_score_correction_bias" % p)
        choice = scores + bias if bias is not None else scores.clone()
        T = x.shape[0]
        group_gap = None
        if n_group > 1 and method in ("noaux_tc", "group_limited_greedy"):
            g = choice.view(T, n_group, E // n_group)
            if method == "noaux_tc":
                gs = g.topk(2, dim=-1).values.sum(-1)
            else:
                gs = g.max(dim=-1).values
            gidx = gs.topk(topk_group, dim=-1).indices
            gmask = torch.zeros(T, n_group, dtype=torch.bool)
            gmask.scatter_(1, gidx, True)
            emask = gmask[:, :, None].expand(T, n_group, E // n_group).reshape(T, E)
            choice = choice.masked_fill(~emask, -math.inf)
            group_gap = _topk_gap(gs, topk_group)
        elif method not in ("greedy", "noaux_tc", "group_limited_greedy"):
            raise NotImplementedError("topk_method %r" % method)
        idx = choice.topk(k, dim=-1).indices
        weight = scores.gather(1, idx)
        if cfg.get("norm_topk_prob") and k > 1:
            weight = weight / weight.sum(-1, keepdim=True)
        weight = weight * float(cfg.get("routed_scaling_factor", 1.0))
        if trace is not None:
            unbiased_idx = None
            if bias is not None:   # the same selection with the bias left out (to prove it matters)
                ub = scores.clone()
                if group_gap is not None:
                    gs_u = ub.view(T, n_group, E // n_group)
                    gs_u = gs_u.topk(2, dim=-1).values.sum(-1) if method == "noaux_tc" else gs_u.max(-1).values
                    gm = torch.zeros(T, n_group, dtype=torch.bool)
                    gm.scatter_(1, gs_u.topk(topk_group, dim=-1).indices, True)
                    ub = ub.masked_fill(~gm[:, :, None].expand(T, n_group, E // n_group).reshape(T, E), -math.inf)
                unbiased_idx = ub.topk(k, dim=-1).indices
            trace.append({
                "layer": layer,
                "expert_gap": _topk_gap(choice, k),
                "group_gap": group_gap,
                "topk_idx": idx,
                "unbiased_topk_idx": unbiased_idx,
            })
        return idx, weight

    def moe(self, p, x, layer, trace):
        idx, weight = self.route(p, x, layer, trace)
        out = torch.zeros_like(x)
        for t in range(x.shape[0]):
            for j in range(idx.shape[1]):
                e = int(idx[t, j])
                out[t] += weight[t, j] * self.ffn("%sexperts.%d." % (p, e), x[t:t + 1])[0]
        if self.cfg.get("n_shared_experts"):
            out = out + self.ffn(p + "shared_experts.", x)
        return out

    # -- full forward ---------------------------------------------------------- #
    def _layer(self, i, h, cos, sin, trace):
        """Decoder layer i (model.layers.i.*) over h [T, hidden]."""
        eps = self.cfg["rms_norm_eps"]
        p = "model.layers.%d." % i
        h = h + self.attention(p + "self_attn.", rms_norm(h, self.w[p + "input_layernorm.weight"], eps), cos, sin)
        y = rms_norm(h, self.w[p + "post_attention_layernorm.weight"], eps)
        if is_moe_layer(self.cfg, i):
            return h + self.moe(p + "mlp.", y, i, trace)
        return h + self.ffn(p + "mlp.", y)

    def hidden(self, token_ids, trace=None):
        """Final-normed hidden states [T, hidden] (what lm_head multiplies)."""
        cfg = self.cfg
        ids = torch.as_tensor(list(token_ids), dtype=torch.long)
        cos, sin = rope_tables(cfg, torch.arange(ids.shape[0]))
        h = self.w["model.embed_tokens.weight"][ids]
        for i in range(cfg["num_hidden_layers"]):
            h = self._layer(i, h, cos, sin, trace)
        return rms_norm(h, self.w["model.norm.weight"], cfg["rms_norm_eps"])

    def forward(self, token_ids, trace=None):
        """token_ids: sequence of ints (positions 0..T-1). Returns logits float64 [T, vocab].
        If trace is a list, one dict per MoE layer with routing margins is appended."""
        cfg = self.cfg
        head = self.w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else self.w["lm_head.weight"]
        return self.hidden(token_ids, trace) @ head.t()

    def mtp_forward(self, token_ids):
        """The first multi-token-prediction module (DeepSeek-V3, stored as layer
        num_hidden_layers): logits [T-1, vocab] where row i predicts token i+2 from the main
        model's final-normed hidden state at i and the embedding of token i+1:
        eh_proj([enorm(embed(t[i+1])); hnorm(h[i])]) -> decoder layer -> shared_head.norm ->
        shared_head.head. RoPE positions are 0..T-2."""
        cfg = self.cfg
        if not cfg.get("num_nextn_predict_layers"):
            raise ValueError("the checkpoint has no MTP module (num_nextn_predict_layers is 0)")
        L = cfg["num_hidden_layers"]
        p = "model.layers.%d." % L
        eps = cfg["rms_norm_eps"]
        ids = list(token_ids)
        h = self.hidden(ids)[:-1]
        e = self.w[p + "embed_tokens.weight"][torch.as_tensor(ids[1:], dtype=torch.long)]
        x = torch.cat([rms_norm(e, self.w[p + "enorm.weight"], eps),
                       rms_norm(h, self.w[p + "hnorm.weight"], eps)], dim=-1)
        x = x @ self.w[p + "eh_proj.weight"].t()
        cos, sin = rope_tables(cfg, torch.arange(len(ids) - 1))
        x = self._layer(L, x, cos, sin, None)
        x = rms_norm(x, self.w[p + "shared_head.norm.weight"], eps)
        return x @ self.w[p + "shared_head.head.weight"].t()


def argmax_gap(row):
    """(argmax index, top1 - top2) of a 1-D tensor."""
    s = torch.topk(row, 2)
    return int(s.indices[0]), float(s.values[0] - s.values[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("tokens", nargs="+", type=int)
    ap.add_argument("--steps", type=int, default=0, help="greedy decode steps")
    args = ap.parse_args()
    torch.set_num_threads(1)
    m = DeepseekRef.from_pretrained(args.model_dir)
    ids = list(args.tokens)
    logits = m.forward(ids)
    for t in range(len(ids)):
        a, g = argmax_gap(logits[t])
        print("pos %3d token %5d -> argmax %5d (gap %.4g)" % (t, ids[t], a, g))
    for _ in range(args.steps):
        nxt = int(torch.argmax(m.forward(ids)[-1]))
        ids.append(nxt)
    if args.steps:
        print("greedy:", ids[len(args.tokens):])
    np.set_printoptions(precision=5, suppress=True)
    print("last logits[:8]:", logits[-1, :8].numpy())


if __name__ == "__main__":
    main()
