#include "tests/support/backend_op_cases.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "backend/quantize.h"
#include "tests/support/xorshift.h"

namespace moeserve {
namespace {

// Dims per op:
//   gather_rows    {table rows, d, n indices}
//   rms_norm, add  {n, d}
//   linear         {n, k, m}
//   head_linear    {n, heads, k, m}
//   silu_mul       {n, f}
//   rope           {n, heads, rope_dim}
//   kv_cache_write {n, width, blocks, block_size}
//   mla_attention  {sequences, context, heads, latent, rope_dim, block_size[, queries, step]}:
//                  sequence s holds context - s·step positions (step 0 if absent) and its last
//                  `queries` (1 if absent: decode; more: a prefill chunk after cached ones)
//                  are the query tokens, sequence by sequence
//   moe_gate       {n, experts, top_k, groups, top groups, routing}: routing 0 V3 (sigmoid,
//                  noaux_tc, bias, renormalised, × 2.5), 1 V2-Lite (softmax, greedy), 2 V2
//                  (softmax, group max, × 16), 3 V3 with experts [64, 128) local (EP),
//                  4 V3 on logits of few distinct values (ties); out [n, 2·top_k] = (ids, weights)
//   moe_ffn        {n, experts, top_k, d, f[, routing]}: routing 0 spreads slot j of token t
//                  over experts (7t + 13j) % experts; 1 sends every token's slot 0 to expert 0;
//                  2 is 0 with ids of -1 for token 0 and every slot with (t + j) % 3 == 0
//   add_rms_norm   {n, d}
//   rope_kv_write  {n, width, rope_dim, blocks, block_size}
//   gate_up_silu   {n, k, f}
//   log_softmax_topk {n, vocab, k}: the log-probabilities are compared
//   sample         {n, vocab, mode}: mode 0 greedy; 1 temperature 0.8, top_k 50, top_p 0.9,
//                  min_p 0.05, penalties, a bias and a mask; out [n, 2] = (token, logprob);
//                  modes 2-9 one feature each at temperature 1 (SampleMode)
// sample's dims[2].
enum class SampleMode : int64_t {
  kGreedy = 0,
  kAll = 1,
  kTemperature = 2,
  kTopK = 3,
  kTopP = 4,
  kMinP = 5,
  kPenalties = 6,
  kBias = 7,
  kMask = 8,
  kTopLogprobs = 9,
};

struct Prepared {
  std::function<void()> run;
  Tensor out;
  // When set, builds the output to compare from several tensors after a run (so the timed
  // run stays the op alone); otherwise `out` is downloaded.
  std::function<Tensor()> combined_out;
  double bytes = 0;
  double flops = 0;
};

// The inputs of one case. With `meta`, tensors have shapes but no memory (for
// the figures alone).
class Inputs {
 public:
  // Activations of the case's dtype `act`: BF16 values (rounded from the same
  // random draws) on every backend, stored as BF16 where the backend computes
  // BF16 activations and widened exactly to F32 where it does not (the CPU
  // reference).
  Inputs(Backend& be, uint64_t seed, bool meta, DType act)
      : be_(be),
        rng_{seed * 0x9E3779B97F4A7C15ull + 1},
        meta_(meta),
        act_(act),
        stored_act_(be.supports_activation_dtype(act) ? act : DType::kF32) {}

  // Host values uniform in [lo, hi], as `dtype` (FP8 gets 128×128 F32 block
  // scales; I8 is quantize_int8 of F32 values, with per-row scales).
  Tensor host(DType dtype, std::vector<int64_t> shape, float lo = -1.0f, float hi = 1.0f) {
    if (meta_) {
      Tensor t(nullptr, dtype, shape);
      if (dtype == DType::kI8) {
        std::vector<int64_t> s_shape = shape;
        s_shape.back() = 1;
        t.set_block_scales(Tensor(nullptr, DType::kF32, s_shape), 1, shape.back());
      }
      if (dtype == DType::kFP8E4M3) {
        std::vector<int64_t> s_shape(shape.begin(), shape.end() - 2);
        s_shape.push_back((shape[shape.size() - 2] + 127) / 128);
        s_shape.push_back((shape.back() + 127) / 128);
        t.set_block_scales(Tensor(nullptr, DType::kF32, s_shape), 128, 128);
      }
      return t;
    }
    if (dtype == DType::kI8) return quantize_int8(host(DType::kF32, std::move(shape), lo, hi));
    Tensor t = Tensor::empty_host(dtype, shape);
    for (int64_t i = 0; i < t.numel(); ++i) {
      const uint64_t r = rng_();
      const float v = lo + (hi - lo) * static_cast<float>(r >> 40) * (1.0f / 16777216.0f);
      switch (dtype) {
        case DType::kF32: t.data<float>()[i] = v; break;
        case DType::kBF16: t.data<uint16_t>()[i] = f32_to_bf16(v); break;
        case DType::kF16: t.data<uint16_t>()[i] = f32_to_f16(v); break;
        case DType::kFP8E4M3: {  // any finite code
          uint8_t code = static_cast<uint8_t>(r);
          if ((code & 0x7F) == 0x7F) code = 0x3F;
          t.data<uint8_t>()[i] = code;
          break;
        }
        default: MS_CHECK(false, "op case dtype ", dtype_name(dtype));
      }
    }
    if (dtype == DType::kFP8E4M3) {
      const int64_t rows = shape[shape.size() - 2], cols = shape.back();
      std::vector<int64_t> s_shape(shape.begin(), shape.end() - 2);
      s_shape.push_back((rows + 127) / 128);
      s_shape.push_back((cols + 127) / 128);
      Tensor s = Tensor::empty_host(DType::kF32, s_shape);
      for (int64_t i = 0; i < s.numel(); ++i)
        s.data<float>()[i] = (1.0f + static_cast<float>(rng_() >> 40) / 16777216.0f) / 448.0f;
      t.set_block_scales(s, 128, 128);
    }
    return t;
  }
  Tensor dev(const Tensor& h) {
    if (meta_) return h;
    Tensor d = be_.alloc(h.dtype(), h.shape());
    be_.copy(h, d);
    return d;
  }
  Tensor random(DType dtype, std::vector<int64_t> shape, float lo = -1.0f, float hi = 1.0f) {
    return dev(host(dtype, std::move(shape), lo, hi));
  }
  // An activation input / output (see the constructor).
  Tensor act(std::vector<int64_t> shape, float lo = -1.0f, float hi = 1.0f) {
    if (meta_) return Tensor(nullptr, stored_act_, std::move(shape));
    const Tensor h = host(act_, std::move(shape), lo, hi);
    if (h.dtype() == stored_act_) return dev(h);
    Tensor wide = Tensor::empty_host(DType::kF32, h.shape());
    const std::vector<float> v = to_f32_vector(h);
    std::copy(v.begin(), v.end(), wide.data<float>());
    return dev(wide);
  }
  Tensor act_out(std::vector<int64_t> shape) { return zeros(stored_act_, std::move(shape)); }
  Tensor weight(DType dtype, std::vector<int64_t> shape) {
    Tensor h = host(dtype, std::move(shape));
    return meta_ ? h : be_.prepare_weight(h);
  }
  Tensor ints(const std::vector<int32_t>& v, std::vector<int64_t> shape) {
    if (meta_) return Tensor(nullptr, DType::kI32, std::move(shape));
    Tensor h = Tensor::empty_host(DType::kI32, std::move(shape));
    std::copy(v.begin(), v.end(), h.data<int32_t>());
    return dev(h);
  }
  Tensor zeros(DType dtype, std::vector<int64_t> shape) {
    if (meta_) return Tensor(nullptr, dtype, std::move(shape));
    return dev(Tensor::empty_host(dtype, std::move(shape)));
  }
  int64_t randint(int64_t n) { return static_cast<int64_t>(rng_() % static_cast<uint64_t>(n)); }

 private:
  Backend& be_;
  Xorshift64Star rng_;  // fast: a case's inputs are up to 10^8 values
  bool meta_;
  DType act_;         // the case's activation dtype
  DType stored_act_;  // what this backend gets: act_, or F32 where it lacks act_
};

double bytes_of(const Tensor& t) {
  double b = static_cast<double>(t.n_bytes());
  if (t.block_scales()) b += static_cast<double>(t.block_scales()->n_bytes());
  return b;
}

Prepared prepare(Backend& be, const OpCase& c, uint64_t seed, bool meta = false) {
  Inputs in(be, seed, meta, c.act);
  const std::vector<int64_t>& d = c.dims;
  Prepared p;
  switch (c.op) {
    case Op::kGatherRows: {
      Tensor table = in.weight(c.dtype, {d[0], d[1]});
      std::vector<int32_t> idx(static_cast<size_t>(d[2]));
      for (int32_t& i : idx) i = static_cast<int32_t>(in.randint(d[0]));
      Tensor ids = in.ints(idx, {d[2]});
      p.out = in.act_out({d[2], d[1]});
      p.run = [&be, table, ids, out = p.out] { be.gather_rows(table, ids, out); };
      p.bytes = static_cast<double>(d[2] * d[1]) * (dtype_bits(c.dtype) / 8.0 + 4);
      break;
    }
    case Op::kRmsNorm: {
      Tensor x = in.act({d[0], d[1]});
      Tensor w = in.weight(c.dtype, {d[1]});
      p.out = in.act_out({d[0], d[1]});
      p.run = [&be, x, w, out = p.out] { be.rms_norm(x, w, 1e-6f, out); };
      p.bytes = 8.0 * static_cast<double>(d[0] * d[1]) + bytes_of(w);
      p.flops = 4.0 * static_cast<double>(d[0] * d[1]);
      break;
    }
    case Op::kAdd: {
      Tensor a = in.act({d[0], d[1]}), b = in.act({d[0], d[1]});
      p.out = in.act_out({d[0], d[1]});
      p.run = [&be, a, b, out = p.out] { be.add(a, b, out); };
      p.bytes = 12.0 * static_cast<double>(d[0] * d[1]);
      p.flops = static_cast<double>(d[0] * d[1]);
      break;
    }
    case Op::kLinear: {
      Tensor x = in.act({d[0], d[1]});
      Tensor w = in.weight(c.dtype, {d[2], d[1]});
      p.out = in.act_out({d[0], d[2]});
      p.run = [&be, x, w, out = p.out] { be.linear(x, w, out); };
      p.bytes = bytes_of(w) + 4.0 * static_cast<double>(d[0] * (d[1] + d[2]));
      p.flops = 2.0 * static_cast<double>(d[0] * d[1] * d[2]);
      break;
    }
    case Op::kHeadLinear: {
      Tensor x = in.act({d[0], d[1], d[2]});
      Tensor w = in.weight(c.dtype, {d[1], d[3], d[2]});
      p.out = in.act_out({d[0], d[1], d[3]});
      p.run = [&be, x, w, out = p.out] { be.head_linear(x, w, out); };
      p.bytes = bytes_of(w) + 4.0 * static_cast<double>(d[0] * d[1] * (d[2] + d[3]));
      p.flops = 2.0 * static_cast<double>(d[0] * d[1] * d[2] * d[3]);
      break;
    }
    case Op::kSiluMul: {
      Tensor gu = in.act({d[0], 2 * d[1]}, -4.0f, 4.0f);
      p.out = in.act_out({d[0], d[1]});
      p.run = [&be, gu, out = p.out] { be.silu_mul(gu, out); };
      p.bytes = 12.0 * static_cast<double>(d[0] * d[1]);
      p.flops = 5.0 * static_cast<double>(d[0] * d[1]);
      break;
    }
    case Op::kRope: {
      const int64_t n = d[0], heads = d[1], rd = d[2], max_pos = 4096;
      Tensor x = in.act({n, heads, rd});
      Tensor cs = in.random(DType::kF32, {max_pos, rd / 2, 2});
      std::vector<int32_t> pos(static_cast<size_t>(n));
      for (int32_t& q : pos) q = static_cast<int32_t>(in.randint(max_pos));
      Tensor positions = in.ints(pos, {n});
      p.out = x;  // in place: each run rotates again, the same way on every backend
      p.run = [&be, x, positions, cs] { be.rope(x, positions, cs); };
      p.bytes = 8.0 * static_cast<double>(n * heads * rd) + 4.0 * static_cast<double>(n * rd);
      p.flops = 6.0 * static_cast<double>(n * heads * rd / 2);
      break;
    }
    case Op::kKvCacheWrite: {
      const int64_t n = d[0], width = d[1], blocks = d[2], bs = d[3];
      Tensor kv = in.act({n, width});
      std::vector<int32_t> slots(static_cast<size_t>(blocks * bs));
      for (size_t i = 0; i < slots.size(); ++i) slots[i] = static_cast<int32_t>(i);
      std::shuffle(slots.begin(), slots.end(), std::mt19937(static_cast<unsigned>(seed)));
      slots.resize(static_cast<size_t>(n));
      Tensor slot_mapping = in.ints(slots, {n});
      p.out = in.zeros(c.dtype, {blocks, bs, width});
      p.run = [&be, kv, slot_mapping, out = p.out] { be.kv_cache_write(kv, slot_mapping, out); };
      p.bytes = static_cast<double>(n * width) * (4.0 + dtype_bits(c.dtype) / 8.0);
      break;
    }
    case Op::kMlaAttention: {
      const int64_t seqs = d[0], ctx = d[1], heads = d[2], latent = d[3], rd = d[4], bs = d[5];
      const int64_t queries = d.size() > 6 ? d[6] : 1, step = d.size() > 7 ? d[7] : 0;
      const int64_t max_blocks = (ctx + bs - 1) / bs;
      std::vector<int64_t> seq_ctx(static_cast<size_t>(seqs));
      int64_t blocks = 0, n = 0, positions = 0;
      for (int64_t s = 0; s < seqs; ++s) {
        seq_ctx[static_cast<size_t>(s)] = std::max<int64_t>(1, ctx - s * step);
        blocks += (seq_ctx[static_cast<size_t>(s)] + bs - 1) / bs;
        n += std::min(queries, seq_ctx[static_cast<size_t>(s)]);
      }
      Tensor cache = in.random(c.dtype, {blocks, bs, latent + rd});
      std::vector<int32_t> ids(static_cast<size_t>(blocks));
      for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
      std::shuffle(ids.begin(), ids.end(), std::mt19937(static_cast<unsigned>(seed)));
      // Entries past a sequence's blocks are -1: no backend may read them.
      std::vector<int32_t> table(static_cast<size_t>(seqs * max_blocks), -1);
      std::vector<int32_t> seq, pos, slot;
      size_t next_id = 0;
      for (int64_t s = 0; s < seqs; ++s) {
        const int64_t sc = seq_ctx[static_cast<size_t>(s)];
        for (int64_t b = 0; b < (sc + bs - 1) / bs; ++b) {
          table[static_cast<size_t>(s * max_blocks + b)] = ids[next_id++];
        }
        for (int64_t p = sc - std::min(queries, sc); p < sc; ++p) {
          seq.push_back(static_cast<int32_t>(s));
          pos.push_back(static_cast<int32_t>(p));
          slot.push_back(static_cast<int32_t>(
              table[static_cast<size_t>(s * max_blocks + p / bs)] * bs + p % bs));
          positions += p + 1;
        }
      }
      AttentionBatch batch;
      batch.token_seq = in.ints(seq, {n});
      batch.token_pos = in.ints(pos, {n});
      batch.slot_mapping = in.ints(slot, {n});
      batch.block_tables = in.ints(table, {seqs, max_blocks});
      batch.block_size = static_cast<int>(bs);
      Tensor ql = in.act({n, heads, latent}, -0.1f, 0.1f);
      Tensor qr = in.act({n, heads, rd}, -0.1f, 0.1f);
      p.out = in.act_out({n, heads, latent});
      const float scale = 1.0f / std::sqrt(static_cast<float>(latent + rd));
      p.run = [&be, ql, qr, cache, batch, scale, out = p.out] {
        be.mla_attention(ql, qr, cache, batch, scale, out);
      };
      // Each sequence's rows are read once (all its heads and query tokens share them).
      double rows = 0;
      for (int64_t sc : seq_ctx) rows += static_cast<double>(sc);
      p.bytes = rows * static_cast<double>(latent + rd) * (dtype_bits(c.dtype) / 8.0);
      p.flops = 2.0 * static_cast<double>(heads * positions * (2 * latent + rd));
      break;
    }
    case Op::kMoeGate: {
      const int64_t n = d[0], experts = d[1], k = d[2];
      const int64_t routing = d.size() > 5 ? d[5] : 0;
      Tensor logits_host = in.host(DType::kF32, {n, experts}, -3.0f, 3.0f);
      if (routing == 4 && !meta) {  // few distinct values: ties in scores, choices, groups
        for (int64_t i = 0; i < logits_host.numel(); ++i) {
          logits_host.data<float>()[i] = std::round(logits_host.data<float>()[i]);
        }
      }
      Tensor logits = in.dev(logits_host);
      GateParams g;
      g.top_k = static_cast<int>(k);
      g.n_group = static_cast<int>(d[3]);
      g.topk_group = static_cast<int>(d[4]);
      Tensor bias;
      if (routing == 1 || routing == 2) {
        g.scoring = ScoringFunc::kSoftmax;
        g.method = routing == 1 ? TopkMethod::kGreedy : TopkMethod::kGroupLimitedGreedy;
        g.routed_scaling_factor = routing == 1 ? 1.0f : 16.0f;
      } else {
        bias = in.random(DType::kF32, {experts}, -0.1f, 0.1f);
        g.scoring = ScoringFunc::kSigmoid;
        g.method = TopkMethod::kNoauxTc;
        g.norm_topk_prob = true;
        g.routed_scaling_factor = 2.5f;
        if (routing == 3) {
          g.local_begin = 64;
          g.local_count = 64;
        }
      }
      Tensor ids = in.zeros(DType::kI32, {n, k});
      Tensor w = in.zeros(DType::kF32, {n, k});
      p.run = [&be, logits, bias, g, ids, w] { be.moe_gate(logits, bias, g, ids, w); };
      p.combined_out = [&be, ids, w] {
        Tensor ids_host = Tensor::empty_host(DType::kI32, ids.shape());
        Tensor w_host = Tensor::empty_host(DType::kF32, w.shape());
        be.copy(ids, ids_host);
        be.copy(w, w_host);
        be.synchronize();
        const int64_t rows = ids.dim(0), kk = ids.dim(1);
        Tensor out = Tensor::empty_host(DType::kF32, {rows, 2 * kk});
        for (int64_t t = 0; t < rows; ++t) {
          for (int64_t j = 0; j < kk; ++j) {
            out.data<float>()[t * 2 * kk + j] =
                static_cast<float>(ids_host.data<int32_t>()[t * kk + j]);
            out.data<float>()[t * 2 * kk + kk + j] = w_host.data<float>()[t * kk + j];
          }
        }
        return out;
      };
      p.bytes = 4.0 * static_cast<double>(n * experts);
      break;
    }
    case Op::kMoeFfn: {
      const int64_t n = d[0], experts = d[1], k = d[2], dm = d[3], f = d[4];
      Tensor x = in.act({n, dm});
      Tensor gu = in.weight(c.dtype, {experts, 2 * f, dm});
      Tensor down = in.weight(c.dtype, {experts, dm, f});
      const int64_t routing = d.size() > 5 ? d[5] : 0;
      std::vector<int32_t> idx(static_cast<size_t>(n * k));
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t j = 0; j < k; ++j) {
          int32_t e = static_cast<int32_t>((t * 7 + j * 13) % experts);
          if (routing == 1)
            e = j == 0 ? 0 : static_cast<int32_t>(1 + (t * 7 + j * 13) % (experts - 1));
          if (routing == 2 && (t == 0 || (t + j) % 3 == 0)) e = -1;
          idx[static_cast<size_t>(t * k + j)] = e;
        }
      }
      Tensor ids = in.ints(idx, {n, k});
      Tensor w = in.random(DType::kF32, {n, k}, 0.05f, 0.5f);
      p.out = in.act_out({n, dm});
      p.run = [&be, x, ids, w, gu, down, out = p.out] { be.moe_ffn(x, ids, w, gu, down, out); };
      const double used =
          std::min<double>(static_cast<double>(experts), static_cast<double>(n * k));
      p.bytes = used / static_cast<double>(experts) * (bytes_of(gu) + bytes_of(down));
      p.flops = 6.0 * static_cast<double>(n * k * dm * f);
      break;
    }
    case Op::kAddRmsNorm: {
      Tensor residual = in.act({d[0], d[1]});
      Tensor x = in.act({d[0], d[1]});
      Tensor w = in.weight(c.dtype, {d[1]});
      p.out = in.act_out({d[0], d[1]});
      // Each run adds x to the residual again, the same way on every backend.
      p.run = [&be, residual, x, w, out = p.out] { be.add_rms_norm(residual, x, w, 1e-6f, out); };
      p.bytes = 16.0 * static_cast<double>(d[0] * d[1]) + bytes_of(w);
      p.flops = 5.0 * static_cast<double>(d[0] * d[1]);
      break;
    }
    case Op::kRopeKvWrite: {
      const int64_t n = d[0], width = d[1], rd = d[2], blocks = d[3], bs = d[4], max_pos = 4096;
      Tensor kv = in.act({n, width});
      Tensor cs = in.random(DType::kF32, {max_pos, rd / 2, 2});
      std::vector<int32_t> pos(static_cast<size_t>(n));
      for (int32_t& q : pos) q = static_cast<int32_t>(in.randint(max_pos));
      std::vector<int32_t> slots(static_cast<size_t>(blocks * bs));
      for (size_t i = 0; i < slots.size(); ++i) slots[i] = static_cast<int32_t>(i);
      std::shuffle(slots.begin(), slots.end(), std::mt19937(static_cast<unsigned>(seed)));
      slots.resize(static_cast<size_t>(n));
      Tensor positions = in.ints(pos, {n}), slot_mapping = in.ints(slots, {n});
      p.out = in.zeros(c.dtype, {blocks, bs, width});
      p.run = [&be, kv, width, rd, positions, cs, slot_mapping, out = p.out] {
        be.rope_kv_write(kv, width - rd, positions, cs, slot_mapping, out);
      };
      p.bytes = static_cast<double>(n * width) * (4.0 + dtype_bits(c.dtype) / 8.0) +
                4.0 * static_cast<double>(n * rd);
      p.flops = 3.0 * static_cast<double>(n * rd);
      break;
    }
    case Op::kGateUpSilu: {
      const int64_t n = d[0], k = d[1], f = d[2];
      Tensor x = in.act({n, k});
      Tensor w = in.weight(c.dtype, {2 * f, k});
      Tensor scratch = in.act_out({n, 2 * f});
      p.out = in.act_out({n, f});
      p.run = [&be, x, w, scratch, out = p.out] { be.gate_up_silu(x, w, scratch, out); };
      p.bytes = bytes_of(w) + 4.0 * static_cast<double>(n * (k + f));
      p.flops = 4.0 * static_cast<double>(n * k * f);
      break;
    }
    case Op::kLogSoftmaxTopk: {
      const int64_t n = d[0], vocab = d[1], k = d[2];
      Tensor logits = in.random(DType::kF32, {n, vocab}, -20.0f, 20.0f);
      Tensor ids = in.zeros(DType::kI32, {n, k});
      p.out = in.zeros(DType::kF32, {n, k});
      p.run = [&be, logits, ids, out = p.out] { be.log_softmax_topk(logits, ids, out); };
      p.bytes = 4.0 * static_cast<double>(n * vocab);
      p.flops = 3.0 * static_cast<double>(n * vocab);
      break;
    }
    case Op::kSample: {
      const int64_t n = d[0], vocab = d[1];
      const auto mode = static_cast<SampleMode>(d[2]);
      Tensor logits = in.random(DType::kF32, {n, vocab}, -8.0f, 8.0f);
      std::vector<PenaltyEntry> penalties;
      for (int i = 0; i < 40; ++i) {
        penalties.push_back({.token = static_cast<int32_t>(in.randint(vocab)),
                             .n_output = static_cast<int32_t>(in.randint(4))});
      }
      std::sort(penalties.begin(), penalties.end(),
                [](const PenaltyEntry& a, const PenaltyEntry& b) { return a.token < b.token; });
      penalties.erase(std::unique(penalties.begin(), penalties.end(),
                                  [](const PenaltyEntry& a, const PenaltyEntry& b) {
                                    return a.token == b.token;
                                  }),
                      penalties.end());
      std::vector<std::pair<int32_t, float>> bias = {{3, 5.0f}, {17, -100.0f}};
      std::vector<int32_t> masked = {1, 2};
      p.out = Tensor::empty_host(DType::kF32, {n, 2});
      p.run = [&be, logits, n, mode, penalties, bias, masked, out = p.out] {
        std::vector<SamplingRow> rows(static_cast<size_t>(n));
        for (size_t r = 0; r < rows.size(); ++r) {
          // Rows in reverse order, so the output's row r is the logits' row n - 1 - r.
          SamplingRow& row = rows[r];
          row.logits_row = n - 1 - static_cast<int64_t>(r);
          row.seed = 1234 + r;
          row.counter = 7;
          if (mode != SampleMode::kGreedy) row.temperature = 1.0f;
          switch (mode) {
            case SampleMode::kGreedy:
            case SampleMode::kTemperature: break;
            case SampleMode::kAll:
              row.temperature = 0.8f;
              row.top_k = 50;
              row.top_p = 0.9f;
              row.min_p = 0.05f;
              row.repetition_penalty = 1.2f;
              row.frequency_penalty = 0.5f;
              row.presence_penalty = 0.3f;
              row.n_top_logprobs = 5;
              row.logit_bias = bias;
              row.penalties = penalties;
              row.masked = masked;
              break;
            case SampleMode::kTopK: row.top_k = 20; break;
            case SampleMode::kTopP: row.top_p = 0.5f; break;
            case SampleMode::kMinP: row.min_p = 0.3f; break;
            case SampleMode::kPenalties:
              row.repetition_penalty = 1.5f;
              row.frequency_penalty = 1.0f;
              row.presence_penalty = 2.0f;
              row.penalties = penalties;
              break;
            case SampleMode::kBias: row.logit_bias = bias; break;
            case SampleMode::kMask: row.masked = masked; break;
            case SampleMode::kTopLogprobs: row.n_top_logprobs = 20; break;
          }
        }
        const std::vector<StatusOr<SampledToken>> got = be.sample(logits, rows);
        for (size_t r = 0; r < rows.size(); ++r) {
          MS_CHECK(got[r].ok(), "sample row ", r, ": ", got[r].status().ToString());
          out.data<float>()[2 * r] = static_cast<float>(got[r]->token);
          out.data<float>()[2 * r + 1] = got[r]->logprob;
        }
      };
      p.bytes = 4.0 * static_cast<double>(n * vocab);
      break;
    }
  }
  return p;
}

// Tolerance of a product with F32 activations and `weights`. A backend may round the
// activations to the weights' 16-bit type for tensor cores (the CUDA backend does):
// per-element relative error up to 2^-9 (BF16) or 2^-12 (F16), about 1.5e-3 (BF16) and
// 2e-4 (F16) of the largest output measured at these widths. FP8 block-scaled weights may
// run as BF16 too (the CUDA backend's W8A16 feeds its tensor cores bf16(fp8 · scale) and
// BF16 x, each within 2^-9 of the CPU's F32 values, independent errors): BF16's 5e-3
// (measured ≤ 2.6e-3). Other weights keep 1e-5 (INT8's exact integer sums).
double tol_16bit(DType weights) {
  return weights == DType::kBF16 || weights == DType::kFP8E4M3 ? 5e-3
         : weights == DType::kF16                              ? 1e-3
                                                               : 1e-5;
}

OpCase make(Op op, DType dtype, std::vector<int64_t> dims, double tolerance,
            DType act = DType::kF32) {
  return {absl::StrCat(op_name(op), " ", dtype_name(dtype), " [", absl::StrJoin(dims, ","), "]",
                       act == DType::kF32 ? "" : absl::StrCat(" act ", dtype_name(act))),
          op,
          dtype,
          std::move(dims),
          tolerance,
          act};
}

}  // namespace

std::vector<OpCase> backend_op_cases() {
  std::vector<OpCase> c;
  // Embedding rows at V2-Lite's hidden 2048 and V3's 7168 (vocabularies cut to keep tests light).
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
    // A device backend may store an F32 table as BF16 (the CUDA backend does:
    // prepare_weight), so its rows are within BF16 rounding, 2^-9.
    c.push_back(make(Op::kGatherRows, t, {8192, 2048, 16}, t == DType::kF32 ? 2e-3 : 0));
  }
  c.push_back(make(Op::kGatherRows, DType::kBF16, {2048, 7168, 64}, 0));
  c.push_back(make(Op::kGatherRows, DType::kI8, {8192, 2048, 16}, 0));
  for (int64_t n : {1, 64}) {
    c.push_back(make(Op::kRmsNorm, DType::kBF16, {n, 7168}, 1e-5));
    c.push_back(make(Op::kRmsNorm, DType::kF32, {n, 512}, 1e-5));
    c.push_back(make(Op::kAdd, DType::kF32, {n, 7168}, 0));
    c.push_back(make(Op::kSiluMul, DType::kF32, {n, 2048}, 1e-5));
  }
  // Projections: decode (n = 1, 8) and prefill (n = 64).
  for (int64_t n : {1, 8, 64}) {
    // INT8 is W8A8: bit-exact integer sums, so other backends match the CPU closely.
    for (DType t : {DType::kBF16, DType::kFP8E4M3, DType::kI8}) {
      const double tol = tol_16bit(t);
      c.push_back(make(Op::kLinear, t, {n, 2048, 3072}, tol));  // V2-Lite q_proj
      c.push_back(make(Op::kLinear, t, {n, 7168, 1536}, tol));  // V3 q_a_proj
    }
  }
  c.push_back(make(Op::kLinear, DType::kF16, {4, 2048, 576}, tol_16bit(DType::kF16)));  // kv_a_proj
  // Edges of the GEMM tiles: odd token counts (3, 17 and 65 straddle the 16- and 128-row
  // tiles), k not a multiple of the 32/64-wide k tiles, odd weight-row counts, the V3 LM
  // head's decode shape.
  for (int64_t n : {3, 17, 65}) c.push_back(make(Op::kLinear, DType::kBF16, {n, 1032, 777}, 5e-3));
  c.push_back(make(Op::kLinear, DType::kF16, {17, 520, 1001}, 1e-3));
  // Absorbed MLA: W_UK per head, then W_UV (V2-Lite: 16 heads, nope 128, latent 512; V3:
  // 128 heads, one token).
  c.push_back(make(Op::kHeadLinear, DType::kBF16, {4, 16, 128, 512}, 5e-3));
  c.push_back(make(Op::kHeadLinear, DType::kBF16, {4, 16, 512, 128}, 5e-3));
  c.push_back(make(Op::kHeadLinear, DType::kBF16, {1, 128, 128, 512}, 5e-3));
  c.push_back(make(Op::kHeadLinear, DType::kBF16, {33, 3, 136, 72}, 5e-3));
  c.push_back(make(Op::kHeadLinear, DType::kI8, {4, 16, 128, 512}, 1e-5));
  // FP8 per-head weights with per-head block scales (the loader builds W_UK / W_UV in F32 from
  // kv_b_proj, but the op takes FP8 like linear); k = 136 ends mid-block.
  c.push_back(make(Op::kHeadLinear, DType::kFP8E4M3, {4, 16, 128, 512}, 5e-3));
  c.push_back(make(Op::kHeadLinear, DType::kFP8E4M3, {33, 3, 136, 72}, 5e-3));
  c.push_back(make(Op::kRope, DType::kF32, {64, 16, 64}, 1e-5));
  c.push_back(make(Op::kRope, DType::kF32, {3, 128, 64}, 1e-5));  // V3's 128 query heads
  c.push_back(make(Op::kRope, DType::kF32, {5, 1, 64}, 1e-5));    // the shared rope key
  // MLA over the 576-wide latent cache rows. The tolerance is BF16's: the CUDA kernel rounds
  // Q and the softmax weights P (and an F32 cache) to BF16 for its tensor cores, 2^-9 relative
  // per term; measured up to 2.4e-3 of the largest output.
  constexpr double kMlaTol = 5e-3;
  for (DType t : {DType::kF32, DType::kBF16}) {
    c.push_back(make(Op::kKvCacheWrite, t, {64, 576, 64, 16}, 0));
    c.push_back(make(Op::kKvCacheWrite, t, {7, 576, 3, 64}, 0));
    // V2-Lite decode (16 heads): many blocks of 16, a single position, 17 positions.
    c.push_back(make(Op::kMlaAttention, t, {4, 1000, 16, 512, 64, 16}, kMlaTol));
    c.push_back(make(Op::kMlaAttention, t, {3, 1, 16, 512, 64, 16}, kMlaTol));
    c.push_back(make(Op::kMlaAttention, t, {2, 17, 16, 512, 64, 16}, kMlaTol));
  }
  // V3 decode (128 heads) over blocks of 64, past 1000 positions.
  c.push_back(make(Op::kMlaAttention, DType::kBF16, {2, 1033, 128, 512, 64, 64}, kMlaTol));
  // A decode batch mixing lengths 700, 527, 354 and 181.
  c.push_back(make(Op::kMlaAttention, DType::kBF16, {4, 700, 16, 512, 64, 16, 1, 173}, kMlaTol));
  // Chunked prefill: 37 new tokens after 263 cached ones; sequences of different lengths with
  // 9 new tokens each (blocks of 64); V3's heads with 5 new tokens.
  c.push_back(make(Op::kMlaAttention, DType::kBF16, {2, 300, 16, 512, 64, 16, 37}, kMlaTol));
  c.push_back(make(Op::kMlaAttention, DType::kF32, {3, 200, 16, 512, 64, 64, 9, 61}, kMlaTol));
  c.push_back(make(Op::kMlaAttention, DType::kBF16, {1, 77, 128, 512, 64, 64, 5}, kMlaTol));
  c.push_back(make(Op::kMoeGate, DType::kF32, {64, 256, 8, 8, 4}, 0));  // V3 routing
  // Gating and sampling: exact agreement is expected (docs/cuda_backend.md).
  for (int64_t n : {1, 17}) {
    c.push_back(make(Op::kMoeGate, DType::kF32, {n, 256, 8, 8, 4, 0}, 0));
    c.push_back(make(Op::kMoeGate, DType::kF32, {n, 64, 6, 1, 1, 1}, 0));  // V2-Lite
  }
  c.push_back(make(Op::kMoeGate, DType::kF32, {17, 160, 6, 8, 3, 2}, 0));  // V2
  c.push_back(make(Op::kMoeGate, DType::kF32, {17, 256, 8, 8, 4, 3}, 0));  // V3, EP
  c.push_back(make(Op::kMoeGate, DType::kF32, {17, 256, 8, 8, 4, 4}, 0));  // V3, ties
  for (int64_t n : {1, 16}) {
    c.push_back(make(Op::kMoeFfn, DType::kBF16, {n, 8, 6, 2048, 1408}, 8e-3));  // V2-Lite experts
  }
  // V3's expert widths (3 of its 256 experts, to keep the weights small) for a decode token;
  // enough rows per expert for 128-row tiles; expert 0 in every token; ids of -1, with one
  // token's all -1 (its output is zero). A CUDA backend also rounds the intermediate
  // activation to BF16: 8e-3.
  c.push_back(make(Op::kMoeFfn, DType::kBF16, {1, 3, 2, 7168, 2048}, 8e-3));
  c.push_back(make(Op::kMoeFfn, DType::kBF16, {80, 4, 2, 256, 136}, 8e-3));
  c.push_back(make(Op::kMoeFfn, DType::kBF16, {17, 8, 6, 512, 264, 1}, 8e-3));
  c.push_back(make(Op::kMoeFfn, DType::kBF16, {16, 8, 6, 512, 264, 2}, 8e-3));
  // FP8 experts: a CUDA backend rounds the weights (bf16(fp8 · scale)), x and act to BF16,
  // as the BF16 cases' 8e-3 allows.
  c.push_back(make(Op::kMoeFfn, DType::kFP8E4M3, {4, 8, 2, 2048, 1408}, 8e-3));
  for (int64_t n : {1, 16}) {
    c.push_back(make(Op::kMoeFfn, DType::kI8, {n, 8, 6, 2048, 1408}, 1e-4));
  }
  // Fused ops: V3's hidden 7168 norm, the V2-Lite/V3 576-wide cache row with
  // its 64 rope dims, V2-Lite's dense 10944 SwiGLU, a 129280-token vocabulary.
  // Odd row counts at V2-Lite's hidden 2048, q_a (1536) and kv_a (512) norms.
  c.push_back(make(Op::kAddRmsNorm, DType::kBF16, {3, 2048}, 1e-5));
  c.push_back(make(Op::kAddRmsNorm, DType::kF32, {5, 1536}, 1e-5));
  c.push_back(make(Op::kAddRmsNorm, DType::kBF16, {9, 512}, 1e-5));
  // Prefill SwiGLU at V2-Lite's shared-expert width (2 × 1408): the dense 10944 takes 20 s
  // on the SIMT emulator.
  for (int64_t n : {1, 64}) {
    c.push_back(make(Op::kAddRmsNorm, DType::kBF16, {n, 7168}, 1e-5));
    c.push_back(make(Op::kGateUpSilu, DType::kBF16, {n, 2048, n == 1 ? 10944 : 2816}, 5e-3));
  }
  c.push_back(make(Op::kGateUpSilu, DType::kBF16, {3, 1032, 200}, 5e-3));  // f not a tile multiple
  c.push_back(make(Op::kGateUpSilu, DType::kF16, {65, 264, 136}, 1e-3));
  c.push_back(make(Op::kGateUpSilu, DType::kI8, {1, 2048, 10944}, 1e-5));
  // FP8 with 128×128 block scales over [w_gate; w_up]: V2-Lite's shared-expert width for a
  // decode token; f = 200 and k = 1032 (the up rows start mid-block, k ends mid-block) on
  // prefill tiles. silu(gate) · up compounds the BF16 rounding of both products' weights and
  // x (measured ≤ 3.9e-3 on CUDA): moe_ffn's 8e-3.
  constexpr double kFp8SwiGlu = 8e-3;
  c.push_back(make(Op::kGateUpSilu, DType::kFP8E4M3, {1, 2048, 1408}, kFp8SwiGlu));
  c.push_back(make(Op::kGateUpSilu, DType::kFP8E4M3, {40, 1032, 200}, kFp8SwiGlu));
  for (DType t : {DType::kF32, DType::kBF16}) {
    c.push_back(make(Op::kRopeKvWrite, t, {64, 576, 64, 64, 16}, 1e-5));
    c.push_back(make(Op::kRopeKvWrite, t, {3, 576, 64, 2, 64}, 1e-5));
  }
  // The tiny test checkpoints' widths (tests/data/tiny/*, models/tiny): hidden 64 and 192,
  // latent 32/48/64/144 with rope 8/16, 2-4 heads, v 16/20/32. v2_tiny's o_proj has k = 3 × 20
  // = 60 (120-byte BF16 weight rows: the GEMMs' predicated path), its q_b k = 24, kv_a m =
  // 48 + 8; W_UK / W_UV per head; the dense and expert SwiGLUs; odd k.
  c.push_back(make(Op::kLinear, DType::kBF16, {1, 60, 64}, 5e-3));
  c.push_back(make(Op::kLinear, DType::kBF16, {40, 60, 64}, 5e-3));
  c.push_back(make(Op::kLinear, DType::kBF16, {5, 24, 72}, 5e-3));
  c.push_back(make(Op::kLinear, DType::kBF16, {3, 192, 152}, 5e-3));
  c.push_back(make(Op::kLinear, DType::kF16, {7, 61, 33}, 1e-3));
  c.push_back(make(Op::kHeadLinear, DType::kBF16, {3, 3, 16, 48}, 5e-3));
  c.push_back(make(Op::kHeadLinear, DType::kBF16, {3, 3, 48, 20}, 5e-3));
  c.push_back(make(Op::kHeadLinear, DType::kBF16, {2, 2, 144, 16}, 5e-3));
  c.push_back(make(Op::kHeadLinear, DType::kBF16, {36, 4, 32, 64}, 5e-3));
  c.push_back(make(Op::kGateUpSilu, DType::kBF16, {3, 64, 96}, 5e-3));
  c.push_back(make(Op::kGateUpSilu, DType::kBF16, {5, 192, 136}, 5e-3));
  c.push_back(make(Op::kGateUpSilu, DType::kBF16, {2, 61, 20}, 5e-3));
  c.push_back(make(Op::kMoeFfn, DType::kBF16, {4, 8, 2, 64, 32}, 8e-3));
  c.push_back(make(Op::kMoeFfn, DType::kBF16, {40, 6, 2, 192, 136}, 8e-3));
  c.push_back(make(Op::kMoeFfn, DType::kBF16, {5, 8, 3, 66, 20, 2}, 8e-3));
  // v3_fp8_tiny's FP8 widths (hidden 192, q_lora 160, latent 144 + rope 8, experts of 136):
  // rows and k not multiples of 128 (partial scale blocks), k = 136 predicated, odd n and k.
  c.push_back(make(Op::kLinear, DType::kFP8E4M3, {3, 192, 160}, 5e-3));
  c.push_back(make(Op::kLinear, DType::kFP8E4M3, {40, 160, 144}, 5e-3));
  c.push_back(make(Op::kLinear, DType::kFP8E4M3, {5, 136, 192}, 5e-3));
  c.push_back(make(Op::kLinear, DType::kFP8E4M3, {17, 1032, 777}, 5e-3));
  c.push_back(make(Op::kGateUpSilu, DType::kFP8E4M3, {5, 192, 136}, kFp8SwiGlu));
  c.push_back(make(Op::kMoeFfn, DType::kFP8E4M3, {40, 6, 2, 192, 136}, 8e-3));
  c.push_back(make(Op::kMoeFfn, DType::kFP8E4M3, {3, 6, 2, 192, 136, 2}, 8e-3));
  for (DType t : {DType::kF32, DType::kBF16}) {
    // v2_tiny decode: 3 heads, latent 48, rope 8, blocks of 4.
    c.push_back(make(Op::kMlaAttention, t, {3, 9, 3, 48, 8, 4}, kMlaTol));
    c.push_back(make(Op::kKvCacheWrite, t, {5, 56, 4, 4}, 0));
    c.push_back(make(Op::kRopeKvWrite, t, {5, 40, 8, 4, 4}, 1e-5));
  }
  // models/tiny prefill (latent 64, rope 16) after cached positions; v3_fp8_tiny's widths.
  c.push_back(make(Op::kMlaAttention, DType::kBF16, {2, 40, 4, 64, 16, 16, 7, 11}, kMlaTol));
  c.push_back(make(Op::kMlaAttention, DType::kF32, {2, 20, 2, 144, 8, 4}, kMlaTol));
  c.push_back(make(Op::kRope, DType::kF32, {5, 3, 8}, 1e-5));
  c.push_back(make(Op::kRmsNorm, DType::kBF16, {5, 48}, 1e-5));
  c.push_back(make(Op::kAddRmsNorm, DType::kF32, {3, 64}, 1e-5));
  c.push_back(make(Op::kAdd, DType::kF32, {3, 60}, 0));
  c.push_back(make(Op::kSiluMul, DType::kF32, {3, 20}, 1e-5));
  c.push_back(make(Op::kGatherRows, DType::kBF16, {256, 64, 5}, 0));
  // BF16 activations: outputs rounded to BF16 once (relative error up to 2^-9
  // of each value, so up to 4e-3 of the largest), inputs the same BF16 values
  // on every backend.
  constexpr DType kBf16 = DType::kBF16;
  constexpr double kBf16Act = 1e-2;
  c.push_back(make(Op::kGatherRows, kBf16, {8192, 2048, 16}, 0, kBf16));
  c.push_back(make(Op::kRmsNorm, kBf16, {64, 7168}, kBf16Act, kBf16));
  c.push_back(make(Op::kAdd, DType::kF32, {64, 7168}, kBf16Act, kBf16));
  c.push_back(make(Op::kSiluMul, DType::kF32, {64, 2048}, kBf16Act, kBf16));
  for (int64_t n : {1, 64}) {
    c.push_back(make(Op::kLinear, kBf16, {n, 2048, 3072}, kBf16Act, kBf16));
    c.push_back(make(Op::kLinear, DType::kFP8E4M3, {n, 2048, 3072}, kBf16Act, kBf16));
    c.push_back(make(Op::kAddRmsNorm, kBf16, {n, 7168}, kBf16Act, kBf16));
    c.push_back(make(Op::kGateUpSilu, kBf16, {n, 2048, n == 1 ? 10944 : 2816}, kBf16Act, kBf16));
  }
  c.push_back(make(Op::kHeadLinear, kBf16, {4, 16, 128, 512}, kBf16Act, kBf16));
  c.push_back(make(Op::kRope, DType::kF32, {64, 16, 64}, kBf16Act, kBf16));
  c.push_back(make(Op::kKvCacheWrite, kBf16, {64, 576, 64, 16}, kBf16Act, kBf16));
  c.push_back(make(Op::kRopeKvWrite, kBf16, {64, 576, 64, 64, 16}, kBf16Act, kBf16));
  c.push_back(make(Op::kMlaAttention, kBf16, {4, 1000, 16, 512, 64, 16}, kBf16Act, kBf16));
  c.push_back(make(Op::kMoeFfn, kBf16, {16, 8, 6, 2048, 1408}, kBf16Act, kBf16));
  // BF16 activations through attention, RoPE and norms at V3's 128 heads, in chunked prefill,
  // with an F32 cache behind BF16 rows, and in a warp-per-row norm.
  c.push_back(make(Op::kMlaAttention, kBf16, {2, 1033, 128, 512, 64, 64}, kBf16Act, kBf16));
  c.push_back(make(Op::kMlaAttention, kBf16, {2, 300, 16, 512, 64, 16, 37}, kBf16Act, kBf16));
  c.push_back(make(Op::kRope, DType::kF32, {3, 128, 64}, kBf16Act, kBf16));
  c.push_back(make(Op::kRopeKvWrite, DType::kF32, {3, 576, 64, 2, 64}, kBf16Act, kBf16));
  c.push_back(make(Op::kAddRmsNorm, kBf16, {9, 512}, kBf16Act, kBf16));
  // ... and at the tiny models' widths.
  c.push_back(make(Op::kLinear, kBf16, {3, 60, 64}, kBf16Act, kBf16));
  c.push_back(make(Op::kHeadLinear, kBf16, {3, 3, 48, 20}, kBf16Act, kBf16));
  c.push_back(make(Op::kMlaAttention, kBf16, {3, 9, 3, 48, 8, 4}, kBf16Act, kBf16));
  c.push_back(make(Op::kAddRmsNorm, kBf16, {3, 48}, kBf16Act, kBf16));
  c.push_back(make(Op::kLogSoftmaxTopk, DType::kF32, {8, 129280, 20}, 1e-5));
  for (int64_t k : {1, 20}) {
    c.push_back(make(Op::kLogSoftmaxTopk, DType::kF32, {1, 102400, k}, 1e-5));  // V2's vocabulary
  }
  for (int64_t mode : {0, 1}) c.push_back(make(Op::kSample, DType::kF32, {8, 129280, mode}, 1e-6));
  // One feature at a time (a token mismatch is an error of at least 1 / vocab > 1e-6).
  for (int64_t mode = 2; mode <= 9; ++mode) {
    c.push_back(make(Op::kSample, DType::kF32, {4, 102400, mode}, 1e-6));
  }
  return c;
}

std::vector<OpCase> benchmark_op_cases() {
  constexpr DType kBf16 = DType::kBF16;
  constexpr double kMlaTol = 5e-3, kBf16Act = 1e-2;
  std::vector<OpCase> c;
  // MLA decode: 128 sequences of 4,096 cached positions, blocks of 64; V2-Lite and V3 heads.
  for (int64_t heads : {16, 128}) {
    c.push_back(make(Op::kMlaAttention, kBf16, {128, 4096, heads, 512, 64, 64}, kMlaTol, kBf16));
  }
  // The grouped expert GEMM at prefill: 4,096 tokens routed top-6 over V2-Lite's 64 experts
  // (384 rows per expert on average), d 2048, f 1408.
  c.push_back(make(Op::kMoeFfn, kBf16, {4096, 64, 6, 2048, 1408}, kBf16Act, kBf16));
  // The dense product at the experts' gate/up width for 4,096 tokens.
  c.push_back(make(Op::kLinear, kBf16, {4096, 2048, 2816}, kBf16Act, kBf16));
  return c;
}

OpResult run_op_case(Backend& be, const OpCase& c, uint64_t seed, bool run) {
  if (!run) {
    const Prepared p = prepare(be, c, seed, /*meta=*/true);
    return {{}, p.bytes, p.flops};
  }
  Prepared p = prepare(be, c, seed);
  p.run();
  if (p.combined_out) return {to_f32_vector(p.combined_out()), p.bytes, p.flops};
  Tensor host = Tensor::empty_host(p.out.dtype(), p.out.shape());
  be.copy(p.out, host);
  be.synchronize();
  return {to_f32_vector(host), p.bytes, p.flops};
}

std::vector<double> time_op_case_runs(Backend& be, const OpCase& c, const RunTimer& time_run,
                                      int n_warmup, int min_runs, double min_seconds) {
  Prepared p = prepare(be, c, 1);
  for (int i = 0; i < n_warmup; ++i) time_run(p.run);
  std::vector<double> t;
  double sum = 0;
  while (static_cast<int>(t.size()) < std::max(min_runs, 1) || sum < min_seconds) {
    t.push_back(time_run(p.run));
    sum += t.back();
  }
  return t;
}

double max_rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  MS_CHECK(a.size() == b.size(), "outputs of ", a.size(), " and ", b.size(), " values");
  double diff = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    diff = std::isnan(d) ? INFINITY : std::max(diff, d);
    ref = std::max(ref, std::fabs(static_cast<double>(b[i])));
  }
  return diff / std::max(ref, 1e-30);
}

}  // namespace moeserve
