// What one forward step runs on: the step's metadata on the backend and an
// activation arena, both sized once for the largest step the engine will plan
// (StepLimits), so forward() allocates nothing and does no host work.
//
// plan() (DeepseekV2Model::plan) validates a ForwardBatch on the host and
// uploads it into the fixed-capacity metadata tensors; forward() then only
// launches ops on views of those tensors and of the arena. A backend can
// therefore capture forward() for a fixed batch shape (CUDA graphs).
#pragma once

#include <cstdint>

#include "backend/backend.h"
#include "model/forward_batch.h"

namespace moeserve {

// The largest step a StepContext holds.
struct StepLimits {
  int64_t max_tokens = 0;  // tokens in one step (max_num_batched_tokens)
  int64_t max_seqs = 0;    // sequences in one step (max_num_seqs)
  int64_t max_logits = 0;  // logit rows in one step (max_seqs, or more for prompt logprobs)
  int64_t max_blocks = 0;  // entries of all block tables of one step together
  // The dtype of the activations (Backend::supports_activation_dtype); logits stay F32.
  DType activations = DType::kF32;
};

// Byte sizes of arena allocations, counted the way ActivationArena::take()
// places them, so a layer can state its workspace before any step runs.
class ArenaSize {
 public:
  static constexpr int64_t kAlign = 256;  // every take() starts on this boundary
  explicit ArenaSize(DType activations = DType::kF32) : act_(activations) {}
  ArenaSize& add(DType dtype, int64_t numel);
  // An activation of `numel` elements, in the step's activation dtype.
  ArenaSize& add_act(int64_t numel) { return add(act_, numel); }
  DType act() const { return act_; }
  int64_t bytes() const { return bytes_; }

 private:
  DType act_;
  int64_t bytes_ = 0;
};

// A bump allocator over one backend allocation. take() hands out contiguous
// views; a Scope gives back everything taken inside it when it ends, so each
// layer's temporaries reuse the same bytes. Taking more than the capacity is a
// bug in a layer's workspace arithmetic and aborts.
class ActivationArena {
 public:
  ActivationArena() = default;
  ActivationArena(Backend& backend, int64_t capacity_bytes, DType activations);

  Tensor take(DType dtype, std::vector<int64_t> shape);
  // An activation tensor, in the step's activation dtype.
  Tensor take_act(std::vector<int64_t> shape) { return take(act_, std::move(shape)); }
  DType act() const { return act_; }
  int64_t capacity() const { return capacity_; }
  int64_t used() const { return offset_; }
  int64_t high_water() const { return high_water_; }
  void reset() { offset_ = 0; }

  class Scope {
   public:
    explicit Scope(ActivationArena& arena) : arena_(arena), mark_(arena.offset_) {}
    ~Scope() { arena_.offset_ = mark_; }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    ActivationArena& arena_;
    int64_t mark_;
  };

 private:
  Tensor storage_;  // [capacity / 4] F32: the bytes every view shares
  DType act_ = DType::kF32;
  int64_t capacity_ = 0;
  int64_t offset_ = 0;
  int64_t high_water_ = 0;
};

// The step being run: views of the fixed-capacity metadata for the tokens of
// the current plan, and the arena. Made by DeepseekV2Model::reserve(); filled
// by plan().
class StepContext {
 public:
  StepContext(Backend& backend, const StepLimits& limits, int64_t arena_bytes);

  const StepLimits& limits() const { return limits_; }
  // Whether `batch` fits these limits.
  bool fits(const ForwardBatch& batch) const;
  // Copies `batch` (already validated) into the metadata tensors; resets the arena.
  void upload(const ForwardBatch& batch, int block_size);

  int64_t n_tokens() const { return n_tokens_; }
  int64_t n_logits() const { return n_logits_; }
  const Tensor& tokens() const { return tokens_; }            // [n] I32
  const Tensor& positions() const { return positions_; }      // [n] I32
  const Tensor& logits_rows() const { return logits_rows_; }  // [n_logits] I32
  const AttentionBatch& attention() const { return attn_; }
  ActivationArena& arena() { return arena_; }

 private:
  Backend& backend_;
  StepLimits limits_;
  // Host staging and backend tensors of full capacity: [tokens | positions |
  // token_seq | slots | logits_rows | block_tables], one upload per step.
  Tensor staging_;
  Tensor meta_;
  int64_t n_tokens_ = 0;
  int64_t n_logits_ = 0;
  Tensor tokens_, positions_, logits_rows_;
  AttentionBatch attn_;
  ActivationArena arena_;
};

}  // namespace moeserve
