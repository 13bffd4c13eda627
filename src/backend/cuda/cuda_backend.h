// The CUDA backend: device memory, one stream, copies, and op launches into
// kernels/. Every op is tested against the CPU backend (tests/gpu/).
//
// Every op has a kernel: the elementwise ops, norms, rope, the KV-cache writes, MLA
// attention, the GEMM-shaped ops (linear, head_linear, gate_up_silu, moe_ffn), gating and
// sampling (moe_gate, log_softmax_topk, sample), and every golden checkpoint runs whole on
// it (tests/gpu/cuda_model_test.cc), so `--backend cuda` and `auto` with a GPU use it.
//
// This header includes no CUDA headers, so plain C++ code (backend.cc, tests)
// can use it.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "common/status.h"

namespace moeserve {

// Number of CUDA devices visible to this process; 0 when there is no driver,
// no device, or any other CUDA error.
int cuda_device_count();
// Whether this build runs the CUDA backend on the SIMT emulator's runtime (MOESERVE_CUDA_EMU).
bool cuda_is_emulated();

// The backend for `create_backend("cuda"/"auto")`: device 0, its pool `memory_fraction` of
// the device's memory.
StatusOr<std::unique_ptr<Backend>> create_cuda_backend(double memory_fraction);

class CudaStream;    // RAII cudaStream_t (cuda_internal.h)
class DevicePool;    // the device memory reserved at create() (cuda_backend.cc)
class CublasLtGemm;  // cuBLASLt handle and per-shape plans (cuda_gemm.cc; real CUDA only)
namespace kernels {
struct GemmParams;
struct GemmPlan;
}  // namespace kernels

struct CudaOptions {
  // Of the device's total memory, reserved at create() as the pool every
  // tensor is carved from (weights, the activation arena, the KV cache).
  double memory_fraction = 0.9;
};

class CudaBackend final : public Backend {
 public:
  // A backend on `device` with its own stream and memory pool. Fails if the
  // device is absent or has less free memory than the pool asks for.
  static StatusOr<std::unique_ptr<CudaBackend>> create(int device = 0,
                                                       const CudaOptions& options = {});
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  Device device() const override { return Device::kCuda; }
  // Every op has a kernel; every golden checkpoint runs whole (tests/gpu/cuda_model_test).
  bool runs_models() const override { return true; }
  // Every op takes each activation tensor as F32 or BF16; models run BF16 by default.
  bool supports_activation_dtype(DType dtype) const override {
    return dtype == DType::kF32 || dtype == DType::kBF16;
  }
  DType default_activation_dtype() const override { return DType::kBF16; }
  // Per op: the weight / table / cache dtypes it runs with (cuda_backend.cc).
  bool supports(Op op, DType dtype) const override;

  // Carved from the pool (best fit, 256-byte aligned); aborts when the pool
  // is exhausted, which the engine's memory plan rules out before loading.
  // A freed range is reused at once: every use of it is on this backend's one
  // stream, so later work is ordered after earlier work on the old tensor.
  Tensor alloc(DType dtype, std::vector<int64_t> shape) override;
  int64_t device_memory_capacity() const override;
  int64_t device_memory_used() const override;
  // Pinned host memory (cudaMallocHost).
  Tensor alloc_staging(DType dtype, std::vector<int64_t> shape) override;
  // F32 matrices are rounded to BF16 (the GEMMs read 16-bit or FP8 weights). FP8 block-scaled
  // weights stay FP8, uploaded with their F32 scales (the GEMMs convert in registers), unless
  // their scale blocks split the GEMMs' k tiles (block_cols not a multiple of 64) or their
  // scales are not F32: those are dequantized to BF16. Vectors (norm weights, biases) and
  // 16-bit weights are uploaded as they are.
  Tensor prepare_weight(const Tensor& host) override;
  int64_t prepared_bytes(const Tensor& host) const override;
  // Device scratch of at least n_bytes for the ops (see workspace()), allocated now: a caller
  // that captures a graph of shapes it has not run eagerly sizes it first.
  void reserve_workspace(int64_t n_bytes) { workspace(static_cast<size_t>(n_bytes)); }
  // H2D and D2D are asynchronous; D2H waits, so the host sees the data on return.
  void copy(const Tensor& src, const Tensor& dst) override;
  void synchronize() override;

  // CUDA graphs (cuda_graph.cc): the stream captured in global mode. A graph keeps the
  // workspace it was captured with alive, so a later growth (a larger eager step) cannot free
  // memory the graph's kernels use; the workspace must not grow during the capture itself
  // (end_capture then fails, naming the sizes: run the shape eagerly first or
  // reserve_workspace).
  bool supports_graphs() const override { return true; }
  Status begin_capture() override;
  StatusOr<std::unique_ptr<GraphHandle>> end_capture() override;
  Status replay(const GraphHandle& graph) override;

  // Elementwise ops and norms (cuda_elementwise.cc). Activations F32 or BF16.
  void gather_rows(const Tensor& src, const Tensor& indices, const Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) override;
  void add_rms_norm(const Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                    const Tensor& out) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void silu_mul(const Tensor& gate_up, const Tensor& out) override;

  // Gating and sampling (cuda_gate.cc, cuda_sampling.cc; docs/cuda_backend.md).
  void moe_gate(const Tensor& logits, const Tensor& bias, const GateParams& params,
                const Tensor& topk_ids, const Tensor& topk_weights) override;
  void log_softmax_topk(const Tensor& logits, const Tensor& ids, const Tensor& logprobs) override;
  std::vector<StatusOr<SampledToken>> sample(const Tensor& logits,
                                             std::span<const SamplingRow> rows) override;

  // Attention, RoPE and the KV cache (cuda_attention.cc). Activations F32 or BF16; the cache
  // F32 or BF16; mla_attention needs DeepSeek's latent 512 and rope 64.
  void rope(const Tensor& x, const Tensor& positions, const Tensor& cos_sin) override;
  void kv_cache_write(const Tensor& kv, const Tensor& slot_mapping, const Tensor& cache) override;
  void rope_kv_write(const Tensor& kv, int64_t rope_begin, const Tensor& positions,
                     const Tensor& cos_sin, const Tensor& slot_mapping,
                     const Tensor& cache) override;
  void mla_attention(const Tensor& q_latent, const Tensor& q_rope, const Tensor& cache,
                     const AttentionBatch& batch, float scale, const Tensor& out) override;

  // GEMM-shaped ops (cuda_gemm.cc; kernels/gemm_bf16.cuh, kernels/moe_ffn.cuh). Weights
  // BF16 or F16; x and out F32 or BF16 each (x is rounded to the weights' 16-bit type for
  // the tensor cores; sums are F32). k, row strides and base addresses must allow 16-byte
  // loads (k a multiple of 8).
  // Tensor-core GEMM: a split-K decode path for few tokens, 128×128 tiles for prefill;
  // real CUDA builds send BF16 products of ≥ 512 BF16 rows to cuBLASLt.
  void linear(const Tensor& x, const Tensor& w, const Tensor& out) override;
  // The same kernels with one matrix per head.
  void head_linear(const Tensor& x, const Tensor& w, const Tensor& out) override;
  // One GEMM over [w_gate; w_up] whose epilogue writes silu(gate) · up: scratch is unused.
  void gate_up_silu(const Tensor& x, const Tensor& w_gate_up, const Tensor& scratch,
                    const Tensor& out) override;
  // On the device, without host round trips: route (count, scan, permute, tile table),
  // one grouped gate/up GEMM with silu·up in its epilogue, one grouped down GEMM, and a
  // weighted combine that sums each token's slots in order (deterministic). Ids of -1
  // (other ranks' experts) and any other id outside [0, E) add nothing.
  void moe_ffn(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights,
               const Tensor& w_gate_up, const Tensor& w_down, const Tensor& out) override;

  // ---- measurement, for the benchmarks (bench/; cuda_timing.cc) ------------------------
  // Device seconds of the work `queue` puts on this backend's stream, between CUDA events
  // recorded before and after it (so host gaps that leave the stream idle count too); waits
  // for the second event.
  double time_on_stream(const std::function<void()>& queue);
  // out = x · wᵀ by cuBLASLt alone, queued on the stream: the vendor baseline the benchmarks
  // compare our GEMMs with. x [n, k] and w [m, k] BF16, out [n, m] BF16 or F32, 16-byte
  // aligned rows. Unimplemented in the emulated build (it has no cuBLASLt); Internal when
  // cuBLASLt has no algorithm for the shape.
  Status cublaslt_linear(const Tensor& x, const Tensor& w, const Tensor& out);

 private:
  CudaBackend(int device, std::shared_ptr<CudaStream> stream, std::shared_ptr<DevicePool> pool);

  // Device scratch of at least n_bytes (split-K partials, moe_ffn's routing tables and
  // intermediates), allocated lazily from the shapes and reused: it only grows, so steady
  // state allocates nothing. A later step moves it into the activation arena.
  void* workspace(size_t n_bytes);
  int n_sms();  // multiprocessors, for split-K and split-KV plans
  void run_gemm(const kernels::GemmParams& p, const kernels::GemmPlan& plan);

  int device_;                              // CUDA device ordinal
  std::shared_ptr<CudaStream> stream_;      // shared with the deleters of allocated buffers
  std::shared_ptr<DevicePool> pool_;        // likewise
  Tensor workspace_;                        // [bytes] I8, see workspace(); shared by all ops
  int n_sms_ = 0;                           // 0 until first asked
  bool capturing_ = false;                  // between begin_capture and end_capture
  std::string capture_error_;               // why the current capture cannot be used
  std::shared_ptr<CublasLtGemm> cublaslt_;  // created by the first large BF16 linear

  // Gating and sampling (cuda_sampling.cc): sample() packs its rows into staging_ and uploads
  // them through pinned sample_upload_ in one copy; results come back in one copy through
  // pinned sample_download_. Both only grow.
  unsigned char* pinned(Tensor& buffer, size_t n_bytes);
  std::vector<unsigned char> staging_;
  Tensor sample_upload_;
  Tensor sample_download_;
};

}  // namespace moeserve
