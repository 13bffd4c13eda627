#include "backend/backend.h"

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
  }
  return "?";
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

StatusOr<std::unique_ptr<Backend>> create_backend(const std::string& kind, int n_threads) {
  if (kind == "cpu") return std::unique_ptr<Backend>(new CpuBackend(n_threads));
  if (kind == "cuda" || kind == "auto") {
#ifdef MOESERVE_HAVE_CUDA
    if (cuda_device_count() > 0) {
      auto cuda = create_cuda_backend();
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
