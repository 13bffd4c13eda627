// Decoders from tokenizer.json: ByteLevel, ByteFallback, Metaspace, Fuse,
// Strip, Replace, Sequence. A decoder rewrites the list of token strings; the
// tokenizer concatenates the result. Output is raw bytes: byte-level and
// <0xNN> tokens may leave invalid or partial UTF-8, which the caller repairs
// (Tokenizer::decode) or assembles across calls (IncrementalDetokenizer).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "tokenizer/tokenizer_json.h"

namespace moeserve {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// Returns nullptr for a null config (tokens are concatenated as they are).
StatusOr<std::unique_ptr<Decoder>> make_decoder(const tokenizer_json::Json& config,
                                                std::string_view path);

}  // namespace moeserve
