// Turns API input (text, token ids or chat messages) into prompt token ids, shared by the HTTP
// and gRPC front ends: the model's chat template (tokenizer_config.json) renders messages, the
// tokenizer encodes, and ids are checked against the vocabulary.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moeserve/engine.h"
#include "moeserve/status.h"
#include "tokenizer/chat_template.h"

namespace moeserve {

struct ChatMessage {
  std::string role;     // system, user, assistant, tool, developer
  std::string content;  // text (content parts already joined by the caller)
  std::optional<std::string> reasoning_content;  // assistant's earlier reasoning, if given
};

struct Prompt {
  std::vector<int32_t> ids;
  std::string text;  // the rendered text ("" for token-id prompts)
  // kInsideReasoning when the rendered prompt ends with "<think>" (+ whitespace): the model's
  // output starts inside reasoning; else kModelOpens if the vocabulary has <think> and
  // </think> tokens; else kNone.
  ReasoningMode reasoning = ReasoningMode::kNone;
};

class PromptBuilder {
 public:
  // `tokenizer_dir` holds tokenizer_config.json (chat_template, bos_token, eos_token). A
  // missing or template-less config makes chat requests fail with FailedPrecondition; a
  // template that does not parse is an error here, naming the file.
  static StatusOr<std::unique_ptr<PromptBuilder>> create(const Tokenizer& tokenizer,
                                                         const std::string& tokenizer_dir);

  // Renders and encodes chat messages (special tokens come from the template, so nothing is
  // added). InvalidArgument: no messages, an unknown role, or a template error.
  StatusOr<Prompt> from_messages(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) const;
  // Encodes text. InvalidArgument when it is empty or encodes to no tokens.
  StatusOr<Prompt> from_text(std::string_view text, bool add_special_tokens) const;
  // Checks ids: non-empty, each in [0, vocab). The message names the first bad id and index.
  StatusOr<Prompt> from_ids(std::span<const int64_t> ids) const;

  bool has_chat_template() const { return chat_template_.has_value(); }
  const Tokenizer& tokenizer() const { return tokenizer_; }

 private:
  PromptBuilder(const Tokenizer& tokenizer, std::optional<ChatTemplate> chat_template,
                std::string bos_token, std::string eos_token);
  ReasoningMode reasoning_for(std::string_view rendered) const;

  const Tokenizer& tokenizer_;
  std::optional<ChatTemplate> chat_template_;
  std::string bos_token_;
  std::string eos_token_;
};

}  // namespace moeserve
