// Fuzzes Tokenizer::from_json. Input: tokenizer.json bytes, optionally
// followed by a NUL byte and tokenizer_config.json bytes (valid JSON text
// never contains a raw NUL, so the split cannot hide a valid document).
//
// Checks: any input gives a Status, never a crash, hang, leak or sanitizer
// report; a tokenizer that loads can encode and decode (also ids it never
// produces) and decode returns valid UTF-8. Encoded ids are not range-checked:
// a post-processor may name ids outside the vocabulary, as in Hugging Face.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "fuzz_tokenizers.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace {

// Short text that reaches the normalizer, pre-tokenizer, added-token matcher
// and byte fallback of whatever tokenizer the input describes.
constexpr std::string_view kProbe =
    "Hello  world's 123 <s></s><unk><|endoftext|> \xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\n\t\xff";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moeserve;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t nul = input.find('\0');
  std::string_view tokenizer_json = input.substr(0, nul);
  std::string_view config_json = nul == std::string_view::npos ? "" : input.substr(nul + 1);

  auto loaded = Tokenizer::from_json(tokenizer_json, config_json);
  if (!loaded.ok()) return 0;
  const Tokenizer& tok = **loaded;

  for (bool parse_special : {false, true}) {
    std::vector<int32_t> ids =
        tok.encode(kProbe, {.add_special_tokens = true, .parse_special_tokens = parse_special});
    for (DecodeOptions options :
         {DecodeOptions{.skip_special_tokens = false},
          DecodeOptions{.skip_special_tokens = true, .spaces_between_special_tokens = true}}) {
      if (!unicode::is_valid_utf8(tok.decode(ids, options)))
        fuzz::property_failed("decode returned invalid UTF-8");
    }
  }
  // Decode ids the tokenizer did not produce: low ids, the edges, junk.
  const int32_t n_vocab = tok.vocab_size();
  std::vector<int32_t> ids = {-1, n_vocab - 1, n_vocab, INT32_MAX, INT32_MIN};
  for (int32_t id = 0; id < n_vocab && id < 64; ++id) ids.push_back(id);
  std::string text = tok.decode(ids);
  if (!unicode::is_valid_utf8(text)) fuzz::property_failed("decode returned invalid UTF-8");
  return 0;
}
