// Fuzzes IncrementalDetokenizer on the two tiny test tokenizers. Input (via
// FuzzedDataProvider): options, up to three stop strings (random bytes or a
// piece of the one-shot text, so they actually match), then token ids,
// including negative and out-of-range ones, which decode() documents as
// dropped.
//
// Checks: the streamed text (every feed() plus finish()) equals the one-shot
// decode() when no stop string matched, and then no stop string occurs in the
// one-shot text either. When one matched, the stream is the one-shot text up
// to that match (plus the match with include_stop_string), no stop string
// occurs wholly before it, and feed() after the stop returns nothing.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_tokenizers.h"
#include "tokenizer/detokenizer.h"
#include "tokenizer/tokenizer.h"
#include <fuzzer/FuzzedDataProvider.h>

namespace {

using moeserve::fuzz::property_failed;

int32_t consume_id(FuzzedDataProvider& in, int32_t vocab_size) {
  uint16_t v = in.ConsumeIntegral<uint16_t>();
  if (v == 0xffff) return INT32_MAX;
  if (v == 0xfffe) return INT32_MIN;
  // Mostly valid ids, a few just outside the range on either side.
  return static_cast<int32_t>(v % (vocab_size + 6)) - 3;
}

bool contains_any(const std::string& text, const std::vector<std::string>& stops) {
  for (const std::string& s : stops)
    if (!s.empty() && text.find(s) != std::string::npos) return true;
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moeserve;
  if (size > 4096) return 0;
  FuzzedDataProvider in(data, size);
  const Tokenizer& tok = fuzz::tiny_tokenizer(
      in.ConsumeBool() ? fuzz::TinyTokenizer::kByteLevel : fuzz::TinyTokenizer::kByteFallback);
  DetokenizerOptions options;
  options.skip_special_tokens = in.ConsumeBool();
  options.include_stop_string = in.ConsumeBool();
  int n_stops = in.ConsumeIntegralInRange(0, 3);
  std::vector<bool> stop_from_text;
  for (int i = 0; i < n_stops; ++i) {
    stop_from_text.push_back(in.ConsumeBool());
    options.stop_strings.push_back(in.ConsumeRandomLengthString(8));
  }
  std::vector<int32_t> ids;
  while (in.remaining_bytes() > 0) ids.push_back(consume_id(in, tok.vocab_size()));

  const std::string one_shot =
      tok.decode(ids, {.skip_special_tokens = options.skip_special_tokens});
  // A stop "from text" uses its random bytes as (offset, length) into the text.
  for (int i = 0; i < n_stops; ++i) {
    std::string& stop = options.stop_strings[i];
    if (!stop_from_text[i] || stop.size() < 2 || one_shot.empty()) continue;
    size_t at = static_cast<uint8_t>(stop[0]) % one_shot.size();
    size_t len = 1 + static_cast<uint8_t>(stop[1]) % 6;
    stop = one_shot.substr(at, len);
  }

  IncrementalDetokenizer detok(tok, options);
  std::string streamed;
  for (int32_t id : ids) {
    bool was_stopped = detok.stopped();
    std::string piece = detok.feed(id);
    if (was_stopped && !piece.empty()) property_failed("feed() returned text after the stop");
    streamed += piece;
  }
  streamed += detok.finish();

  if (!detok.stopped()) {
    if (streamed != one_shot) property_failed("streamed text differs from decode()");
    if (contains_any(one_shot, options.stop_strings))
      property_failed("a stop string in the text was not matched");
    return 0;
  }
  const std::string& stop = detok.matched_stop_string();
  if (stop.empty()) property_failed("stopped without a matched stop string");
  size_t n_included = options.include_stop_string ? stop.size() : 0;
  if (streamed.size() < n_included) property_failed("stream shorter than its stop string");
  size_t at = streamed.size() - n_included;  // where the stop string starts
  if (at > one_shot.size() || one_shot.compare(at, stop.size(), stop) != 0)
    property_failed("the matched stop string is not in decode() at the stop");
  if (one_shot.compare(0, streamed.size(), streamed) != 0)
    property_failed("streamed text is not a prefix of decode()");
  if (contains_any(one_shot.substr(0, at), options.stop_strings))
    property_failed("an earlier stop string was missed");
  return 0;
}
