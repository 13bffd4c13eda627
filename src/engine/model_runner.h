// Runs steps of a model over sequences that own blocks of a paged KV cache.
// The scheduler decides what goes into a step; this class turns that into a
// ForwardBatch (positions, slots, block tables), runs it and returns logits.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "engine/block_manager.h"
#include "model/deepseek_v2.h"

namespace moeserve {

// Tokens appended to one sequence in a step.
struct SequenceChunk {
  int seq_id = 0;
  std::vector<int32_t> tokens;
  bool all_logits = false;  // logits for every token (else the last only)
};

// One sequence's part of a step whose KV blocks are managed elsewhere (the scheduler's block
// manager): the tokens to compute, where they start, and the blocks that hold the sequence.
struct RunSeq {
  int n_computed = 0;                    // tokens already in the cache = first new position
  std::span<const int32_t> tokens;       // [n_new], non-empty
  std::span<const int32_t> block_table;  // covers n_computed + n_new slots
  bool all_logits = false;               // logits for every token (else the last only)
};

// Builds the ForwardBatch for `seqs` and runs `model` on `cache`: the logits [n_logits, vocab]
// F32 on the model's backend, one row per requested token in sequence order, valid until the
// model's next step.
StatusOr<Tensor> run_step(DeepseekV2Model& model, const KvCache& cache,
                          std::span<const RunSeq> seqs);

// The model step as the engine calls it: run_step, or a test's wrapper around it that fails.
using StepFn =
    std::function<StatusOr<Tensor>(DeepseekV2Model&, const KvCache&, std::span<const RunSeq>)>;

// A step whose sequences succeed or fail one by one.
struct IsolatedStep {
  Tensor logits;                // [n_logits, vocab] F32 on the backend, as run_step's; the
                                // rows of sequences that failed are unspecified
  std::vector<Status> failure;  // [seqs.size()]: OK, or why that sequence's step failed
};

// Runs `seqs` as one step through `step`. If the step fails, runs each sequence alone, so only
// the sequences that fail on their own fail (with Internal "model step failed: …"); the
// others' logits are their solo runs'. A sequence only writes its own cache slots, so running
// it again after the failed batch is safe.
IsolatedStep run_step_isolated(const StepFn& step, DeepseekV2Model& model, const KvCache& cache,
                               std::span<const RunSeq> seqs);

// Runs sequences without the scheduler (golden tests, benchmarks): their blocks come from a
// BlockManager of its own with the prefix cache off, so sequences share nothing.
class ModelRunner {
 public:
  ModelRunner(DeepseekV2Model& model, int n_blocks, int block_size, DType kv_dtype = DType::kF32);

  int create_sequence();
  void release_sequence(int seq_id);  // returns its blocks
  int64_t n_cached(int seq_id) const;
  int n_free_blocks() const { return blocks_.n_available(); }
  const KvCache& cache() const { return cache_; }

  // Appends each chunk to its sequence and runs one forward step. Returns the
  // host logits, one row per requested token, in chunk order. On error no
  // sequence changes (blocks taken for this step are given back).
  StatusOr<std::vector<std::vector<float>>> step(const std::vector<SequenceChunk>& chunks);

 private:
  DeepseekV2Model& model_;
  KvCache cache_;
  BlockManager blocks_;  // a sequence's slots in use are its tokens in the cache
  int next_id_ = 0;
};

}  // namespace moeserve
