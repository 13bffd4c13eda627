#include "server/prompt_builder.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tokenizer/tokenizer.h"
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

// tokenizer_config.json writes special tokens as "text" or {"content": "text", ...}.
std::string token_text(const nlohmann::json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return "";
}

bool known_role(const std::string& role) {
  return role == "system" || role == "user" || role == "assistant" || role == "tool" ||
         role == "developer";
}

}  // namespace

PromptBuilder::PromptBuilder(const Tokenizer& tokenizer, std::optional<ChatTemplate> chat_template,
                             std::string bos_token, std::string eos_token)
    : tokenizer_(tokenizer),
      chat_template_(std::move(chat_template)),
      bos_token_(std::move(bos_token)),
      eos_token_(std::move(eos_token)) {}

StatusOr<std::unique_ptr<PromptBuilder>> PromptBuilder::create(const Tokenizer& tokenizer,
                                                               const std::string& tokenizer_dir) {
  const std::filesystem::path path = std::filesystem::path(tokenizer_dir) / "tokenizer_config.json";
  std::ifstream in(path);
  if (!in) {
    return std::unique_ptr<PromptBuilder>(new PromptBuilder(tokenizer, std::nullopt, "", ""));
  }
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json config = nlohmann::json::parse(text.str(), nullptr, false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": not a JSON object (invalid JSON)"));
  }
  std::optional<ChatTemplate> chat_template;
  const auto it = config.find("chat_template");
  if (it != config.end() && !it->is_null()) {
    // A string, or a list of {"name", "template"} of which "default" is used.
    std::string source;
    if (it->is_string()) {
      source = it->get<std::string>();
    } else if (it->is_array()) {
      for (const auto& entry : *it) {
        if (entry.is_object() && entry.value("name", "") == "default" &&
            entry.contains("template") && entry["template"].is_string()) {
          source = entry["template"].get<std::string>();
        }
      }
      if (source.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            path.string(), ": chat_template is a list without a \"default\" template"));
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(path.string(), ": chat_template must be a string or a list"));
    }
    auto parsed = ChatTemplate::parse(source);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path.string(), ": chat_template: ", parsed.status().message()));
    }
    chat_template = std::move(*parsed);
  }
  return std::unique_ptr<PromptBuilder>(new PromptBuilder(tokenizer, std::move(chat_template),
                                                          token_text(config, "bos_token"),
                                                          token_text(config, "eos_token")));
}

ReasoningMode PromptBuilder::reasoning_for(std::string_view rendered) const {
  size_t end = rendered.size();
  while (end > 0 && (rendered[end - 1] == '\n' || rendered[end - 1] == ' ')) --end;
  if (rendered.substr(0, end).ends_with("<think>")) return ReasoningMode::kInsideReasoning;
  if (tokenizer_.token_to_id("<think>") >= 0 && tokenizer_.token_to_id("</think>") >= 0) {
    return ReasoningMode::kModelOpens;
  }
  return ReasoningMode::kNone;
}

StatusOr<Prompt> PromptBuilder::from_messages(const std::vector<ChatMessage>& messages,
                                              bool add_generation_prompt) const {
  if (!chat_template_.has_value()) {
    return absl::FailedPreconditionError(
        "this model has no chat template (tokenizer_config.json chat_template); use "
        "/v1/completions with a prompt instead");
  }
  if (messages.empty()) return absl::InvalidArgumentError("messages: must not be empty");
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (!known_role(m.role)) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "].role: unknown role '", m.role,
                       "' (expected system, user, assistant, tool or developer)"));
    }
    nlohmann::ordered_json msg = {{"role", m.role}, {"content", m.content}};
    if (m.reasoning_content.has_value()) msg["reasoning_content"] = *m.reasoning_content;
    list.push_back(std::move(msg));
  }
  const nlohmann::ordered_json context = {{"messages", std::move(list)},
                                          {"add_generation_prompt", add_generation_prompt},
                                          {"bos_token", bos_token_},
                                          {"eos_token", eos_token_}};
  auto rendered = chat_template_->render(context);
  if (!rendered.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("messages: the chat template failed: ", rendered.status().message()));
  }
  Prompt prompt;
  prompt.text = std::move(*rendered);
  // The template writes BOS and the role markers itself.
  prompt.ids = tokenizer_.encode(prompt.text, {.add_special_tokens = false});
  if (prompt.ids.empty()) {
    return absl::InvalidArgumentError("messages: the rendered prompt is empty");
  }
  prompt.reasoning = reasoning_for(prompt.text);
  return prompt;
}

StatusOr<Prompt> PromptBuilder::from_text(std::string_view text, bool add_special_tokens) const {
  // An empty prompt would be only the BOS token: refused, as OpenAI's API does.
  if (text.empty()) return absl::InvalidArgumentError("prompt: must not be empty");
  Prompt prompt;
  prompt.text = std::string(text);
  // Special-token text in a raw prompt is matched, as vLLM and llama.cpp's server do.
  prompt.ids = tokenizer_.encode(text, {.add_special_tokens = add_special_tokens});
  if (prompt.ids.empty()) {
    return absl::InvalidArgumentError("prompt: must not be empty (it encodes to no tokens)");
  }
  return prompt;
}

StatusOr<Prompt> PromptBuilder::from_ids(std::span<const int64_t> ids) const {
  if (ids.empty()) return absl::InvalidArgumentError("prompt: must not be empty");
  const int64_t vocab = tokenizer_.vocab_size();
  Prompt prompt;
  prompt.ids.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("prompt: token id ", ids[i], " at index ", i,
                                                     " is outside the vocabulary [0, ", vocab,
                                                     ")"));
    }
    prompt.ids.push_back(static_cast<int32_t>(ids[i]));
  }
  return prompt;
}

}  // namespace moeserve
