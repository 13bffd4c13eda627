// Output processing: turns the tokens sampled for a request into its TokenEvents. Per sequence
// it keeps the sampling state (LogitsProcessor, Sampler, TokenCounts) and the text state
// (IncrementalDetokenizer with the stop strings, ReasoningParser); per request, the stop ids
// and the totals its last event carries. Engine thread only; no model, no scheduler.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "engine/logits_processor.h"
#include "engine/reasoning_parser.h"
#include "engine/sampler.h"
#include "moeserve/engine.h"
#include "tokenizer/detokenizer.h"

namespace moeserve {

// One sequence of a request.
struct SeqOutput {
  SeqOutput(const GenerateRequest& request, int index, const Tokenizer* tokenizer,
            std::span<const int32_t> eos_ids);

  LogitsProcessor processor;
  Sampler sampler;
  TokenCounts counts;
  std::optional<IncrementalDetokenizer> detokenizer;  // absent without a tokenizer: no text
  std::optional<ReasoningParser> reasoning;
  std::optional<FinishReason> finish;  // set when the sequence ended
};

// A sampled token's event, and whether the token ends its sequence (a stop id or stop string).
struct TokenOutput {
  TokenEvent event;
  bool stopped = false;
};

// The n sequences of one request.
class RequestOutput {
 public:
  // `tokenizer` may be null (a model without one): events then carry ids and no text.
  RequestOutput(const GenerateRequest& request, const Tokenizer* tokenizer,
                std::span<const int32_t> eos_ids);

  int n_seqs() const { return static_cast<int>(seqs_.size()); }
  bool finished(int index) const { return seq(index).finish.has_value(); }

  // What sample_rows needs to sample sequence `index` from row `row` of a step's logits.
  RowToSample row_to_sample(int index, int64_t row);
  // Takes the token sampled for sequence `index`: counts it, detokenizes it (unless it is a
  // stop id), splits reasoning from content and builds its event.
  TokenOutput on_token(int index, const SampledToken& sampled);
  // Ends sequence `index` with `reason`: `event` becomes its last, with the text held back so
  // far (a possible stop-string start, an incomplete character). Returns true when it was the
  // request's last sequence; `event` then carries the usage, with `cached_tokens`.
  bool finish_seq(int index, FinishReason reason, int cached_tokens, TokenEvent& event);
  // The request's finish once every sequence ended: an error if any failed, else an abort if
  // any was aborted, else the first sequence's.
  FinishReason overall_finish() const;

 private:
  SeqOutput& seq(int index) { return *seqs_.at(static_cast<size_t>(index)); }
  const SeqOutput& seq(int index) const { return *seqs_.at(static_cast<size_t>(index)); }

  int n_prompt_ = 0;
  bool logprobs_ = false;
  bool ignore_eos_ = false;
  std::vector<int32_t> stop_ids_;  // stop_token_set: EOS (unless ignore_eos) + stop_token_ids
  std::vector<int32_t> eos_ids_;   // sorted
  std::vector<std::unique_ptr<SeqOutput>> seqs_;  // [n]; the detokenizer is not movable
  int n_finished_ = 0;
};

}  // namespace moeserve
