#include "tokenizer/chat_template.h"

#include <algorithm>
#include <exception>
#include <new>

#include "nlohmann/json.hpp"
#include "tokenizer/jinja_budget.h"
#include "tokenizer/jinja_interpreter.h"
#include "tokenizer/jinja_parser.h"

namespace moeserve {
namespace {

Status to_status(const jinja::JinjaError& e) {
  if (e.has_loc()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chat template:", e.loc().line, ":", e.loc().col, ": ", e.message()));
  }
  return absl::InvalidArgumentError(absl::StrCat("chat template: ", e.message()));
}

}  // namespace

StatusOr<ChatTemplate> ChatTemplate::parse(std::string_view source) {
  try {
    return ChatTemplate(jinja::parse_template(source));
  } catch (const jinja::JinjaError& e) {
    return to_status(e);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("chat template: out of memory while parsing");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("chat template: ", e.what()));
  }
}

StatusOr<std::string> ChatTemplate::render(const nlohmann::json& context,
                                           RenderLimits limits) const {
  return render_impl(context, limits);
}

StatusOr<std::string> ChatTemplate::render(const nlohmann::ordered_json& context,
                                           RenderLimits limits) const {
  return render_impl(context, limits);
}

template <typename Json>
StatusOr<std::string> ChatTemplate::render_impl(const Json& context, RenderLimits limits) const {
  if (!context.is_object()) {
    return absl::InvalidArgumentError("chat template: render context must be a JSON object");
  }
  jinja::Budget budget;
  budget.max_steps = limits.max_steps;
  budget.max_bytes = limits.max_output_bytes;
  budget.max_call_depth = std::clamp(limits.max_recursion_depth, 0, kMaxRecursionDepth);
  try {
    const jinja::Value globals = jinja::from_json(context);
    return jinja::render(*tmpl_, globals, budget);
  } catch (const jinja::JinjaError& e) {
    return to_status(e);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("chat template: out of memory while rendering");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("chat template: ", e.what()));
  }
}

}  // namespace moeserve
