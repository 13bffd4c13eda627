#include "backend/backend.h"

#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "common/logging.h"
#ifdef MOESERVE_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace moeserve {

const char* op_name(Op op) {
  switch (op) {
    case Op::kGatherRows: return "gather_rows";
    case Op::kRmsNorm: return "rms_norm";
    case Op::kAdd: return "add";
    case Op::kLinear: return "linear";
    case Op::kHeadLinear: return "head_linear";
    case Op::kSiluMul: return "silu_mul";
    case Op::kRope: return "rope";
    case Op::kKvCacheWrite: return "kv_cache_write";
    case Op::kMlaAttention: return "mla_attention";
    case Op::kMoeGate: return "moe_gate";
    case Op::kMoeFfn: return "moe_ffn";
    case Op::kAddRmsNorm: return "add_rms_norm";
    case Op::kRopeKvWrite: return "rope_kv_write";
    case Op::kGateUpSilu: return "gate_up_silu";
    case Op::kLogSoftmaxTopk: return "log_softmax_topk";
    case Op::kSample: return "sample";
  }
  return "?";
}

Status Backend::begin_capture() {
  return absl::UnimplementedError(absl::StrCat("the ", name(), " backend has no graphs"));
}

StatusOr<std::unique_ptr<GraphHandle>> Backend::end_capture() {
  return absl::UnimplementedError(absl::StrCat("the ", name(), " backend has no graphs"));
}

Status Backend::replay(const GraphHandle&) {
  return absl::UnimplementedError(absl::StrCat("the ", name(), " backend has no graphs"));
}

Tensor Backend::prepare_weight(const Tensor& host) {
  Tensor dev = alloc(host.dtype(), host.shape());
  copy(host, dev);
  if (host.block_scales() != nullptr) {
    const Tensor& s = *host.block_scales();
    Tensor dev_s = alloc(s.dtype(), s.shape());
    copy(s, dev_s);
    dev.set_block_scales(dev_s, host.block_rows(), host.block_cols());
  }
  return dev;
}

int64_t Backend::prepared_bytes(const Tensor& host) const {
  return host.n_bytes() + (host.block_scales() != nullptr ? host.block_scales()->n_bytes() : 0);
}

void Backend::add_rms_norm(const Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                           const Tensor& out) {
  add(residual, x, residual);
  rms_norm(residual, weight, eps, out);
}

void Backend::rope_kv_write(const Tensor& kv, int64_t rope_begin, const Tensor& positions,
                            const Tensor& cos_sin, const Tensor& slot_mapping,
                            const Tensor& cache) {
  rope(kv.slice(1, rope_begin, kv.dim(1)), positions, cos_sin);
  kv_cache_write(kv, slot_mapping, cache);
}

void Backend::gate_up_silu(const Tensor& x, const Tensor& w_gate_up, const Tensor& scratch,
                           const Tensor& out) {
  linear(x, w_gate_up, scratch);
  silu_mul(scratch, out);
}

void Backend::log_softmax_topk(const Tensor& logits, const Tensor& ids, const Tensor& logprobs) {
  Tensor host = Tensor::empty_host(DType::kF32, logits.shape());
  Tensor host_ids = Tensor::empty_host(DType::kI32, ids.shape());
  Tensor host_lp = Tensor::empty_host(DType::kF32, logprobs.shape());
  copy(logits, host);
  synchronize();
  host_log_softmax_topk(host, host_ids, host_lp);
  copy(host_ids, ids);
  copy(host_lp, logprobs);
}

void host_log_softmax_topk(const Tensor& logits, const Tensor& ids, const Tensor& logprobs) {
  const int64_t n = logits.dim(0), vocab = logits.dim(1), k = ids.dim(1);
  MS_CHECK(logits.dtype() == DType::kF32 && ids.dtype() == DType::kI32 &&
               logprobs.dtype() == DType::kF32 && ids.dim(0) == n && logprobs.dim(0) == n &&
               logprobs.dim(1) == k && k <= vocab,
           "log_softmax_topk shapes ", logits.describe(), " ", ids.describe(), " ",
           logprobs.describe());
  for (int64_t r = 0; r < n; ++r) {
    log_softmax_topk_row({logits.data<float>() + r * logits.stride(0), static_cast<size_t>(vocab)},
                         {ids.data<int32_t>() + r * ids.stride(0), static_cast<size_t>(k)},
                         {logprobs.data<float>() + r * logprobs.stride(0), static_cast<size_t>(k)});
  }
}

std::vector<StatusOr<SampledToken>> Backend::sample(const Tensor& logits,
                                                    std::span<const SamplingRow> rows) {
  Tensor host = Tensor::empty_host(DType::kF32, logits.shape());
  copy(logits, host);
  synchronize();
  return host_sample(host, rows);
}

void check_sample_rows(const Tensor& logits, std::span<const SamplingRow> rows) {
  MS_CHECK(logits.dtype() == DType::kF32 && logits.ndim() == 2, "sample: logits ",
           logits.describe());
  for (const SamplingRow& r : rows) {
    MS_CHECK(r.logits_row >= 0 && r.logits_row < logits.dim(0), "sample: row ", r.logits_row,
             " of logits ", logits.describe());
  }
}

std::vector<StatusOr<SampledToken>> host_sample(const Tensor& logits,
                                                std::span<const SamplingRow> rows) {
  check_sample_rows(logits, rows);
  std::vector<StatusOr<SampledToken>> out;
  out.reserve(rows.size());
  std::vector<float> scratch;
  for (const SamplingRow& r : rows) {
    const float* row = logits.data<float>() + r.logits_row * logits.stride(0);
    out.push_back(sample_row({row, static_cast<size_t>(logits.dim(1))}, r, scratch));
  }
  return out;
}

StatusOr<std::unique_ptr<Backend>> create_backend(const std::string& kind, int n_threads,
                                                  double gpu_memory_fraction) {
  if (kind == "cpu") return std::unique_ptr<Backend>(new CpuBackend(n_threads));
  if (kind == "cuda" || kind == "auto") {
#ifdef MOESERVE_HAVE_CUDA
    // The emulated device is a test vehicle, not a GPU: only an explicit `cuda` asks for it.
    if (cuda_device_count() > 0 && !(kind == "auto" && cuda_is_emulated())) {
      auto cuda = create_cuda_backend(gpu_memory_fraction);
      if (kind == "cuda" || (cuda.ok() && (*cuda)->runs_models())) return cuda;
      if (cuda.ok()) {
        MS_LOG_WARN("backend auto: the CUDA backend cannot run a model yet; using the CPU backend");
      } else {
        MS_LOG_WARN("backend auto: CUDA unavailable ({}); using the CPU backend",
                    std::string(cuda.status().message()));
      }
    } else if (kind == "cuda") {
      return absl::FailedPreconditionError("backend 'cuda': no CUDA device found");
    }
#else
    if (kind == "cuda") {
      return absl::FailedPreconditionError("backend 'cuda': this build has no CUDA support");
    }
#endif
    return std::unique_ptr<Backend>(new CpuBackend(n_threads));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", kind, "' (expected cpu, cuda or auto)"));
}

}  // namespace moeserve
