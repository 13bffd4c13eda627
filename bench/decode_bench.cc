// Decode throughput of a DeepSeek-V2-Lite-shaped model (random BF16 weights made here) on the
// CPU or the CUDA backend, beside the memory-bandwidth bound measured in the same run:
//   bound (steps/s) = copy bandwidth ÷ bytes of weights and KV read per step,
// with copy bandwidth in bytes copied per second (CUDA: cudaMemcpyAsync device to device,
// CUDA events; CPU: multi-threaded memcpy); on the CPU "% of read" uses the read bandwidth
// (bytes summed per second) instead, the tighter bound. The bytes are counted by a Backend
// decorator in one untimed step, so only the experts a step actually routes to are charged:
// every timed step repeats that step (the same tokens at the same positions), so each reads
// the same bytes. Steps are timed with CUDA events on CUDA; figures are medians of --runs
// runs of --steps steps after --warmup steps. With --int8 (CPU), the same weights are also
// quantized to INT8 W8A8 (backend/quantize.h) and both models are timed in the same run.
//
//   decode_bench [--backend cpu|cuda] [--model v2-lite|scaled|tiny] [--layers N]
//                [--batch 1,8,32,128,256] [--context N] [--steps N] [--runs N] [--warmup N]
//                [--threads N] [--int8] [--copy-mib N] [--gpu-memory-fraction F]
// --model: v2-lite is DeepSeek-V2-Lite's shape (15.7 B parameters; the default on CUDA),
// scaled the same shape at ~0.5 B (hidden 1024, 9 layers; the default on the CPU), tiny a
// 2-layer toy for the SIMT emulator.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "backend/quantize.h"
#include "bench/bench_device.h"
#include "engine/model_runner.h"

namespace moeserve {
namespace {

using Clock = std::chrono::steady_clock;

// Forwards every op to `inner`; while `counting`, adds up the bytes each op must read from
// weights and the KV cache (activations are excluded: they are small and cache-resident in
// decode). Counting reads routing ids and positions on the host (downloads on a device), so
// it is only on in untimed steps.
class CountingBackend final : public Backend {
 public:
  explicit CountingBackend(Backend& inner) : inner_(inner) {}
  bool counting = false;
  int64_t bytes = 0;

  std::string name() const override { return "counting-" + inner_.name(); }
  Device device() const override { return inner_.device(); }
  bool supports(Op op, DType dtype) const override { return inner_.supports(op, dtype); }
  bool supports_activation_dtype(DType dtype) const override {
    return inner_.supports_activation_dtype(dtype);
  }
  DType default_activation_dtype() const override { return inner_.default_activation_dtype(); }
  Tensor alloc(DType d, std::vector<int64_t> s) override { return inner_.alloc(d, std::move(s)); }
  int64_t device_memory_capacity() const override { return inner_.device_memory_capacity(); }
  int64_t device_memory_used() const override { return inner_.device_memory_used(); }
  Tensor alloc_staging(DType d, std::vector<int64_t> s) override {
    return inner_.alloc_staging(d, std::move(s));
  }
  void copy(const Tensor& a, const Tensor& b) override { inner_.copy(a, b); }
  void synchronize() override { inner_.synchronize(); }
  Tensor prepare_weight(const Tensor& host) override { return inner_.prepare_weight(host); }
  int64_t prepared_bytes(const Tensor& host) const override { return inner_.prepared_bytes(host); }
  void gather_rows(const Tensor& s, const Tensor& i, const Tensor& o) override {
    if (counting) bytes += i.numel() * s.dim(1) * dtype_bits(s.dtype()) / 8;
    inner_.gather_rows(s, i, o);
  }
  void rms_norm(const Tensor& x, const Tensor& w, float e, const Tensor& o) override {
    inner_.rms_norm(x, w, e, o);
  }
  void add(const Tensor& a, const Tensor& b, const Tensor& o) override { inner_.add(a, b, o); }
  void linear(const Tensor& x, const Tensor& w, const Tensor& o) override {
    if (counting) bytes += w.n_bytes();
    inner_.linear(x, w, o);
  }
  void head_linear(const Tensor& x, const Tensor& w, const Tensor& o) override {
    if (counting) bytes += w.n_bytes();
    inner_.head_linear(x, w, o);
  }
  void silu_mul(const Tensor& g, const Tensor& o) override { inner_.silu_mul(g, o); }
  void rope(const Tensor& x, const Tensor& p, const Tensor& t) override { inner_.rope(x, p, t); }
  void kv_cache_write(const Tensor& kv, const Tensor& s, const Tensor& c) override {
    inner_.kv_cache_write(kv, s, c);
  }
  void mla_attention(const Tensor& ql, const Tensor& qr, const Tensor& cache,
                     const AttentionBatch& b, float scale, const Tensor& o) override {
    if (counting) {
      // Each sequence's cached rows are read once per step (all heads share them).
      const std::vector<int32_t> seq = on_host(b.token_seq), pos = on_host(b.token_pos);
      std::map<int32_t, int32_t> max_pos;
      for (size_t t = 0; t < seq.size(); ++t) {
        max_pos[seq[t]] = std::max(max_pos[seq[t]], pos[t]);
      }
      for (const auto& [s, p] : max_pos)
        bytes += dtype_bytes(cache.dtype(), (p + 1) * cache.dim(2));
    }
    inner_.mla_attention(ql, qr, cache, b, scale, o);
  }
  void moe_gate(const Tensor& l, const Tensor& b, const GateParams& p, const Tensor& ids,
                const Tensor& w) override {
    inner_.moe_gate(l, b, p, ids, w);
  }
  void moe_ffn(const Tensor& x, const Tensor& ids, const Tensor& w, const Tensor& gu,
               const Tensor& dn, const Tensor& o) override {
    if (counting) {
      std::set<int32_t> used;
      for (int32_t e : on_host(ids)) {
        if (e >= 0) used.insert(e);
      }
      bytes += static_cast<int64_t>(used.size()) * (gu.n_bytes() + dn.n_bytes()) / gu.dim(0);
    }
    inner_.moe_ffn(x, ids, w, gu, dn, o);
  }
  // The fused ops run as the inner backend fuses them.
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
    if (counting) bytes += w.n_bytes();
    inner_.gate_up_silu(x, w, scratch, o);
  }
  void log_softmax_topk(const Tensor& logits, const Tensor& ids, const Tensor& lp) override {
    inner_.log_softmax_topk(logits, ids, lp);
  }
  std::vector<StatusOr<SampledToken>> sample(const Tensor& logits,
                                             std::span<const SamplingRow> rows) override {
    return inner_.sample(logits, rows);
  }

 private:
  // An I32 tensor's values on the host.
  std::vector<int32_t> on_host(const Tensor& t) {
    Tensor h = Tensor::empty_host(DType::kI32, t.shape());
    inner_.copy(t, h);
    return {h.data<int32_t>(), h.data<int32_t>() + h.numel()};
  }

  Backend& inner_;
};

ModelConfig model_config(const std::string& model, int layers, int context) {
  ModelConfig c;
  c.architecture = Architecture::kDeepseekV2;
  c.topk_method = TopkMethod::kGreedy;
  c.scoring_func = ScoringFunc::kSoftmax;
  c.first_k_dense_replace = 1;
  if (model == "v2-lite") {  // DeepSeek-V2-Lite's config.json
    c.vocab_size = 102400;
    c.hidden_size = 2048;
    c.intermediate_size = 10944;
    c.moe_intermediate_size = 1408;
    c.num_hidden_layers = 27;
    c.num_attention_heads = 16;
    c.kv_lora_rank = 512;
    c.qk_nope_head_dim = 128;
    c.qk_rope_head_dim = 64;
    c.v_head_dim = 128;
    c.n_routed_experts = 64;
    c.n_shared_experts = 2;
    c.num_experts_per_tok = 6;
  } else if (model == "scaled") {  // the same shape at ~0.5 B parameters
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
  } else {  // tiny: seconds on the SIMT emulator
    c.vocab_size = 512;
    c.hidden_size = 64;
    c.intermediate_size = 128;
    c.moe_intermediate_size = 32;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.kv_lora_rank = 32;
    c.qk_nope_head_dim = 16;
    c.qk_rope_head_dim = 16;
    c.v_head_dim = 16;
    c.n_routed_experts = 8;
    c.n_shared_experts = 1;
    c.num_experts_per_tok = 2;
  }
  if (layers > 0) c.num_hidden_layers = layers;
  c.max_position_embeddings = std::max(4096, context + 1);
  return c;
}

// Random BF16 matrices for models of billions of parameters in seconds: for each column
// count, one pool of values uniform in ±1.7/√cols is made on the host and put on the backend
// once; each matrix is filled by copies from its pool (device to device on CUDA) starting at
// a different offset. Values repeat between matrices, which no bandwidth figure can see.
class WeightMaker {
 public:
  explicit WeightMaker(Backend& be) : be_(be) {}
  int64_t n_params = 0;

  Tensor matrix(std::vector<int64_t> shape) {
    const int64_t cols = shape.back();
    const Tensor& pool = pool_for(cols);
    Tensor t = be_.alloc(DType::kBF16, shape);
    const int64_t n = t.numel(), n_pool = pool.numel();
    const Tensor flat = t.view_as(DType::kBF16, {n});
    int64_t offset = (next_offset_ += 7919) % n_pool;
    for (int64_t done = 0; done < n;) {
      const int64_t len = std::min(n - done, n_pool - offset);
      be_.copy(pool.slice(0, offset, offset + len), flat.slice(0, done, done + len));
      done += len;
      offset = 0;
    }
    n_params += n;
    return t;
  }
  // Small host-made weights, prepared as a loader would (the CUDA backend stores F32
  // matrices as BF16).
  Tensor host_f32(std::vector<int64_t> shape, float lo, float hi) {
    Tensor t = Tensor::empty_host(DType::kF32, std::move(shape));
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = lo + (hi - lo) * uniform();
    n_params += t.numel();
    return be_.prepare_weight(t);
  }

 private:
  static constexpr int64_t kPoolElements = int64_t{4} << 20;

  float uniform() {
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    return static_cast<float>(rng_ >> 40) / 16777216.0f;
  }
  const Tensor& pool_for(int64_t cols) {
    auto it = pools_.find(cols);
    if (it != pools_.end()) return it->second;
    const float a = 1.7f / std::sqrt(static_cast<float>(cols));
    Tensor host = Tensor::empty_host(DType::kBF16, {kPoolElements});
    for (int64_t i = 0; i < kPoolElements; ++i) {
      host.data<uint16_t>()[i] = f32_to_bf16((uniform() * 2.0f - 1.0f) * a);
    }
    Tensor pool = be_.alloc(DType::kBF16, {kPoolElements});
    be_.copy(host, pool);
    be_.synchronize();  // the host buffer goes away
    return pools_.emplace(cols, std::move(pool)).first->second;
  }

  Backend& be_;
  uint64_t rng_ = 0x9E3779B97F4A7C15ull;
  int64_t next_offset_ = 0;
  std::map<int64_t, Tensor> pools_;
};

// Random BF16 weights; with `int8`, the projections quantized from them (host backends).
DeepseekWeights random_weights(const ModelConfig& c, Backend& be, bool int8, int64_t* n_params) {
  WeightMaker make(be);
  auto mat = [&](std::vector<int64_t> shape) {
    Tensor t = make.matrix(std::move(shape));
    return int8 ? be.prepare_weight(quantize_int8(t)) : t;
  };
  auto ones = [&](int64_t n) { return make.host_f32({n}, 1.0f, 1.0f); };
  const int64_t d = c.hidden_size, h = c.num_attention_heads, r = c.kv_lora_rank;
  DeepseekWeights w;
  w.embed = make.matrix({c.vocab_size, d});
  w.lm_head = mat({c.vocab_size, d});
  w.final_norm = ones(d);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    DeepseekLayerWeights l;
    l.attn_norm = ones(d);
    l.ffn_norm = ones(d);
    l.q_proj = mat({h * (c.qk_nope_head_dim + c.qk_rope_head_dim), d});
    l.kv_a = mat({r + c.qk_rope_head_dim, d});
    l.kv_a_norm = ones(r);
    l.w_uk_t = mat({h, r, c.qk_nope_head_dim});
    l.w_uv = mat({h, c.v_head_dim, r});
    l.o_proj = mat({d, h * c.v_head_dim});
    if (c.is_moe_layer(i)) {
      const int64_t e = *c.n_routed_experts, f = c.moe_intermediate_size;
      const float a = 1.0f / std::sqrt(static_cast<float>(d));
      l.router = make.host_f32({e, d}, -a, a);
      l.experts_gate_up = mat({e, 2 * f, d});
      l.experts_down = mat({e, d, f});
      l.shared_gate_up = mat({2 * f * c.n_shared_experts, d});
      l.shared_down = mat({d, f * c.n_shared_experts});
    } else {
      l.mlp_gate_up = mat({2 * c.intermediate_size, d});
      l.mlp_down = mat({d, c.intermediate_size});
    }
    w.layers.push_back(std::move(l));
  }
  be.synchronize();
  *n_params = make.n_params;
  return w;
}

struct Options {
  std::vector<int> batches = {1, 8};
  int context = 64, n_steps = 8, n_runs = 5, n_warmup = 2;
};

// One table row per batch size: `batch` sequences of `context` cached tokens (prefilled in
// one step), then decode steps that each append one token to every sequence at position
// `context`.
bool time_decode(DeepseekV2Model& model, CountingBackend& be, BenchDevice& dev, const char* weights,
                 const Options& o, double bw, double read_bw) {
  const ModelConfig& config = model.config();
  constexpr int kBlockSize = 64;
  uint32_t rng = 7;
  auto token = [&] {
    rng = rng * 1664525u + 1013904223u;
    return static_cast<int32_t>((rng >> 8) % static_cast<uint32_t>(config.vocab_size));
  };
  const DType act = be.default_activation_dtype();
  for (int batch : o.batches) {
    const int blocks_per_seq = (o.context + 1 + kBlockSize - 1) / kBlockSize;
    KvCache cache(be, config.num_hidden_layers, batch * blocks_per_seq, kBlockSize,
                  model.kv_row_width(), act);
    model.reserve({.max_tokens = int64_t{batch} * o.context,
                   .max_seqs = batch,
                   .max_logits = batch,
                   .max_blocks = int64_t{batch} * blocks_per_seq,
                   .activations = act});
    std::vector<std::vector<int32_t>> prompts(batch), tables(batch), next(batch);
    std::vector<RunSeq> prefill(batch), decode(batch);
    for (int s = 0; s < batch; ++s) {
      for (int t = 0; t < o.context; ++t) prompts[s].push_back(token());
      for (int b = 0; b < blocks_per_seq; ++b) tables[s].push_back(s * blocks_per_seq + b);
      next[s] = {token()};
      prefill[s] = {0, prompts[s], tables[s], false};
      decode[s] = {o.context, next[s], tables[s], false};
    }
    auto filled = run_step(model, cache, prefill);
    if (!filled.ok()) {
      std::fprintf(stderr, "prefill failed: %s\n", filled.status().ToString().c_str());
      return false;
    }
    // The bytes of one decode step, counted in an untimed step like the timed ones.
    be.counting = true;
    be.bytes = 0;
    auto counted = run_step(model, cache, decode);
    be.counting = false;
    if (!counted.ok()) {
      std::fprintf(stderr, "decode failed: %s\n", counted.status().ToString().c_str());
      return false;
    }
    const auto bytes = static_cast<double>(be.bytes);
    bool ok = true;
    for (int i = 0; i < o.n_warmup; ++i) ok = ok && run_step(model, cache, decode).ok();
    const double run_s = dev.median_seconds(
        [&] {
          for (int i = 0; i < o.n_steps; ++i) ok = ok && run_step(model, cache, decode).ok();
        },
        /*n_warmup=*/0, o.n_runs);
    if (!ok) {
      std::fprintf(stderr, "a decode step failed\n");
      return false;
    }
    const double steps_per_s = o.n_steps / run_s;
    const double bound = bw / bytes;
    std::printf("%7s %6d %8d %10.2f %10.1f %13.2f %9.1f %11.2f %8.1f%%", weights, batch, o.context,
                steps_per_s, steps_per_s * batch, bytes / 1e6, bytes * steps_per_s / 1e9, bound,
                100.0 * steps_per_s / bound);
    if (read_bw > 0) std::printf(" %9.1f%%", 100.0 * steps_per_s / (read_bw / bytes));
    // The targets: batch 1 at 75 % of its bound, batch 128 at 60 %.
    if (batch == 1 || batch == 128) {
      const double target = batch == 1 ? 75 : 60;
      std::printf("  target >= %.0f%% of bound: %s", target,
                  verdict(dev, 100.0 * steps_per_s / bound, target));
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  return true;
}

int usage() {
  std::fprintf(stderr,
               "usage: decode_bench [--backend cpu|cuda] [--model v2-lite|scaled|tiny] "
               "[--layers N] [--batch 1,8,32,128,256] [--context N] [--steps N] [--runs N] "
               "[--warmup N] [--threads N] [--int8] [--copy-mib N] [--gpu-memory-fraction F]\n");
  return 2;
}

}  // namespace
}  // namespace moeserve

int main(int argc, char** argv) {
  using namespace moeserve;
  Options o;
  int n_threads = 0, layers = 0, copy_mib = 256;
  double gpu_fraction = 0.9;
  bool int8 = false;
  std::string kind = "cpu", model_name;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const bool has_value = i + 1 < argc;
    if (flag == "--int8") {
      int8 = true;
    } else if (has_value && flag == "--backend") {
      kind = argv[++i];
    } else if (has_value && flag == "--model") {
      model_name = argv[++i];
    } else if (has_value && flag == "--layers") {
      layers = std::atoi(argv[++i]);
    } else if (has_value && flag == "--threads") {
      n_threads = std::atoi(argv[++i]);
    } else if (has_value && flag == "--steps") {
      o.n_steps = std::atoi(argv[++i]);
    } else if (has_value && flag == "--runs") {
      o.n_runs = std::atoi(argv[++i]);
    } else if (has_value && flag == "--warmup") {
      o.n_warmup = std::atoi(argv[++i]);
    } else if (has_value && flag == "--context") {
      o.context = std::atoi(argv[++i]);
    } else if (has_value && flag == "--copy-mib") {
      copy_mib = std::atoi(argv[++i]);
    } else if (has_value && flag == "--gpu-memory-fraction") {
      gpu_fraction = std::atof(argv[++i]);
    } else if (has_value && flag == "--batch") {
      if (!parse_int_list(argv[++i], &o.batches)) return usage();
    } else {
      return usage();
    }
  }
  if (o.n_steps < 1 || o.n_runs < 1 || o.n_warmup < 0 || o.context < 1 || copy_mib < 1 ||
      layers < 0) {
    return usage();
  }
  auto device = BenchDevice::create(kind, n_threads, gpu_fraction);
  if (!device.ok()) {
    std::fprintf(stderr, "%s\n", device.status().ToString().c_str());
    return kind == "cpu" || kind == "cuda" ? 1 : 2;
  }
  BenchDevice& dev = **device;
  if (model_name.empty()) model_name = dev.is_cuda() ? "v2-lite" : "scaled";
  if (model_name != "v2-lite" && model_name != "scaled" && model_name != "tiny") return usage();
  if (int8 && !dev.backend().supports(Op::kLinear, DType::kI8)) {
    std::fprintf(stderr, "--int8: the %s backend has no INT8 GEMMs\n", kind.c_str());
    return 2;
  }
  CountingBackend be(dev.backend());
  const ModelConfig config = model_config(model_name, layers, o.context);
  int64_t n_params = 0;
  const auto t0 = Clock::now();
  DeepseekV2Model model(config, random_weights(config, be, /*int8=*/false, &n_params), be);
  const double made_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double bw = dev.copy_bandwidth(int64_t{copy_mib} << 20);
  const double read_bw = dev.read_bandwidth(int64_t{copy_mib} << 20);
  std::printf("%s\n", dev.describe().c_str());
  std::printf(
      "model: DeepSeek-V2-Lite shape (%s): hidden %d, %d layers, %d experts (top-%d, %d shared), "
      "%.1f M params BF16 (made in %.1f s), %s activations and KV cache\n",
      model_name.c_str(), config.hidden_size, config.num_hidden_layers, *config.n_routed_experts,
      config.num_experts_per_tok, config.n_shared_experts, static_cast<double>(n_params) / 1e6,
      made_s, std::string(dtype_name(be.default_activation_dtype())).c_str());
  std::printf(
      "copy bandwidth: %.2f GB/s (%s, bytes copied/s)", bw / 1e9,
      dev.is_cuda() ? "cudaMemcpyAsync device to device, CUDA events" : "multi-threaded memcpy");
  if (read_bw > 0) std::printf("; read bandwidth %.2f GB/s", read_bw / 1e9);
  std::printf("\n");
  std::printf("timing: %s; median of %d runs of %d steps after %d warm-up steps\n",
              dev.is_cuda() ? "CUDA events" : "host clock", o.n_runs, o.n_steps, o.n_warmup);
  std::printf("%7s %6s %8s %10s %10s %13s %9s %11s %9s%s\n", "weights", "batch", "context",
              "steps/s", "tokens/s", "MB read/step", "GB/s", "bound st/s", "of bound",
              read_bw > 0 ? "    of read" : "");
  if (!time_decode(model, be, dev, "bf16", o, bw, read_bw)) return 1;
  if (int8) {
    // The same random values (the same pools and offsets), quantized.
    int64_t n_params_int8 = 0;
    DeepseekV2Model model_int8(config, random_weights(config, be, /*int8=*/true, &n_params_int8),
                               be);
    if (!time_decode(model_int8, be, dev, "int8", o, bw, read_bw)) return 1;
  }
  return 0;
}
