// CPU decode throughput of a DeepSeek-V2-Lite-shaped model scaled to ~0.5 B
// parameters (random BF16 weights made here), beside the memory-bandwidth
// bound measured in the same run:
//   bound (steps/s) = copy bandwidth ÷ bytes of weights and KV read per step,
// with copy bandwidth in bytes copied per second; "of read" uses the read
// bandwidth (bytes summed per second) instead, the tighter bound.
// The bytes are counted by a Backend decorator as the ops run, so only the
// experts a step actually routes to are charged. With --int8, the same
// weights are also quantized to INT8 W8A8 (backend/quantize.h: every
// projection, expert and the LM head; the embedding, router and norms stay as
// they are) and both models are timed in the same run.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/quantize.h"
#include "engine/model_runner.h"

namespace moeserve {
namespace {

using Clock = std::chrono::steady_clock;

// Forwards every op to the CPU backend and adds up the bytes each op must
// read from weights and the KV cache (activations are excluded: they are
// small and cache-resident in decode).
class CountingBackend final : public Backend {
 public:
  explicit CountingBackend(CpuBackend& inner) : inner_(inner) {}
  int64_t bytes = 0;

  std::string name() const override { return "counting-cpu"; }
  Device device() const override { return Device::kCpu; }
  Tensor alloc(DType d, std::vector<int64_t> s) override { return inner_.alloc(d, std::move(s)); }
  void copy(const Tensor& a, const Tensor& b) override { inner_.copy(a, b); }
  void synchronize() override {}
  Tensor prepare_weight(const Tensor& host) override { return inner_.prepare_weight(host); }
  void gather_rows(const Tensor& s, const Tensor& i, const Tensor& o) override {
    bytes += i.numel() * s.dim(1) * dtype_bits(s.dtype()) / 8;
    inner_.gather_rows(s, i, o);
  }
  void rms_norm(const Tensor& x, const Tensor& w, float e, const Tensor& o) override {
    inner_.rms_norm(x, w, e, o);
  }
  void add(const Tensor& a, const Tensor& b, const Tensor& o) override { inner_.add(a, b, o); }
  void linear(const Tensor& x, const Tensor& w, const Tensor& o) override {
    bytes += w.n_bytes();
    inner_.linear(x, w, o);
  }
  void head_linear(const Tensor& x, const Tensor& w, const Tensor& o) override {
    bytes += w.n_bytes();
    inner_.head_linear(x, w, o);
  }
  void silu_mul(const Tensor& g, const Tensor& o) override { inner_.silu_mul(g, o); }
  void rope(const Tensor& x, const Tensor& p, const Tensor& t) override { inner_.rope(x, p, t); }
  void kv_cache_write(const Tensor& kv, const Tensor& s, const Tensor& c) override {
    inner_.kv_cache_write(kv, s, c);
  }
  void mla_attention(const Tensor& ql, const Tensor& qr, const Tensor& cache,
                     const AttentionBatch& b, float scale, const Tensor& o) override {
    // Each sequence's cached rows are read once per step (all heads share them).
    std::set<int32_t> seqs(b.token_seq.data<int32_t>(),
                           b.token_seq.data<int32_t>() + b.token_seq.numel());
    for (int32_t s : seqs) {
      int32_t max_pos = 0;
      for (int64_t t = 0; t < b.token_seq.numel(); ++t) {
        if (b.token_seq.data<int32_t>()[t] == s)
          max_pos = std::max(max_pos, b.token_pos.data<int32_t>()[t]);
      }
      bytes += (max_pos + 1) * cache.dim(2) * 4;
    }
    inner_.mla_attention(ql, qr, cache, b, scale, o);
  }
  void moe_gate(const Tensor& l, const Tensor& b, const GateParams& p, const Tensor& ids,
                const Tensor& w) override {
    inner_.moe_gate(l, b, p, ids, w);
  }
  void moe_ffn(const Tensor& x, const Tensor& ids, const Tensor& w, const Tensor& gu,
               const Tensor& dn, const Tensor& o) override {
    std::set<int32_t> used(ids.data<int32_t>(), ids.data<int32_t>() + ids.numel());
    bytes += static_cast<int64_t>(used.size()) * (gu.n_bytes() + dn.n_bytes()) / gu.dim(0);
    inner_.moe_ffn(x, ids, w, gu, dn, o);
  }
  // The fused ops run as the CPU backend fuses them.
  void add_rms_norm(const Tensor& r, const Tensor& x, const Tensor& w, float e,
                    const Tensor& o) override {
    inner_.add_rms_norm(r, x, w, e, o);
  }
  void rope_kv_write(const Tensor& kv, int64_t rope_begin, const Tensor& p, const Tensor& t,
                     const Tensor& s, const Tensor& c) override {
    inner_.rope_kv_write(kv, rope_begin, p, t, s, c);
  }
  void gate_up_silu(const Tensor& x, const Tensor& w, const Tensor& scratch,
                    const Tensor& o) override {
    bytes += w.n_bytes();
    inner_.gate_up_silu(x, w, scratch, o);
  }

 private:
  CpuBackend& inner_;
};

ModelConfig bench_config() {
  ModelConfig c;
  c.architecture = Architecture::kDeepseekV2;
  c.vocab_size = 32000;
  c.hidden_size = 1024;
  c.intermediate_size = 2816;
  c.moe_intermediate_size = 256;
  c.num_hidden_layers = 9;
  c.num_attention_heads = 8;
  c.kv_lora_rank = 256;
  c.qk_nope_head_dim = 64;
  c.qk_rope_head_dim = 32;
  c.v_head_dim = 64;
  c.n_routed_experts = 64;
  c.n_shared_experts = 2;
  c.num_experts_per_tok = 6;
  c.topk_method = TopkMethod::kGreedy;
  c.scoring_func = ScoringFunc::kSoftmax;
  c.first_k_dense_replace = 1;
  c.max_position_embeddings = 4096;
  return c;
}

// Fills a fresh backend tensor with uniform values in [-a, a] (BF16 or F32).
Tensor random_tensor(Backend& be, DType dtype, std::vector<int64_t> shape, float a, uint64_t seed) {
  Tensor t = be.alloc(dtype, std::move(shape));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    const float v = (static_cast<float>(s >> 40) / 16777216.0f * 2.0f - 1.0f) * a;
    if (dtype == DType::kBF16) {
      t.data<uint16_t>()[i] = f32_to_bf16(v);
    } else {
      t.data<float>()[i] = v;
    }
  }
  return t;
}

// Random BF16 weights; with `int8`, the projections quantized from them.
DeepseekWeights random_weights(const ModelConfig& c, Backend& be, bool int8, int64_t* n_params) {
  uint64_t seed = 1;
  const DType bf = DType::kBF16;
  auto raw = [&](int64_t rows, int64_t cols) {
    *n_params += rows * cols;
    return random_tensor(be, bf, {rows, cols}, 1.7f / std::sqrt(static_cast<float>(cols)), seed++);
  };
  auto prepared = [&](const Tensor& t) { return int8 ? be.prepare_weight(quantize_int8(t)) : t; };
  auto mat = [&](int64_t rows, int64_t cols) { return prepared(raw(rows, cols)); };
  auto stacked = [&](int64_t n, int64_t rows, int64_t cols) {
    return prepared(raw(n * rows, cols).reshape({n, rows, cols}));
  };
  auto ones = [&](int64_t n) {
    Tensor t = be.alloc(DType::kF32, {n});
    std::fill(t.data<float>(), t.data<float>() + n, 1.0f);
    return t;
  };
  const int64_t d = c.hidden_size, h = c.num_attention_heads, r = c.kv_lora_rank;
  DeepseekWeights w;
  w.embed = raw(c.vocab_size, d);
  w.lm_head = mat(c.vocab_size, d);
  w.final_norm = ones(d);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    DeepseekLayerWeights l;
    l.attn_norm = ones(d);
    l.ffn_norm = ones(d);
    l.q_proj = mat(h * (c.qk_nope_head_dim + c.qk_rope_head_dim), d);
    l.kv_a = mat(r + c.qk_rope_head_dim, d);
    l.kv_a_norm = ones(r);
    l.w_uk_t = stacked(h, r, c.qk_nope_head_dim);
    l.w_uv = stacked(h, c.v_head_dim, r);
    l.o_proj = mat(d, h * c.v_head_dim);
    if (c.is_moe_layer(i)) {
      const int64_t e = *c.n_routed_experts, f = c.moe_intermediate_size;
      l.router =
          random_tensor(be, DType::kF32, {e, d}, 1.0f / std::sqrt(static_cast<float>(d)), seed++);
      l.experts_gate_up = stacked(e, 2 * f, d);
      l.experts_down = stacked(e, d, f);
      l.shared_gate_up = mat(2 * f * c.n_shared_experts, d);
      l.shared_down = mat(d, f * c.n_shared_experts);
    } else {
      l.mlp_gate_up = mat(2 * c.intermediate_size, d);
      l.mlp_down = mat(d, c.intermediate_size);
    }
    w.layers.push_back(std::move(l));
  }
  return w;
}

// Copy bandwidth: bytes copied per second (each byte is read once and
// written once; STREAM would count 2x this), best of several multi-threaded
// memcpys of a buffer far larger than the caches.
double copy_bandwidth(ThreadPool& pool) {
  const int64_t n = int64_t{256} << 20;
  std::vector<char> src(static_cast<size_t>(n), 1), dst(static_cast<size_t>(n), 0);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    pool.parallel_for(
        n,
        [&](int64_t b, int64_t e) {
          std::memcpy(dst.data() + b, src.data() + b, static_cast<size_t>(e - b));
        },
        int64_t{1} << 20);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n) / s);
  }
  return best;
}

// Read bandwidth: bytes summed per second, the tighter bound for a pass that
// only reads its weights.
double read_bandwidth(ThreadPool& pool) {
  const int64_t n = int64_t{256} << 20;
  std::vector<uint64_t> src(static_cast<size_t>(n / 8), 3);
  std::vector<uint64_t> sums(64, 0);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    pool.parallel_for(
        n / 8,
        [&](int64_t b, int64_t e) {
          uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
          int64_t i = b;
          for (; i + 4 <= e; i += 4) {
            a0 += src[i];
            a1 += src[i + 1];
            a2 += src[i + 2];
            a3 += src[i + 3];
          }
          for (; i < e; ++i) a0 += src[i];
          sums[static_cast<size_t>(b * 63 / (n / 8))] += a0 + a1 + a2 + a3;
        },
        int64_t{1} << 17);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n) / s);
  }
  if (sums[0] == 42) std::puts("");  // keeps the sums live
  return best;
}

// Decode steps/s of `model` at each batch size, one table row per batch.
bool time_decode(DeepseekV2Model& model, CountingBackend& be, const ModelConfig& config,
                 const char* weights, const std::vector<int>& batches, int context, int n_steps,
                 double bw, double read_bw) {
  std::mt19937 rng(7);
  for (int batch : batches) {
    ModelRunner runner(model, batch * ((context + n_steps) / 64 + 2), 64);
    std::vector<SequenceChunk> chunks;
    for (int s = 0; s < batch; ++s) {
      SequenceChunk c{runner.create_sequence(), {}, false};
      for (int t = 0; t < context; ++t)
        c.tokens.push_back(static_cast<int32_t>(rng() % config.vocab_size));
      chunks.push_back(c);
    }
    auto prefill = runner.step(chunks);
    if (!prefill.ok()) {
      std::fprintf(stderr, "prefill failed: %s\n", std::string(prefill.status().message()).c_str());
      return false;
    }
    double secs = 0;
    int64_t bytes = 0;
    for (int step = 0; step < n_steps; ++step) {
      for (int s = 0; s < batch; ++s)
        chunks[s].tokens = {static_cast<int32_t>(rng() % config.vocab_size)};
      be.bytes = 0;
      const auto a = Clock::now();
      auto out = runner.step(chunks);
      secs += std::chrono::duration<double>(Clock::now() - a).count();
      bytes += be.bytes;
      if (!out.ok()) return false;
    }
    const double steps_per_s = n_steps / secs;
    const double mb_per_step = static_cast<double>(bytes) / n_steps / 1e6;
    const double bound = bw / (static_cast<double>(bytes) / n_steps);
    const double read_bound = read_bw / (static_cast<double>(bytes) / n_steps);
    std::printf("%7s %6d %8d %10.2f %10.2f %13.1f %11.2f %8.1f%% %9.1f%%\n", weights, batch,
                context, steps_per_s, steps_per_s * batch, mb_per_step, bound,
                100.0 * steps_per_s / bound, 100.0 * steps_per_s / read_bound);
  }
  return true;
}

}  // namespace
}  // namespace moeserve

int main(int argc, char** argv) {
  using namespace moeserve;
  int n_threads = 0, n_steps = 32, context = 64;
  bool int8 = false;
  std::vector<int> batches = {1, 8};
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--int8") {
      int8 = true;
    } else if (i + 1 < argc && flag == "--threads") {
      n_threads = std::atoi(argv[++i]);
    } else if (i + 1 < argc && flag == "--steps") {
      n_steps = std::atoi(argv[++i]);
    } else if (i + 1 < argc && flag == "--context") {
      context = std::atoi(argv[++i]);
    } else if (i + 1 < argc && flag == "--batch") {
      batches = {std::atoi(argv[++i])};
    } else {
      std::fprintf(stderr,
                   "usage: cpu_decode_bench [--threads N] [--steps N] [--context N] [--batch N] "
                   "[--int8]\n");
      return 2;
    }
  }
  CpuBackend cpu(n_threads);
  CountingBackend be(cpu);
  const ModelConfig config = bench_config();
  int64_t n_params = 0;
  const auto t0 = Clock::now();
  DeepseekV2Model model(config, random_weights(config, be, /*int8=*/false, &n_params), be);
  ThreadPool pool(n_threads);
  const double bw = copy_bandwidth(pool);
  const double read_bw = read_bandwidth(pool);
  std::printf(
      "model: DeepSeek-V2-Lite shape scaled: hidden %d, %d layers, %d experts (top-%d, %d shared), "
      "%.3f B params BF16 (made in %.1f s)\n",
      config.hidden_size, config.num_hidden_layers, *config.n_routed_experts,
      config.num_experts_per_tok, config.n_shared_experts, static_cast<double>(n_params) / 1e9,
      std::chrono::duration<double>(Clock::now() - t0).count());
  std::printf(
      "threads: %d; measured copy bandwidth %.2f GB/s (bytes copied/s), read bandwidth %.2f GB/s\n",
      cpu.n_threads(), bw / 1e9, read_bw / 1e9);
  std::printf("%7s %6s %8s %10s %10s %13s %11s %9s %10s\n", "weights", "batch", "context",
              "steps/s", "tokens/s", "MB read/step", "bound st/s", "of bound", "of read");
  if (!time_decode(model, be, config, "bf16", batches, context, n_steps, bw, read_bw)) return 1;
  if (int8) {
    // The same random values (same seeds), quantized.
    int64_t n_params_int8 = 0;
    DeepseekV2Model model_int8(config, random_weights(config, be, /*int8=*/true, &n_params_int8),
                               be);
    if (!time_decode(model_int8, be, config, "int8", batches, context, n_steps, bw, read_bw)) {
      return 1;
    }
  }
  return 0;
}
