// Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) for BPE
// models: DeepSeek-V2/V3, Qwen2/3, Llama-3, Mistral-style byte-fallback.
//
// encode: added tokens are split out of the raw text first; each text section
// between them is normalized, pre-tokenized into words, and each word is BPE
// encoded; with add_special_tokens the post-processor's tokens go around it.
// Ids match transformers.js (@lenml/tokenizers) on tests/data/tokenizer/.
//
// Known deviations from Hugging Face's Rust tokenizers, all following the
// transformers.js reference: `\s` in split patterns is ECMAScript whitespace;
// `normalized` added tokens are matched on the raw text. And one deviation
// from transformers.js, following Hugging Face Python: for Llama-family
// tokenizer classes, tokenizer_config's add_bos_token/add_eos_token decide
// the special tokens added (DeepSeek-V3 gets its BOS).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace moeserve {

struct EncodeOptions {
  bool add_special_tokens = true;  // apply the post-processor (BOS/EOS, template)
  // Match special-token text in the input as the special token. False treats
  // it as plain text (for untrusted user content); non-special added tokens
  // still match.
  bool parse_special_tokens = true;
};

struct DecodeOptions {
  bool skip_special_tokens = false;
  // Slow-tokenizer style: decode the text between added tokens separately and
  // join all parts with single spaces.
  bool spaces_between_special_tokens = false;
};

class AddedTokenMatcher;
class BpeModel;
class Decoder;
class Normalizer;
class PreTokenizer;
struct PostProcessor;

class Tokenizer {
 public:
  // Reads `dir`/tokenizer.json and, when present, `dir`/tokenizer_config.json.
  static StatusOr<std::unique_ptr<Tokenizer>> load(const std::filesystem::path& dir);
  // Same from file contents; `tokenizer_config_json` may be empty.
  static StatusOr<std::unique_ptr<Tokenizer>> from_json(std::string_view tokenizer_json,
                                                        std::string_view tokenizer_config_json);
  ~Tokenizer();

  // Thread-safe.
  std::vector<int32_t> encode(std::string_view text, EncodeOptions options = {}) const;
  // Always valid UTF-8 (invalid byte sequences become U+FFFD).
  std::string decode(std::span<const int32_t> ids, DecodeOptions options = {}) const;
  // The decoder's raw bytes before UTF-8 repair; decode() is
  // unicode::to_valid_utf8(decode_bytes()) plus optional clean-up.
  // spaces_between_special_tokens is ignored here.
  std::string decode_bytes(std::span<const int32_t> ids, bool skip_special_tokens) const;

  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  std::string_view id_to_token(int32_t id) const;     // empty when absent
  bool is_special(int32_t id) const;
  int32_t vocab_size() const { return static_cast<int32_t>(id_to_token_.size()); }
  int32_t bos_id() const { return bos_id_; }  // -1 when none
  int32_t eos_id() const { return eos_id_; }  // -1 when none

 private:
  Tokenizer();
  void encode_section(std::string_view text, bool first_section, std::vector<int32_t>& out) const;

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  std::unique_ptr<AddedTokenMatcher> added_;
  std::vector<std::string> id_to_token_;  // model vocabulary overlaid by added tokens
  std::vector<uint8_t> special_;          // by id: 1 for special added tokens
  std::vector<uint8_t> added_flag_;       // by id: 1 for any added token
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  bool clean_up_tokenization_spaces_ = false;
};

}  // namespace moeserve
