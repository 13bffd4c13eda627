// The Backend interface: memory, copies and one function per op.
//
// Model code is written once against this interface. The CPU backend
// (backend/cpu/) is the plain reference; the CUDA backend (backend/cuda/)
// launches kernels from kernels/. Unless a comment says otherwise:
//  - activations are F32; weights are F32, BF16, F16 or FP8 E4M3 with block
//    scales (Tensor::block_scales), as the checkpoint stores them;
//  - tensors must live on this backend's device;
//  - the innermost dimension is contiguous (stride 1); outer strides may be
//    arbitrary, so ops can read and write column slices of larger tensors;
//  - ops are asynchronous with respect to the host; `synchronize()` waits.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/sampling.h"
#include "common/status.h"
#include "common/tensor.h"

namespace moeserve {

enum class ScoringFunc : uint8_t { kSoftmax, kSigmoid };

// DeepSeek's expert-selection methods (config.json `topk_method`).
enum class TopkMethod : uint8_t {
  kGreedy,              // plain top-k over all experts (V2-Lite)
  kGroupLimitedGreedy,  // V2: groups ranked by their max score
  kNoauxTc,             // V3: groups ranked by the sum of their top-2 biased scores
};

struct GateParams {
  ScoringFunc scoring = ScoringFunc::kSoftmax;
  TopkMethod method = TopkMethod::kGreedy;
  int n_group = 1;                     // experts are split into this many equal groups
  int topk_group = 1;                  // groups kept before the top-k
  int top_k = 1;                       // experts per token
  bool norm_topk_prob = false;         // renormalise the k weights to sum to 1 (when top_k > 1)
  float routed_scaling_factor = 1.0f;  // applied after normalisation
  // Expert parallelism: this rank holds experts [local_begin, local_begin + local_count).
  // moe_gate selects over all experts as usual, then writes each chosen id as its index among
  // the local ones, or -1 when another rank holds it (moe_ffn skips those). local_count < 0:
  // every expert is local.
  int local_begin = 0;
  int local_count = -1;
};

// Per-step attention metadata, built once and shared by every layer. Token t
// belongs to sequence token_seq[t] and sits at position token_pos[t]; it
// attends causally to cache positions [0, token_pos[t]] of that sequence,
// which must already be written.
struct AttentionBatch {
  Tensor token_seq;     // [n_tokens] I32: row of block_tables
  Tensor token_pos;     // [n_tokens] I32: absolute position
  Tensor slot_mapping;  // [n_tokens] I32: cache slot block_id * block_size + offset
  Tensor block_tables;  // [n_seqs, max_blocks] I32: block ids of each sequence
  int block_size = 0;   // tokens per cache block
};

// The ops of the interface, for Backend::supports and the op case table.
enum class Op : uint8_t {
  kGatherRows,
  kRmsNorm,
  kAdd,
  kLinear,
  kHeadLinear,
  kSiluMul,
  kRope,
  kKvCacheWrite,
  kMlaAttention,
  kMoeGate,
  kMoeFfn,
  // Fused ops: the base class composes them from the ops above.
  kAddRmsNorm,
  kRopeKvWrite,
  kGateUpSilu,
  kLogSoftmaxTopk,
  kSample,
};
const char* op_name(Op op);

// Work recorded by Backend::end_capture (a CUDA graph), replayed by Backend::replay.
class GraphHandle {
 public:
  virtual ~GraphHandle() = default;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;
  virtual Device device() const = 0;
  // Whether every op below is implemented, so the backend can run a whole model.
  // `auto` backend selection only picks a backend that can.
  virtual bool runs_models() const { return true; }
  // Whether `op` runs here with `dtype` as its weight / table / cache dtype
  // (F32 for ops without one). A backend without an op aborts when it is
  // called, so callers that may meet a partial backend (tests, auto
  // selection) ask first.
  virtual bool supports(Op op, DType dtype) const { return true; }
  // Activations are every op input and output that is not a weight, a KV cache,
  // an index or logits (logits, router logits and expert weights are always
  // F32). A backend computes them in F32 or BF16; each op then takes each of its
  // activation tensors in any dtype the backend supports (they need not agree)
  // and accumulates in F32. The CPU backend is the F32 reference.
  virtual bool supports_activation_dtype(DType dtype) const { return dtype == DType::kF32; }
  // The activation dtype a model runs in on this backend unless the config names one.
  virtual DType default_activation_dtype() const { return DType::kF32; }

  // ---- memory -----------------------------------------------------------------
  // Contiguous, uninitialised tensor on this backend.
  virtual Tensor alloc(DType dtype, std::vector<int64_t> shape) = 0;
  // A device backend allocates from one pool reserved at start-up: its bytes,
  // and how many are in use now. 0 and 0 for a host backend, whose memory is
  // the process's (bounded by the memory limit instead).
  virtual int64_t device_memory_capacity() const { return 0; }
  virtual int64_t device_memory_used() const { return 0; }
  // A host tensor that copies to and from this backend fast (pinned memory on
  // CUDA, so copies are DMA and may run asynchronously); plain host memory by
  // default.
  virtual Tensor alloc_staging(DType dtype, std::vector<int64_t> shape) {
    return Tensor::empty_host(dtype, std::move(shape));
  }
  // Copies between any two devices; same dtype and shape; both contiguous.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  virtual void synchronize() = 0;
  // A weight read from a checkpoint (a host tensor, usually borrowing the
  // file's mapping) made ready for this backend's ops, in its stored dtype
  // (FP8 keeps its F32 block scales). The default copies it into backend
  // memory; a host backend uses it as it is, so the mapped checkpoint is the
  // weight memory and nothing is copied.
  virtual Tensor prepare_weight(const Tensor& host);
  // The backend bytes prepare_weight(host) takes, block scales included: what
  // the memory plan counts before anything is loaded.
  virtual int64_t prepared_bytes(const Tensor& host) const;

  // ---- graphs -------------------------------------------------------------------
  // Whether begin_capture / end_capture / replay work here (CUDA graphs); false by default,
  // and then callers run everything eagerly.
  virtual bool supports_graphs() const { return false; }
  // From here to end_capture the backend's ops are recorded, not run: the caller must not read
  // their results, copy to the host, synchronize, or allocate staging memory (a GPU refuses it
  // and the capture fails), and the tensors the ops use must still be there, at the same
  // addresses, whenever the graph is replayed. FailedPrecondition if already capturing;
  // Unimplemented without supports_graphs().
  virtual Status begin_capture();
  // The work recorded since begin_capture; FailedPrecondition naming the cause when the capture
  // broke (an illegal call, a workspace that had to grow).
  virtual StatusOr<std::unique_ptr<GraphHandle>> end_capture();
  // Runs a graph of this backend's, asynchronously like any op: the data it reads is what its
  // tensors hold when it runs.
  virtual Status replay(const GraphHandle& graph);

  // ---- ops ----------------------------------------------------------------------
  // out[i, :] = src[indices[i], :]. src: [n_rows, d] (any weight dtype);
  // indices: [m] I32; out: [m, d] activation. Used for embeddings and row gathers.
  virtual void gather_rows(const Tensor& src, const Tensor& indices, const Tensor& out) = 0;

  // out = x / rms(x) * weight per row. x, out: [n, d] activations (may alias when
  // of one dtype); weight: [d] F32/BF16.
  virtual void rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) = 0;

  // out = a + b elementwise. a, b, out: [n, d] activations (out may alias a or b).
  virtual void add(const Tensor& a, const Tensor& b, const Tensor& out) = 0;

  // out = x · wᵀ. x: [n, k] activation; w: [m, k] (any weight dtype); out: [n, m]
  // activation, or F32 logits.
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor& out) = 0;

  // Per-head linear: out[t, h, :] = w[h] · x[t, h, :]. x: [n, H, k];
  // w: [H, m, k] (any weight dtype); out: [n, H, m]. x, out: activations.
  virtual void head_linear(const Tensor& x, const Tensor& w, const Tensor& out) = 0;

  // out = silu(gate) * up with gate = gate_up[:, :f], up = gate_up[:, f:].
  // gate_up: [n, 2f]; out: [n, f]. Activations.
  virtual void silu_mul(const Tensor& gate_up, const Tensor& out) = 0;

  // Rotates interleaved pairs (x[2i], x[2i+1]) of every head in place by the
  // angle table at each token's position. x: [n, H, rope_dim] or [n, rope_dim] activation;
  // positions: [n] I32; cos_sin: [max_pos, rope_dim / 2, 2] F32 (cos, sin).
  virtual void rope(const Tensor& x, const Tensor& positions, const Tensor& cos_sin) = 0;

  // cache[slot / block_size, slot % block_size, :] = kv[t, :] for each token,
  // rounded to the cache's dtype. kv: [n, width] activation; slot_mapping: [n] I32;
  // cache: [n_blocks, block_size, width] F32 or BF16.
  virtual void kv_cache_write(const Tensor& kv, const Tensor& slot_mapping,
                              const Tensor& cache) = 0;

  // MLA in the weight-absorbed form over the paged latent cache. A cache row
  // is [latent (latent_dim) | rope key (rope_dim)]. For each query token t and
  // head h: score(p) = q_latent[t, h]·latent(p) + q_rope[t, h]·rope_key(p) over
  // the positions p the token may see; out[t, h] = Σ softmax(scale · score)(p)
  // · latent(p). q_latent: [n, H, latent_dim]; q_rope: [n, H, rope_dim];
  // cache: [n_blocks, block_size, latent_dim + rope_dim] F32 or BF16 (widened
  // to F32 as read); out: [n, H, latent_dim]. q_latent, q_rope, out: activations.
  virtual void mla_attention(const Tensor& q_latent, const Tensor& q_rope, const Tensor& cache,
                             const AttentionBatch& batch, float scale, const Tensor& out) = 0;

  // Expert selection. logits: [n, E] F32; bias: [E] F32 or undefined (used for
  // selection only); topk_ids: [n, top_k] I32; topk_weights: [n, top_k] F32.
  virtual void moe_gate(const Tensor& logits, const Tensor& bias, const GateParams& params,
                        const Tensor& topk_ids, const Tensor& topk_weights) = 0;

  // Routed experts: out[t] = Σ_j topk_weights[t, j] · E_{topk_ids[t, j]}(x[t]),
  // E_e(x) = w_down[e] · (silu(w_gate[e] x) * (w_up[e] x)), over the ids ≥ 0 (an id of -1 is
  // an expert another rank holds: it adds nothing here). x, out: [n, d];
  // w_gate_up: [E, 2f, d] (gate rows then up rows); w_down: [E, d, f]. x, out: activations.
  virtual void moe_ffn(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights,
                       const Tensor& w_gate_up, const Tensor& w_down, const Tensor& out) = 0;

  // ---- fused ops --------------------------------------------------------------------
  // Each has a default composition of the ops above; a backend overrides the
  // ones it fuses. None allocates: workspace comes from the caller.

  // residual += x, then out = rms_norm(residual) · weight. residual, x, out:
  // [n, d] activations (out may alias x, not residual); weight: [d] F32/BF16.
  virtual void add_rms_norm(const Tensor& residual, const Tensor& x, const Tensor& weight,
                            float eps, const Tensor& out);

  // Rotates kv[:, rope_begin:] by each token's position (rope), then writes the
  // rows into the cache (kv_cache_write). kv: [n, width] activation, rotated in place.
  virtual void rope_kv_write(const Tensor& kv, int64_t rope_begin, const Tensor& positions,
                             const Tensor& cos_sin, const Tensor& slot_mapping,
                             const Tensor& cache);

  // out = silu(x · w_gateᵀ) * (x · w_upᵀ) with w_gate_up = [w_gate; w_up]:
  // [2f, k] (any weight dtype); x: [n, k]; out: [n, f]; scratch: [n, 2f] that the
  // composition (linear then silu_mul) writes; a fused kernel may not. Activations.
  virtual void gate_up_silu(const Tensor& x, const Tensor& w_gate_up, const Tensor& scratch,
                            const Tensor& out);

  // Per row of logits [n, V] F32: the k = ids.dim(1) largest values of
  // log_softmax, most likely first, ties to the lower id. ids: [n, k] I32;
  // logprobs: [n, k] F32. The composition runs on a host copy of the logits.
  virtual void log_softmax_topk(const Tensor& logits, const Tensor& ids, const Tensor& logprobs);

  // One token for each of `rows`, from row rows[i].logits_row of logits [n, V]
  // F32, with rows[i]'s parameters (backend/sampling.h): only ids and log-probs
  // leave the backend. Each row succeeds or fails alone. The composition
  // samples a host copy of the logits.
  virtual std::vector<StatusOr<SampledToken>> sample(const Tensor& logits,
                                                     std::span<const SamplingRow> rows);
};

// log_softmax_topk and sample on host tensors: the CPU backend's ops and the
// compositions'.
void host_log_softmax_topk(const Tensor& logits, const Tensor& ids, const Tensor& logprobs);
std::vector<StatusOr<SampledToken>> host_sample(const Tensor& logits,
                                                std::span<const SamplingRow> rows);
// Aborts unless logits is [n, V] F32 and every row's logits_row is in [0, n).
void check_sample_rows(const Tensor& logits, std::span<const SamplingRow> rows);

// "cpu", "cuda" or "auto" (CUDA when the build has it, a GPU is present and the
// CUDA backend runs_models(); otherwise the CPU; a build on the SIMT emulator's
// runtime takes the CPU for `auto` and its emulated device only for `cuda`). n_threads: the CPU
// backend's threads (0: all cores); gpu_memory_fraction: of the GPU's memory, reserved by the CUDA
// backend as its pool at start-up.
StatusOr<std::unique_ptr<Backend>> create_backend(const std::string& kind, int n_threads = 0,
                                                  double gpu_memory_fraction = 0.9);

}  // namespace moeserve
