// Fuzzes ChatTemplate::parse and render. Input: template source, optionally
// followed by a NUL byte and a JSON object used as the render context (a
// default conversation when it is missing or not an object).
//
// Checks: parse and render return a Status for any input, never crash, hang
// or overflow the stack, and render stays inside the RenderLimits given.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_tokenizers.h"
#include "nlohmann/json.hpp"
#include "tokenizer/chat_template.h"

namespace {

// Tight limits keep each run fast; the engine enforces them, so a slow input
// is a finding (libFuzzer's -timeout), not noise.
constexpr moeserve::RenderLimits kLimits = {
    .max_output_bytes = 64u << 10, .max_steps = 20'000, .max_recursion_depth = 32};

nlohmann::ordered_json default_context() {
  return nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Hi <b> \u00e9"},
      {"role": "assistant", "content": "<think>x</think>Hello", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
      {"role": "tool", "content": "42"}
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>",
    "enable_thinking": false})");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moeserve;
  if (size > 16384) return 0;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t nul = input.find('\0');
  std::string_view source = input.substr(0, nul);

  auto tmpl = ChatTemplate::parse(source);
  if (!tmpl.ok()) return 0;

  static const nlohmann::ordered_json kDefault = default_context();
  nlohmann::ordered_json context = kDefault;
  if (nul != std::string_view::npos) {
    auto parsed = nlohmann::ordered_json::parse(input.substr(nul + 1), nullptr,
                                                /*allow_exceptions=*/false);
    if (parsed.is_object()) context = std::move(parsed);
  }
  auto out = tmpl->render(context, kLimits);
  if (out.ok() && out->size() > kLimits.max_output_bytes)
    fuzz::property_failed("render output exceeds max_output_bytes");
  // The sorted-key overload converts the context its own way. Its result may
  // differ legitimately (key order is visible to templates), so only its
  // limits are checked.
  auto sorted = tmpl->render(nlohmann::json(context), kLimits);
  if (sorted.ok() && sorted->size() > kLimits.max_output_bytes)
    fuzz::property_failed("render output exceeds max_output_bytes");
  return 0;
}
