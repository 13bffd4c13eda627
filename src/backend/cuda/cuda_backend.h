// The CUDA backend: device memory, one stream, copies, and op launches into
// kernels/. Every op is tested against the CPU backend (tests/gpu/).
//
// The elementwise ops, norms, rope, the KV-cache writes and MLA attention have
// kernels; linear, head_linear and the MoE ops abort so far. Until they exist,
// create_cuda_backend() refuses to build one, so no user path can reach them; tests construct
// CudaBackend directly.
//
// This header includes no CUDA headers, so plain C++ code (backend.cc, tests)
// can use it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "common/status.h"

namespace moeserve {

// Number of CUDA devices visible to this process; 0 when there is no driver,
// no device, or any other CUDA error.
int cuda_device_count();

// The backend for `create_backend("cuda"/"auto")`. For now always
// FailedPrecondition: the GEMM and MoE ops have no kernels yet.
StatusOr<std::unique_ptr<Backend>> create_cuda_backend();

class CudaStream;  // RAII cudaStream_t, defined in cuda_backend.cc

class CudaBackend final : public Backend {
 public:
  // A backend on `device` with its own stream. Fails if the device is absent.
  static StatusOr<std::unique_ptr<CudaBackend>> create(int device = 0);
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  Device device() const override { return Device::kCuda; }
  // linear, head_linear and the MoE ops are not implemented yet (issue #5).
  bool runs_models() const override { return false; }
  // Per op: the weight / table / cache dtypes it runs with (cuda_backend.cc).
  bool supports(Op op, DType dtype) const override;

  // Stream-ordered allocation; the Buffer frees it on this backend's stream
  // (which lives as long as any buffer it allocated).
  Tensor alloc(DType dtype, std::vector<int64_t> shape) override;
  // H2D and D2D are asynchronous; D2H waits, so the host sees the data on return.
  void copy(const Tensor& src, const Tensor& dst) override;
  void synchronize() override;

  // Elementwise ops and norms (cuda_elementwise.cc). Activations F32 or BF16.
  void gather_rows(const Tensor& src, const Tensor& indices, const Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) override;
  void add_rms_norm(const Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                    const Tensor& out) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void silu_mul(const Tensor& gate_up, const Tensor& out) override;

  // Attention, RoPE and the KV cache (cuda_attention.cc). Activations F32 or BF16; the cache
  // F32 or BF16; mla_attention needs DeepSeek's latent 512 and rope 64.
  void rope(const Tensor& x, const Tensor& positions, const Tensor& cos_sin) override;
  void kv_cache_write(const Tensor& kv, const Tensor& slot_mapping, const Tensor& cache) override;
  void rope_kv_write(const Tensor& kv, int64_t rope_begin, const Tensor& positions,
                     const Tensor& cos_sin, const Tensor& slot_mapping,
                     const Tensor& cache) override;
  void mla_attention(const Tensor& q_latent, const Tensor& q_rope, const Tensor& cache,
                     const AttentionBatch& batch, float scale, const Tensor& out) override;

  // Not implemented yet: abort with a message.
  void linear(const Tensor& x, const Tensor& w, const Tensor& out) override;
  void head_linear(const Tensor& x, const Tensor& w, const Tensor& out) override;
  void moe_gate(const Tensor& logits, const Tensor& bias, const GateParams& params,
                const Tensor& topk_ids, const Tensor& topk_weights) override;
  void moe_ffn(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights,
               const Tensor& w_gate_up, const Tensor& w_down, const Tensor& out) override;

 private:
  CudaBackend(int device, int n_sms, std::shared_ptr<CudaStream> stream);

  int device_;                          // CUDA device ordinal
  int n_sms_;                           // multiprocessors, for splitting attention contexts
  std::shared_ptr<CudaStream> stream_;  // shared with the deleters of allocated buffers
  // [n_splits · n_tokens · heads · (latent + 1)] F32: split-KV partial outputs and their
  // log-sum-exps, grown to the largest call so far.
  Tensor attention_workspace_;
};

}  // namespace moeserve
