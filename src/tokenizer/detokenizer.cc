#include "tokenizer/detokenizer.h"

#include <algorithm>
#include <span>
#include <utility>

#include "common/status.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace moeserve {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer,
                                               DetokenizerOptions options)
    : tokenizer_(tokenizer), options_(std::move(options)) {
  std::erase_if(options_.stop_strings, [](const std::string& s) { return s.empty(); });
  if (!options_.stop_strings.empty()) stops_.emplace(options_.stop_strings);
}

std::string IncrementalDetokenizer::feed(int32_t id) {
  if (stopped_) return {};
  std::string added;
  if (prev_id_ < 0) {
    added = tokenizer_.decode_bytes(std::span<const int32_t>(&id, 1), options_.skip_special_tokens);
  } else {
    int32_t window[2] = {prev_id_, id};
    std::string before =
        tokenizer_.decode_bytes(std::span<const int32_t>(window, 1), options_.skip_special_tokens);
    std::string after = tokenizer_.decode_bytes(window, options_.skip_special_tokens);
    // Every supported decoder maps tokens independently of what follows, so
    // `before` is a prefix of `after`; if a decoder broke that, keep what
    // differs rather than lose bytes.
    size_t common = 0;
    while (common < before.size() && common < after.size() && before[common] == after[common])
      ++common;
    added = after.substr(common);
  }
  // Ids the decode drops (skipped specials, out of range) give no context.
  if (id >= 0 && id < tokenizer_.vocab_size() &&
      !(options_.skip_special_tokens && tokenizer_.is_special(id)))
    prev_id_ = id;
  pending_bytes_ += added;
  size_t consumed = 0;
  std::string text = unicode::to_valid_utf8(pending_bytes_, /*stop_at_incomplete=*/true, &consumed);
  pending_bytes_.erase(0, consumed);
  return apply_stop_strings(std::move(text), /*final=*/false);
}

std::string IncrementalDetokenizer::finish() {
  if (stopped_) return {};
  std::string text = unicode::to_valid_utf8(pending_bytes_);
  pending_bytes_.clear();
  return apply_stop_strings(std::move(text), /*final=*/true);
}

std::string IncrementalDetokenizer::apply_stop_strings(std::string text, bool final) {
  if (!stops_.has_value()) return text;
  const size_t held_before = held_text_.size();
  held_text_ += text;
  if (const std::optional<StopMatcher::Hit> hit = stops_->feed(text)) {
    const int64_t start = static_cast<int64_t>(held_before) + hit->start;
    MS_CHECK(start >= 0, "stop string match begins before the held-back text");
    const std::string& stop = options_.stop_strings[hit->stop];
    stopped_ = true;
    matched_stop_ = stop;
    std::string out = held_text_.substr(
        0, static_cast<size_t>(start) + (options_.include_stop_string ? stop.size() : 0));
    held_text_.clear();
    pending_bytes_.clear();
    return out;
  }
  if (final) return std::exchange(held_text_, std::string());
  // Hold back the longest tail that is a proper prefix of some stop string.
  const size_t keep = std::min(stops_->pending(), held_text_.size());
  std::string out = held_text_.substr(0, held_text_.size() - keep);
  held_text_.erase(0, held_text_.size() - keep);
  return out;
}

}  // namespace moeserve
