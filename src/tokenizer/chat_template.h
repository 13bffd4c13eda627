// Chat templates: the Jinja2 subset that Hugging Face chat templates use
// (DeepSeek-V3/R1, Qwen3, Llama-3.x), rendered the way transformers'
// apply_chat_template does (trim_blocks and lstrip_blocks on).
//
//   ASSIGN_OR_RETURN(ChatTemplate tmpl, ChatTemplate::parse(source));
//   ASSIGN_OR_RETURN(std::string prompt, tmpl.render({{"messages", msgs},
//                                                     {"add_generation_prompt", true}}));
//
// Errors carry the template position: "chat template:3:14: unknown filter 'foo'".
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "nlohmann/json_fwd.hpp"

namespace moeserve {

namespace jinja {
struct Template;
}  // namespace jinja

// Bounds on one render, so a hostile or broken template cannot hang or
// exhaust the server.
struct RenderLimits {
  size_t max_output_bytes = 8u << 20;  // also bounds any intermediate string
  int64_t max_steps = 2'000'000;       // statements + loop iterations + calls + list items
  int max_recursion_depth = 64;        // nested macro calls (capped at kMaxRecursionDepth)
};

class ChatTemplate {
 public:
  // Hard cap on RenderLimits::max_recursion_depth: keeps the C++ stack safe.
  static constexpr int kMaxRecursionDepth = 256;

  static StatusOr<ChatTemplate> parse(std::string_view source);

  // `context` is a JSON object: messages, tools, add_generation_prompt,
  // bos_token, eos_token and any extra kwargs (enable_thinking, ...).
  StatusOr<std::string> render(const nlohmann::json& context, RenderLimits limits = {}) const;
  // Same, keeping object key order as written (nlohmann::json sorts keys, so
  // `tools | tojson` would differ from transformers); prefer this one when the
  // context comes from a request body.
  StatusOr<std::string> render(const nlohmann::ordered_json& context,
                               RenderLimits limits = {}) const;

 private:
  explicit ChatTemplate(std::shared_ptr<const jinja::Template> tmpl) : tmpl_(std::move(tmpl)) {}
  template <typename Json>
  StatusOr<std::string> render_impl(const Json& context, RenderLimits limits) const;

  std::shared_ptr<const jinja::Template> tmpl_;  // immutable: renders may run concurrently
};

}  // namespace moeserve
