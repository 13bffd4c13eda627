// The CUDA backend: device memory, one stream, copies, and op launches into
// kernels/. Every op is tested against the CPU backend (tests/gpu/).
//
// Only gather_rows, rms_norm, add, silu_mul, moe_gate, log_softmax_topk and
// sample have kernels so far; the other
// ops abort. Until they exist, create_cuda_backend() refuses to build one, so
// no user path can reach them; tests construct CudaBackend directly.
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
// FailedPrecondition: the MLA/MoE ops have no kernels yet.
StatusOr<std::unique_ptr<Backend>> create_cuda_backend();

class CudaStream;  // RAII cudaStream_t, defined in cuda_backend.cc

class CudaBackend final : public Backend {
 public:
  // A backend on `device` with its own stream. Fails if the device is absent.
  static StatusOr<std::unique_ptr<CudaBackend>> create(int device = 0);
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  Device device() const override { return Device::kCuda; }
  // linear, rope, the KV cache, MLA and MoE are not implemented yet (issue #5).
  bool runs_models() const override { return false; }
  // gather_rows (F32/BF16/F16 tables), rms_norm (F32/BF16 weights), add, silu_mul,
  // moe_gate, log_softmax_topk, sample.
  bool supports(Op op, DType dtype) const override;

  // Stream-ordered allocation; the Buffer frees it on this backend's stream
  // (which lives as long as any buffer it allocated).
  Tensor alloc(DType dtype, std::vector<int64_t> shape) override;
  // H2D and D2D are asynchronous; D2H waits, so the host sees the data on return.
  void copy(const Tensor& src, const Tensor& dst) override;
  void synchronize() override;

  void gather_rows(const Tensor& src, const Tensor& indices, const Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void silu_mul(const Tensor& gate_up, const Tensor& out) override;

  // Gating and sampling (cuda_gate.cc, cuda_sampling.cc; docs/cuda_backend.md).
  void moe_gate(const Tensor& logits, const Tensor& bias, const GateParams& params,
                const Tensor& topk_ids, const Tensor& topk_weights) override;
  void log_softmax_topk(const Tensor& logits, const Tensor& ids, const Tensor& logprobs) override;
  std::vector<StatusOr<SampledToken>> sample(const Tensor& logits,
                                             std::span<const SamplingRow> rows) override;

  // Not implemented yet: abort with a message.
  void linear(const Tensor& x, const Tensor& w, const Tensor& out) override;
  void head_linear(const Tensor& x, const Tensor& w, const Tensor& out) override;
  void rope(const Tensor& x, const Tensor& positions, const Tensor& cos_sin) override;
  void kv_cache_write(const Tensor& kv, const Tensor& slot_mapping, const Tensor& cache) override;
  void mla_attention(const Tensor& q_latent, const Tensor& q_rope, const Tensor& cache,
                     const AttentionBatch& batch, float scale, const Tensor& out) override;
  void moe_ffn(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights,
               const Tensor& w_gate_up, const Tensor& w_down, const Tensor& out) override;

 private:
  CudaBackend(int device, std::shared_ptr<CudaStream> stream);

  int device_;                          // CUDA device ordinal
  std::shared_ptr<CudaStream> stream_;  // shared with the deleters of allocated buffers

  // Gating and sampling state (cuda_sampling.cc): device scratch that only grows, reused by
  // every call (ops are ordered on the one stream), and the host staging buffer a sample call
  // packs its rows into for one upload.
  void* scratch(size_t n_bytes);
  int sm_count();
  int n_sms_ = 0;  // 0: not asked yet
  Tensor scratch_;
  std::vector<unsigned char> staging_;
  std::vector<unsigned char> download_;
};

}  // namespace moeserve
