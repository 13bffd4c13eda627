// Splits DeepSeek-R1 style output into reasoning (between <think> and </think>) and content,
// for the API's `reasoning_content` and `content`. Works on streamed text deltas: a tag split
// across deltas is held back until it is whole (or proves not to be a tag). Like vLLM's
// deepseek_r1 reasoning parser, but on text rather than token ids:
//  - Only the first reasoning block counts; after </think> everything (tags too) is content.
//  - The tags themselves appear in neither output; the whitespace around them is kept.
//  - Output that ends inside reasoning is all reasoning (a truncated or unfinished thought).
#pragma once

#include <string>
#include <string_view>

namespace moeserve {

inline constexpr std::string_view kThinkOpen = "<think>";
inline constexpr std::string_view kThinkClose = "</think>";

enum class ReasoningStart {
  // The chat template ended the prompt with "<think>\n" (DeepSeek-R1 since 2025-01, V3.1
  // thinking): output starts inside reasoning. A "<think>" at the very start of the output
  // (models that still emit it) is dropped.
  kInsideReasoning,
  // The model opens reasoning itself: text before the first "<think>" is content; output with
  // no "<think>" is all content.
  kModelOpens,
};

struct ReasoningDelta {
  std::string reasoning;
  std::string content;
  bool operator==(const ReasoningDelta&) const = default;
};

// One per sequence.
class ReasoningParser {
 public:
  explicit ReasoningParser(ReasoningStart start);

  // The next piece of generated text → what can be emitted now. Either part may be empty.
  ReasoningDelta feed(std::string_view delta);
  // End of the sequence: emits held-back text that was the start of a tag but never finished.
  ReasoningDelta finish();

  // True once </think> has been seen: later text is all content.
  bool reasoning_ended() const { return state_ == State::kContent; }

 private:
  enum class State {
    kStart,            // kInsideReasoning, nothing seen: a leading <think> is dropped
    kBeforeReasoning,  // kModelOpens: content until <think>
    kReasoning,        // until </think>
    kContent,          // to the end
  };
  State state_;
  std::string held_;  // text not yet emitted: a proper prefix of the tag being looked for
};

// The whole text at once; equal to the concatenated feed() and finish() results of any
// chunking of `text`.
ReasoningDelta split_reasoning(std::string_view text, ReasoningStart start);

}  // namespace moeserve
