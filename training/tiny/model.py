"""A trainable DeepSeek-V3 (float32, batched) with one multi-token-prediction module.

For the configuration train.py uses (check_supported() refuses others), the same computation as
the float64 inference reference (tests/reference/deepseek_ref.py) and the
conventions in tests/reference/README.md: MLA with q_lora, interleaved YaRN RoPE, a first dense
layer, MoE layers of sigmoid-scored routed experts plus shared experts, `noaux_tc` group-limited
routing with `e_score_correction_bias`. train.py checks the equality on the exported checkpoint.

Training-only parts:
- auxiliary-loss-free balancing (DeepSeek-V3 report, section 2.1.2): after every optimizer step,
  each MoE layer's correction bias moves by `bias_update_speed` towards balance:
  `b_i += speed * sign(mean load - load_i)`; the bias only steers selection, never the weights;
- the complementary sequence-wise balance loss, `alpha * sum_i f_i * P_i` per sequence;
- the MTP module (report section 2.2, depth 1): at position i it combines the main model's
  final-normed hidden state h_i with the embedding of token i+1,
  `h' = eh_proj([enorm(emb(t_{i+1})); hnorm(h_i)])`, runs one MoE decoder block over those
  positions (causal, RoPE positions i) and predicts token i+2 through `shared_head.norm` and the
  shared output head. The concatenation order (embedding first) and the normed h_i are those of
  the MTP implementations in vLLM and SGLang, which load DeepSeek's real MTP weights.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def yarn_mscale(scale, mscale):
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def rope_tables(cfg, n_pos):
    """cos/sin [n_pos, rope/2] for interleaved pairs, YaRN as in the reference."""
    d = cfg["qk_rope_head_dim"]
    base = float(cfg["rope_theta"])
    idx = torch.arange(0, d, 2, dtype=torch.float64)
    freq_extra = 1.0 / (base ** (idx / d))
    rs = cfg.get("rope_scaling")
    attn_factor = 1.0
    inv_freq = freq_extra
    if rs:
        factor = float(rs["factor"])
        orig = float(rs["original_max_position_embeddings"])

        def corr(rot):
            return (d * math.log(orig / (rot * 2 * math.pi))) / (2 * math.log(base))

        low = max(math.floor(corr(float(rs["beta_fast"]))), 0)
        high = min(math.ceil(corr(float(rs["beta_slow"]))), d - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(d // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
        extra = 1.0 - ramp
        inv_freq = freq_extra / factor * (1 - extra) + freq_extra * extra
        attn_factor = (yarn_mscale(factor, float(rs["mscale"]))
                       / yarn_mscale(factor, float(rs["mscale_all_dim"])))
    ang = torch.arange(n_pos, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return (torch.cos(ang) * attn_factor).float(), (torch.sin(ang) * attn_factor).float()


def softmax_scale(cfg):
    scale = (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]) ** -0.5
    rs = cfg.get("rope_scaling")
    if rs and rs.get("mscale_all_dim"):
        m = yarn_mscale(float(rs["factor"]), float(rs["mscale_all_dim"]))
        scale *= m * m
    return scale


def rope(x, cos, sin):
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def linear(n_in, n_out):
    lin = nn.Linear(n_in, n_out, bias=False)
    nn.init.normal_(lin.weight, std=0.02)
    return lin


class MLA(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, h = cfg["hidden_size"], cfg["num_attention_heads"]
        self.h = h
        self.nope, self.rope_d, self.vd = (cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"],
                                           cfg["v_head_dim"])
        self.kvr = cfg["kv_lora_rank"]
        eps = cfg["rms_norm_eps"]
        self.q_a_proj = linear(d, cfg["q_lora_rank"])
        self.q_a_layernorm = RMSNorm(cfg["q_lora_rank"], eps)
        self.q_b_proj = linear(cfg["q_lora_rank"], h * (self.nope + self.rope_d))
        self.kv_a_proj_with_mqa = linear(d, self.kvr + self.rope_d)
        self.kv_a_layernorm = RMSNorm(self.kvr, eps)
        self.kv_b_proj = linear(self.kvr, h * (self.nope + self.vd))
        self.o_proj = linear(h * self.vd, d)
        self.scale = softmax_scale(cfg)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        q = q.view(b, t, self.h, self.nope + self.rope_d).transpose(1, 2)   # [b, h, t, .]
        q_nope, q_pe = q[..., :self.nope], rope(q[..., self.nope:], cos, sin)
        kv_a = self.kv_a_proj_with_mqa(x)
        c = self.kv_a_layernorm(kv_a[..., :self.kvr])
        k_pe = rope(kv_a[..., self.kvr:], cos, sin)[:, None]                # [b, 1, t, rope]
        kv = self.kv_b_proj(c).view(b, t, self.h, self.nope + self.vd).transpose(1, 2)
        k_nope, v = kv[..., :self.nope], kv[..., self.nope:]
        scores = (q_nope @ k_nope.transpose(-1, -2) + q_pe @ k_pe.transpose(-1, -2)) * self.scale
        probs = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        out = (probs @ v).transpose(1, 2).reshape(b, t, self.h * self.vd)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, d, inter):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = linear(d, inter), linear(d, inter), \
            linear(inter, d)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.e = cfg["n_routed_experts"]
        self.k = cfg["num_experts_per_tok"]
        self.n_group, self.topk_group = cfg["n_group"], cfg["topk_group"]
        self.scaling = float(cfg["routed_scaling_factor"])
        self.weight = nn.Parameter(torch.randn(self.e, cfg["hidden_size"]) * 0.02)
        self.register_buffer("e_score_correction_bias", torch.zeros(self.e))

    def forward(self, x):
        """x [n, d] -> (idx [n, k], weight [n, k], scores [n, e])."""
        scores = torch.sigmoid(x @ self.weight.t())
        with torch.no_grad():
            choice = scores + self.e_score_correction_bias
            g = choice.view(-1, self.n_group, self.e // self.n_group)
            group_score = g.topk(2, dim=-1).values.sum(-1)
            keep = torch.zeros_like(group_score, dtype=torch.bool)
            keep.scatter_(1, group_score.topk(self.topk_group, dim=-1).indices, True)
            keep = keep[:, :, None].expand_as(g).reshape(-1, self.e)
            idx = choice.masked_fill(~keep, float("-inf")).topk(self.k, dim=-1).indices
        w = scores.gather(1, idx)
        w = w / w.sum(-1, keepdim=True) * self.scaling
        return idx, w, scores


class MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.gate = Gate(cfg)
        self.experts = nn.ModuleList(MLP(d, cfg["moe_intermediate_size"])
                                     for _ in range(cfg["n_routed_experts"]))
        self.shared_experts = MLP(d, cfg["moe_intermediate_size"] * cfg["n_shared_experts"])
        self.load = torch.zeros(cfg["n_routed_experts"])   # tokens per expert, last forward
        self.balance_loss = torch.zeros(())

    def forward(self, x, seq_aux_alpha=0.0):
        b, t, d = x.shape
        flat = x.reshape(-1, d)
        idx, w, scores = self.gate(flat)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = (idx == e).nonzero(as_tuple=True)
            if rows.numel():
                out.index_add_(0, rows, expert(flat[rows]) * w[rows, slot, None])
        self.load = torch.bincount(idx.flatten(), minlength=self.gate.e).float().detach()
        if seq_aux_alpha > 0 and self.training:
            # Sequence-wise balance loss: f_i = E/(K T) * tokens of the sequence routed to i,
            # P_i = mean over the sequence of the normalized scores.
            k, e = self.gate.k, self.gate.e
            counts = F.one_hot(idx.view(b, t * k), e).sum(1).float()          # [b, e]
            f = counts * e / (k * t)
            p = (scores / scores.sum(-1, keepdim=True)).view(b, t, e).mean(1)
            self.balance_loss = seq_aux_alpha * (f * p).sum(-1).mean()
        else:
            self.balance_loss = torch.zeros(())
        return (out + self.shared_experts(flat)).view(b, t, d)


class Block(nn.Module):
    def __init__(self, cfg, moe):
        super().__init__()
        eps = cfg["rms_norm_eps"]
        self.input_layernorm = RMSNorm(cfg["hidden_size"], eps)
        self.self_attn = MLA(cfg)
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], eps)
        self.mlp = MoE(cfg) if moe else MLP(cfg["hidden_size"], cfg["intermediate_size"])

    def forward(self, x, cos, sin, mask, alpha):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        y = self.post_attention_layernorm(x)
        return x + (self.mlp(y, alpha) if isinstance(self.mlp, MoE) else self.mlp(y))


class MTP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
        self.enorm = RMSNorm(d, eps)
        self.hnorm = RMSNorm(d, eps)
        self.eh_proj = linear(2 * d, d)
        self.block = Block(cfg, moe=True)
        self.shared_head_norm = RMSNorm(d, eps)


def check_supported(cfg):
    """This trainer implements one point of DeepSeek-V3's configuration space (the reference
    covers the rest): refuse any other before training, not after."""
    want = {"scoring_func": "sigmoid", "topk_method": "noaux_tc", "norm_topk_prob": True,
            "moe_layer_freq": 1, "tie_word_embeddings": False, "hidden_act": "silu",
            "num_nextn_predict_layers": 1}
    bad = {k: cfg.get(k) for k, v in want.items() if cfg.get(k) != v}
    rs = cfg.get("rope_scaling") or {}
    if cfg.get("q_lora_rank") is None:
        bad["q_lora_rank"] = None
    if cfg["num_experts_per_tok"] < 2 or cfg["n_routed_experts"] % cfg["n_group"]:
        bad["num_experts_per_tok/n_group"] = (cfg["num_experts_per_tok"], cfg["n_group"])
    missing = {"type", "factor", "original_max_position_embeddings", "beta_fast", "beta_slow",
               "mscale", "mscale_all_dim"} - set(rs)
    if rs.get("type") != "yarn" or missing:
        bad["rope_scaling"] = rs
    if bad:
        raise ValueError("unsupported config for training/tiny/model.py: %s" % bad)


class TinyDeepseekV3(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        check_supported(cfg)
        self.cfg = cfg
        d = cfg["hidden_size"]
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], d)
        nn.init.normal_(self.embed_tokens.weight, std=1.0)
        self.layers = nn.ModuleList(Block(cfg, moe=i >= cfg["first_k_dense_replace"])
                                    for i in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(d, cfg["rms_norm_eps"])
        self.lm_head = linear(d, cfg["vocab_size"])
        self.mtp = MTP(cfg)
        cos, sin = rope_tables(cfg, cfg["max_position_embeddings"])
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def moe_layers(self):
        return [m for m in self.modules() if isinstance(m, MoE)]

    def forward(self, ids, alpha=0.0):
        """ids [b, t] -> (main logits [b, t, vocab], final normed hidden [b, t, d])."""
        t = ids.shape[1]
        cos, sin = self.cos[:t], self.sin[:t]
        mask = torch.ones(t, t, dtype=torch.bool, device=ids.device).triu(1)
        h = self.embed_tokens(ids)
        for layer in self.layers:
            h = layer(h, cos, sin, mask, alpha)
        h = self.norm(h)
        return self.lm_head(h), h

    def mtp_forward(self, hidden, next_ids, alpha=0.0):
        """hidden [b, t, d] (final normed, positions 0..t-1), next_ids [b, t] (token i+1 for
        position i) -> logits [b, t, vocab] predicting token i+2."""
        t = next_ids.shape[1]
        cos, sin = self.cos[:t], self.sin[:t]
        mask = torch.ones(t, t, dtype=torch.bool, device=next_ids.device).triu(1)
        m = self.mtp
        x = m.eh_proj(torch.cat([m.enorm(self.embed_tokens(next_ids)), m.hnorm(hidden)], -1))
        x = m.block(x, cos, sin, mask, alpha)
        return self.lm_head(m.shared_head_norm(x))

    @torch.no_grad()
    def update_balance_bias(self, speed):
        for moe in self.moe_layers():
            load = moe.load
            moe.gate.e_score_correction_bias += speed * torch.sign(load.mean() - load)

    def hf_tensors(self):
        """Hugging Face DeepSeek-V3 name -> this model's live tensor (parameters and routing
        biases). The MTP layer's embed_tokens and shared_head.head name the shared embedding and
        output head (DeepSeek's checkpoints store copies there)."""
        n = self.cfg["num_hidden_layers"]
        out = {}
        for name, t in self.state_dict(keep_vars=True).items():
            if name.startswith("mtp."):
                continue
            out[name if name.startswith("lm_head.") else "model." + name] = t
        p = "model.layers.%d." % n
        for name, t in self.mtp.state_dict(keep_vars=True).items():
            if name.startswith("block."):
                out[p + name[len("block."):]] = t
            elif name.startswith("shared_head_norm."):
                out[p + "shared_head.norm.weight"] = t
            else:
                out[p + name] = t
        out[p + "embed_tokens.weight"] = self.embed_tokens.weight
        out[p + "shared_head.head.weight"] = self.lm_head.weight
        return out

    def hf_state_dict(self):
        """hf_tensors() as detached float32 copies."""
        return {k: v.detach().float().clone() for k, v in self.hf_tensors().items()}

    @torch.no_grad()
    def load_hf_state_dict(self, tensors):
        """Inverse of hf_state_dict: tensors maps every Hugging Face name to a tensor."""
        live = self.hf_tensors()
        if set(live) != set(tensors):
            raise ValueError("tensor names differ: missing %s, unexpected %s"
                             % (sorted(set(live) - set(tensors))[:3],
                                sorted(set(tensors) - set(live))[:3]))
        for name, t in live.items():
            t.copy_(tensors[name].to(t.dtype))
