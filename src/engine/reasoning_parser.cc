#include "engine/reasoning_parser.h"

#include <algorithm>

namespace moeserve {
namespace {

// Length of the longest suffix of `text` that is a proper prefix of `tag`: the part that must
// be held back because the next delta may complete the tag.
size_t partial_tag_suffix(std::string_view text, std::string_view tag) {
  for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n) {
    if (text.ends_with(tag.substr(0, n))) return n;
  }
  return 0;
}

}  // namespace

ReasoningParser::ReasoningParser(ReasoningStart start)
    : state_(start == ReasoningStart::kInsideReasoning ? State::kStart : State::kBeforeReasoning) {}

ReasoningDelta ReasoningParser::feed(std::string_view delta) {
  ReasoningDelta out;
  std::string text = std::move(held_);
  held_.clear();
  text.append(delta);
  std::string_view rest = text;
  // Emits `rest` into `sink` up to `tag`, then moves to `next`. When the tag is not (yet)
  // there, all but a possible partial tag at the end is emitted and that part is held.
  auto emit_until = [&](std::string_view tag, std::string& sink, State next) {
    const size_t at = rest.find(tag);
    if (at != std::string_view::npos) {
      sink.append(rest.substr(0, at));
      rest.remove_prefix(at + tag.size());
      state_ = next;
      return;
    }
    const size_t n_held = partial_tag_suffix(rest, tag);
    sink.append(rest.substr(0, rest.size() - n_held));
    held_.assign(rest.substr(rest.size() - n_held));
    rest = {};
  };
  while (!rest.empty()) {
    switch (state_) {
      case State::kStart:
        if (rest.starts_with(kThinkOpen)) {
          rest.remove_prefix(kThinkOpen.size());
          state_ = State::kReasoning;
        } else if (kThinkOpen.starts_with(rest)) {
          held_.assign(rest);  // may still become "<think>"
          rest = {};
        } else {
          state_ = State::kReasoning;
        }
        break;
      case State::kBeforeReasoning: emit_until(kThinkOpen, out.content, State::kReasoning); break;
      case State::kReasoning: emit_until(kThinkClose, out.reasoning, State::kContent); break;
      case State::kContent:
        out.content.append(rest);
        rest = {};
        break;
    }
  }
  return out;
}

ReasoningDelta ReasoningParser::finish() {
  ReasoningDelta out;
  // Held text is an unfinished tag: literal text of the part it was found in.
  if (state_ == State::kBeforeReasoning || state_ == State::kContent) {
    out.content = std::move(held_);
  } else {
    out.reasoning = std::move(held_);
  }
  held_.clear();
  return out;
}

ReasoningDelta split_reasoning(std::string_view text, ReasoningStart start) {
  ReasoningDelta out;
  if (start == ReasoningStart::kInsideReasoning) {
    if (text.starts_with(kThinkOpen)) text.remove_prefix(kThinkOpen.size());
  } else {
    const size_t open = text.find(kThinkOpen);
    if (open == std::string_view::npos) {
      out.content.assign(text);
      return out;
    }
    out.content.assign(text.substr(0, open));
    text.remove_prefix(open + kThinkOpen.size());
  }
  const size_t close = text.find(kThinkClose);
  if (close == std::string_view::npos) {
    out.reasoning.assign(text);
    return out;
  }
  out.reasoning.assign(text.substr(0, close));
  out.content.append(text.substr(close + kThinkClose.size()));
  return out;
}

}  // namespace moeserve
