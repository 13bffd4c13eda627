#include "engine/output_processor.h"

#include <algorithm>

#include "common/status.h"

namespace moeserve {
namespace {

ReasoningStart reasoning_start(ReasoningMode mode) {
  return mode == ReasoningMode::kInsideReasoning ? ReasoningStart::kInsideReasoning
                                                 : ReasoningStart::kModelOpens;
}

}  // namespace

SeqOutput::SeqOutput(const GenerateRequest& request, int index, const Tokenizer* tokenizer,
                     std::span<const int32_t> eos_ids)
    : processor(request.sampling, eos_ids), sampler(request.sampling, index) {
  counts.add_prompt(request.prompt);
  if (tokenizer != nullptr) {
    detokenizer.emplace(
        *tokenizer, DetokenizerOptions{.skip_special_tokens = request.skip_special_tokens,
                                       .stop_strings = request.sampling.stop,
                                       .include_stop_string = request.include_stop_str_in_output});
  }
  if (request.reasoning != ReasoningMode::kNone)
    reasoning.emplace(reasoning_start(request.reasoning));
}

RequestOutput::RequestOutput(const GenerateRequest& request, const Tokenizer* tokenizer,
                             std::span<const int32_t> eos_ids)
    : n_prompt_(static_cast<int>(request.prompt.size())),
      logprobs_(request.sampling.logprobs),
      ignore_eos_(request.sampling.ignore_eos),
      stop_ids_(stop_token_set(request.sampling, eos_ids)),
      eos_ids_(eos_ids.begin(), eos_ids.end()) {
  std::sort(eos_ids_.begin(), eos_ids_.end());
  for (int i = 0; i < request.sampling.n; ++i) {
    seqs_.push_back(std::make_unique<SeqOutput>(request, i, tokenizer, eos_ids));
  }
}

RowToSample RequestOutput::row_to_sample(int index, int64_t row) {
  SeqOutput& q = seq(index);
  return {.row = row, .processor = &q.processor, .counts = &q.counts, .sampler = &q.sampler};
}

TokenOutput RequestOutput::on_token(int index, const SampledToken& sampled) {
  SeqOutput& q = seq(index);
  const int32_t token = sampled.token;
  q.counts.add_output(token);
  TokenOutput out;
  out.event.index = index;
  out.event.token_ids.push_back(token);
  if (logprobs_) {
    TokenLogprobs lp{.token = token, .logprob = sampled.logprob, .top = {}};
    for (const TokenLogprob& t : sampled.top_logprobs) lp.top.emplace_back(t.token, t.logprob);
    out.event.logprobs.push_back(std::move(lp));
  }
  std::string text;
  if (std::binary_search(stop_ids_.begin(), stop_ids_.end(), token)) {
    out.stopped = true;
    // EOS is reported as a stop token only when it is the request's own stop id.
    if (!std::binary_search(eos_ids_.begin(), eos_ids_.end(), token) || ignore_eos_) {
      out.event.stop_token = token;
    }
  } else if (q.detokenizer.has_value()) {
    text = q.detokenizer->feed(token);
    if (q.detokenizer->stopped()) {
      out.stopped = true;
      out.event.stop_string = q.detokenizer->matched_stop_string();
    }
  }
  if (q.reasoning.has_value()) {
    ReasoningDelta d = q.reasoning->feed(text);
    out.event.text = std::move(d.content);
    out.event.reasoning_text = std::move(d.reasoning);
  } else {
    out.event.text = std::move(text);
  }
  return out;
}

bool RequestOutput::finish_seq(int index, FinishReason reason, int cached_tokens,
                               TokenEvent& event) {
  SeqOutput& q = seq(index);
  MS_CHECK(!q.finish.has_value(), "sequence finished twice");
  q.finish = reason;
  std::string tail = q.detokenizer.has_value() ? q.detokenizer->finish() : "";
  if (q.reasoning.has_value()) {
    ReasoningDelta d = q.reasoning->feed(tail);
    const ReasoningDelta end = q.reasoning->finish();
    event.text += d.content + end.content;
    event.reasoning_text += d.reasoning + end.reasoning;
  } else {
    event.text += tail;
  }
  event.index = index;
  event.finish = reason;
  if (++n_finished_ < n_seqs()) return false;
  Usage usage;
  usage.prompt_tokens = n_prompt_;
  for (const auto& s : seqs_) usage.completion_tokens += s->counts.n_output;
  usage.cached_tokens = std::max(0, cached_tokens);
  event.usage = usage;
  return true;
}

FinishReason RequestOutput::overall_finish() const {
  FinishReason overall = *seqs_[0]->finish;
  for (const auto& s : seqs_) {
    if (*s->finish == FinishReason::kError ||
        (*s->finish == FinishReason::kAbort && overall != FinishReason::kError)) {
      overall = *s->finish;
    }
  }
  return overall;
}

}  // namespace moeserve
