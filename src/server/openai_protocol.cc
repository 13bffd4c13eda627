#include "server/openai_protocol.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace moeserve {
namespace {

using nlohmann::json;

// Request fields whose names may start an engine or validate() message.
// clang-format off
constexpr std::string_view kKnownFields[] = {
    "model", "prompt", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "top_k", "min_p", "n", "seed", "stop", "stop_token_ids", "logit_bias", "presence_penalty",
    "frequency_penalty", "repetition_penalty", "min_tokens", "logprobs", "top_logprobs",
    "ignore_eos", "priority", "cache_salt", "tokens",
};
// clang-format on

constexpr int kMaxJsonDepth = 64;

// A parse error inside this file; the parse_* entry points turn it into an ApiError.
struct ParseFailure {
  ApiError error;
};

[[noreturn]] void fail(const std::string& param, std::string message) {
  throw ParseFailure{api_error(400, std::move(message), param)};
}

[[noreturn]] void fail_type(const std::string& param, const char* expected, const json& value) {
  fail(param, absl::StrCat(param, ": expected ", expected, ", got ", value.type_name()));
}

[[noreturn]] void fail_unsupported(const std::string& param, const std::string& what) {
  fail(param, absl::StrCat(param, ": ", what, " is not supported by this server"));
}

// The field `name` of `object`, or nullptr when absent or null.
const json* field(const json& object, const char* name) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

// An integer in [lo, hi]. Integral floats (16.0) are accepted, as pydantic's lax mode does;
// integers past uint64 arrive as floats and are out of range.
int64_t read_integer(const json& v, const std::string& param, int64_t lo, int64_t hi) {
  auto out_of_range = [&](const std::string& shown) {
    fail(param, absl::StrCat(param, " must be an integer in [", lo, ", ", hi, "], got ", shown));
  };
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(hi)) out_of_range(absl::StrCat(u));
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i < lo || i > hi) out_of_range(absl::StrCat(i));
    return i;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::floor(d) != d) fail(param, absl::StrCat(param, ": expected an integer, got ", d));
    // ±2^63 bound the exactly convertible range.
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi) || std::fabs(d) >= 0x1p63) {
      out_of_range(absl::StrCat(d));
    }
    return static_cast<int64_t>(d);
  }
  fail_type(param, "an integer", v);
}

int read_int32(const json& v, const std::string& param, int64_t lo = INT32_MIN,
               int64_t hi = INT32_MAX) {
  return static_cast<int>(read_integer(v, param, lo, hi));
}

// A float field: values past float's range become ±infinity, which validate() refuses.
float read_float(const json& v, const std::string& param) {
  if (!v.is_number()) fail_type(param, "a number", v);
  const double d = v.get<double>();
  if (d > std::numeric_limits<float>::max()) return std::numeric_limits<float>::infinity();
  if (d < -std::numeric_limits<float>::max()) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(d);
}

bool read_bool(const json& v, const std::string& param) {
  if (!v.is_boolean()) fail_type(param, "a boolean", v);
  return v.get<bool>();
}

std::string read_string(const json& v, const std::string& param) {
  if (!v.is_string()) fail_type(param, "a string", v);
  return v.get<std::string>();
}

// `seed`: OpenAI's is an int64 and our engine's a uint64, so both ranges are accepted; a
// negative seed is used as its two's-complement bits.
uint64_t read_seed(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) return static_cast<uint64_t>(v.get<int64_t>());
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::floor(d) != d) fail("seed", absl::StrCat("seed: expected an integer, got ", d));
    if (d >= -0x1p63 && d < 0x1p64) {
      return d < 0 ? static_cast<uint64_t>(static_cast<int64_t>(d)) : static_cast<uint64_t>(d);
    }
    fail("seed",
         absl::StrCat("seed must be an integer in [", INT64_MIN, ", ", UINT64_MAX, "], got ", d));
  }
  fail_type("seed", "an integer", v);
}

std::vector<std::string> read_stop(const json& v) {
  if (v.is_string()) return {v.get<std::string>()};
  if (!v.is_array()) fail_type("stop", "a string or an array of strings", v);
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    out.push_back(read_string(v[i], absl::StrCat("stop[", i, "]")));
  }
  return out;
}

std::map<int32_t, float> read_logit_bias(const json& v) {
  if (!v.is_object()) fail_type("logit_bias", "an object", v);
  std::map<int32_t, float> out;
  for (const auto& [key, value] : v.items()) {
    int64_t id = 0;
    const char* end = key.data() + key.size();
    const auto [ptr, ec] = std::from_chars(key.data(), end, id);
    if (key.empty() || ec != std::errc() || ptr != end) {
      fail("logit_bias", absl::StrCat("logit_bias: key '", key, "' is not a token id"));
    }
    if (id < INT32_MIN || id > INT32_MAX) {
      fail("logit_bias", absl::StrCat("logit_bias token id ", id, " is out of vocabulary"));
    }
    out[static_cast<int32_t>(id)] = read_float(value, absl::StrCat("logit_bias[", key, "]"));
  }
  return out;
}

std::vector<int32_t> read_token_ids(const json& v, const std::string& param) {
  if (!v.is_array()) fail_type(param, "an array of integers", v);
  std::vector<int32_t> out;
  for (size_t i = 0; i < v.size(); ++i) {
    out.push_back(read_int32(v[i], absl::StrCat(param, "[", i, "]")));
  }
  return out;
}

// Token ids of a prompt; the range is PromptBuilder::from_ids's to check.
std::vector<int64_t> read_prompt_ids(const json& v, const std::string& param) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < v.size(); ++i) {
    out.push_back(read_integer(v[i], absl::StrCat(param, "[", i, "]"), INT64_MIN, INT64_MAX));
  }
  return out;
}

// The fields /v1/completions and /v1/chat/completions share (not max_tokens, not logprobs).
void read_generation_options(const json& body, GenerationOptions* o) {
  SamplingParams& s = o->sampling;
  s.temperature = 1.0f;
  if (const json* v = field(body, "temperature")) s.temperature = read_float(*v, "temperature");
  if (const json* v = field(body, "top_p")) s.top_p = read_float(*v, "top_p");
  if (const json* v = field(body, "top_k")) s.top_k = read_int32(*v, "top_k");
  if (const json* v = field(body, "min_p")) s.min_p = read_float(*v, "min_p");
  if (const json* v = field(body, "n")) s.n = read_int32(*v, "n");
  if (const json* v = field(body, "seed")) s.seed = read_seed(*v);
  if (const json* v = field(body, "presence_penalty")) {
    s.presence_penalty = read_float(*v, "presence_penalty");
  }
  if (const json* v = field(body, "frequency_penalty")) {
    s.frequency_penalty = read_float(*v, "frequency_penalty");
  }
  if (const json* v = field(body, "repetition_penalty")) {
    s.repetition_penalty = read_float(*v, "repetition_penalty");
  }
  if (const json* v = field(body, "logit_bias")) s.logit_bias = read_logit_bias(*v);
  if (const json* v = field(body, "stop")) s.stop = read_stop(*v);
  if (const json* v = field(body, "stop_token_ids")) {
    s.stop_token_ids = read_token_ids(*v, "stop_token_ids");
  }
  if (const json* v = field(body, "min_tokens")) s.min_tokens = read_int32(*v, "min_tokens");
  if (const json* v = field(body, "ignore_eos")) s.ignore_eos = read_bool(*v, "ignore_eos");

  if (const json* v = field(body, "priority")) o->priority = read_int32(*v, "priority");
  if (const json* v = field(body, "cache_salt")) o->cache_salt = read_string(*v, "cache_salt");
  if (const json* v = field(body, "skip_special_tokens")) {
    o->skip_special_tokens = read_bool(*v, "skip_special_tokens");
  }
  if (const json* v = field(body, "include_stop_str_in_output")) {
    o->include_stop_str_in_output = read_bool(*v, "include_stop_str_in_output");
  }
  if (const json* v = field(body, "stream")) o->stream = read_bool(*v, "stream");
  if (const json* v = field(body, "stream_options")) {
    if (!v->is_object()) fail_type("stream_options", "an object", *v);
    if (!o->stream) {
      fail("stream_options", "stream_options: only allowed when stream is true");
    }
    if (const json* u = field(*v, "include_usage")) {
      o->include_usage = read_bool(*u, "stream_options.include_usage");
    }
  }
}

std::string read_model(const json& body) {
  const json* v = field(body, "model");
  if (v == nullptr) fail("model", "model: required");
  return read_string(*v, "model");
}

int read_max_tokens(const json& v, const std::string& param) {
  return read_int32(v, param, 1, INT32_MAX);
}

std::vector<PromptInput> read_prompts(const json& v) {
  auto text_prompt = [](const json& s, const std::string& param) {
    std::string text = s.get<std::string>();
    if (text.empty()) fail(param, absl::StrCat(param, ": must not be empty"));
    return PromptInput{.text = std::move(text), .ids = {}};
  };
  auto ids_prompt = [](const json& a, const std::string& param) {
    if (a.empty()) fail(param, absl::StrCat(param, ": must not be empty"));
    return PromptInput{.text = std::nullopt, .ids = read_prompt_ids(a, param)};
  };
  if (v.is_string()) return {text_prompt(v, "prompt")};
  if (!v.is_array()) {
    fail_type("prompt", "a string, an array of strings or an array of token ids", v);
  }
  if (v.empty()) fail("prompt", "prompt: must not be empty");
  // The first element decides: strings, token ids, or arrays of token ids.
  std::vector<PromptInput> out;
  if (v[0].is_number()) return {ids_prompt(v, "prompt")};
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string param = absl::StrCat("prompt[", i, "]");
    if (v[0].is_string()) {
      if (!v[i].is_string()) fail_type(param, "a string", v[i]);
      out.push_back(text_prompt(v[i], param));
    } else if (v[0].is_array()) {
      if (!v[i].is_array()) fail_type(param, "an array of token ids", v[i]);
      out.push_back(ids_prompt(v[i], param));
    } else {
      fail_type(param, "a string, a token id or an array of token ids", v[i]);
    }
  }
  return out;
}

// A message's content: a string, or an array of {"type": "text", "text": …} parts joined
// with "\n" (as vLLM does). Null is "" (an assistant message that only called tools).
std::string read_content(const json& v, const std::string& param) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) fail_type(param, "a string or an array of content parts", v);
  std::vector<std::string> texts;
  for (size_t j = 0; j < v.size(); ++j) {
    const std::string part = absl::StrCat(param, "[", j, "]");
    if (!v[j].is_object()) fail_type(part, "an object", v[j]);
    const json* type = field(v[j], "type");
    if (type == nullptr) fail(part + ".type", absl::StrCat(part, ".type: required"));
    const std::string t = read_string(*type, part + ".type");
    if (t != "text") {
      fail(part + ".type",
           absl::StrCat(part, ".type: '", t, "' is not supported (only 'text' content parts are)"));
    }
    const json* text = field(v[j], "text");
    if (text == nullptr) fail(part + ".text", absl::StrCat(part, ".text: required"));
    texts.push_back(read_string(*text, part + ".text"));
  }
  return absl::StrJoin(texts, "\n");
}

std::vector<ChatMessage> read_messages(const json& v) {
  if (!v.is_array()) fail_type("messages", "an array", v);
  if (v.empty()) fail("messages", "messages: must not be empty");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string param = absl::StrCat("messages[", i, "]");
    const json& m = v[i];
    if (!m.is_object()) fail_type(param, "an object", m);
    ChatMessage msg;
    const json* role = field(m, "role");
    if (role == nullptr) fail(param + ".role", absl::StrCat(param, ".role: required"));
    msg.role = read_string(*role, param + ".role");
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" &&
        msg.role != "tool" && msg.role != "developer") {
      fail(param + ".role",
           absl::StrCat(param, ".role: unknown role '", msg.role,
                        "' (expected system, user, assistant, tool or developer)"));
    }
    const auto content = m.find("content");
    if (content != m.end()) msg.content = read_content(*content, param + ".content");
    if (const json* name = field(m, "name")) read_string(*name, param + ".name");
    if (const json* r = field(m, "reasoning_content")) {
      msg.reasoning_content = read_string(*r, param + ".reasoning_content");
    }
    if (const json* calls = field(m, "tool_calls")) {
      if (!calls->is_array()) fail_type(param + ".tool_calls", "an array", *calls);
      if (!calls->empty()) fail_unsupported(param + ".tool_calls", "tool calling");
    }
    out.push_back(std::move(msg));
  }
  return out;
}

// Runs `parse`, turning a ParseFailure into the returned error.
template <typename Fn>
std::optional<ApiError> catching(const json& body, Fn&& parse) {
  if (!body.is_object()) {
    return api_error(400,
                     absl::StrCat("request body must be a JSON object, got ", body.type_name()));
  }
  try {
    parse();
  } catch (const ParseFailure& f) {
    return f.error;
  }
  return std::nullopt;
}

// Depth of brackets outside strings, stopping at the first level past `limit`: nlohmann's
// parser is iterative, but destroying and copying very deep values recurses.
bool nested_too_deep(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

const char* status_type(int http_status) {
  switch (http_status) {
    case 401: return "authentication_error";
    case 429: return "rate_limit_error";
    default: return http_status >= 500 ? "server_error" : "invalid_request_error";
  }
}

const char* status_code(int http_status) {
  switch (http_status) {
    case 429: return "rate_limit_exceeded";
    case 500: return "internal_error";
    case 503: return "service_unavailable";
    case 504: return "timeout";
    default: return "";
  }
}

json nullable(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

}  // namespace

// ---- errors ----

ApiError api_error(int http_status, std::string message, std::string param, std::string code) {
  if (code.empty()) code = status_code(http_status);
  return ApiError{.http_status = http_status,
                  .message = std::move(message),
                  .type = status_type(http_status),
                  .param = std::move(param),
                  .code = std::move(code)};
}

json error_body(const ApiError& e) {
  return {{"error",
           {{"message", e.message},
            {"type", e.type},
            {"param", nullable(e.param)},
            {"code", nullable(e.code)}}}};
}

ApiError from_status(const Status& status, std::string param) {
  int http = 500;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange: http = 400; break;
    case absl::StatusCode::kNotFound: http = 404; break;
    case absl::StatusCode::kResourceExhausted: http = 429; break;
    case absl::StatusCode::kUnavailable: http = 503; break;
    case absl::StatusCode::kDeadlineExceeded: http = 504; break;
    case absl::StatusCode::kUnauthenticated: http = 401; break;
    default: break;
  }
  std::string message(status.message());
  if (param.empty()) param = param_of_message(message);
  if (message.empty()) message = absl::StatusCodeToString(status.code());
  return api_error(http, std::move(message), std::move(param));
}

std::string param_of_message(std::string_view message) {
  size_t end = 0;
  while (end < message.size()) {
    const char c = message[end];
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '[' ||
          c == ']')) {
      break;
    }
    ++end;
  }
  const std::string_view path = message.substr(0, end);
  const std::string_view top = path.substr(0, path.find_first_of(".["));
  for (std::string_view known : kKnownFields) {
    if (top == known) return std::string(path);
  }
  return "";
}

// ---- requests ----

std::optional<ApiError> parse_json_object(std::string_view body, json* out) {
  if (nested_too_deep(body, kMaxJsonDepth)) {
    return api_error(400, absl::StrCat("invalid JSON: nested deeper than ", kMaxJsonDepth));
  }
  try {
    *out = json::parse(body);
  } catch (const json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 3: …".
    std::string_view what = e.what();
    if (what.starts_with("[json.exception.") && what.find("] ") != std::string_view::npos) {
      what.remove_prefix(what.find("] ") + 2);
    }
    return api_error(400, absl::StrCat("invalid JSON: ", std::string(what)));
  }
  if (!out->is_object()) {
    return api_error(400,
                     absl::StrCat("request body must be a JSON object, got ", out->type_name()));
  }
  return std::nullopt;
}

std::optional<ApiError> parse_completion_request(const json& body, CompletionRequest* out) {
  return catching(body, [&] {
    *out = CompletionRequest{};
    out->model = read_model(body);
    const json* prompt = field(body, "prompt");
    if (prompt == nullptr) fail("prompt", "prompt: required");
    out->prompts = read_prompts(*prompt);
    read_generation_options(body, &out->options);
    SamplingParams& s = out->options.sampling;
    if (const json* v = field(body, "max_tokens")) s.max_tokens = read_max_tokens(*v, "max_tokens");
    // Legacy logprobs: how many alternatives per token (vLLM allows up to 20).
    if (const json* v = field(body, "logprobs")) {
      if (v->is_boolean()) fail_type("logprobs", "an integer", *v);
      s.logprobs = true;
      s.top_logprobs = read_int32(*v, "logprobs", 0, kMaxTopLogprobs);
    }
    if (const json* v = field(body, "echo"); v != nullptr && read_bool(*v, "echo")) {
      fail_unsupported("echo", "echo");
    }
    if (const json* v = field(body, "suffix")) {
      if (!read_string(*v, "suffix").empty()) fail_unsupported("suffix", "suffix");
    }
    if (const json* v = field(body, "best_of")) {
      if (read_int32(*v, "best_of") != s.n) fail_unsupported("best_of", "best_of other than n");
    }
    if (const json* v = field(body, "add_special_tokens")) {
      out->add_special_tokens = read_bool(*v, "add_special_tokens");
    }
  });
}

std::optional<ApiError> parse_chat_request(const json& body, ChatRequest* out) {
  return catching(body, [&] {
    *out = ChatRequest{};
    out->model = read_model(body);
    const json* messages = field(body, "messages");
    if (messages == nullptr) fail("messages", "messages: required");
    out->messages = read_messages(*messages);
    read_generation_options(body, &out->options);
    SamplingParams& s = out->options.sampling;
    if (const json* v = field(body, "max_completion_tokens")) {
      out->max_tokens = read_max_tokens(*v, "max_completion_tokens");
      out->max_tokens_param = "max_completion_tokens";
    } else if (const json* v = field(body, "max_tokens")) {
      out->max_tokens = read_max_tokens(*v, "max_tokens");
    }
    if (out->max_tokens.has_value()) s.max_tokens = *out->max_tokens;
    if (const json* v = field(body, "logprobs")) s.logprobs = read_bool(*v, "logprobs");
    if (const json* v = field(body, "top_logprobs")) {
      s.top_logprobs = read_int32(*v, "top_logprobs");
    }
    if (const json* v = field(body, "response_format")) {
      if (!v->is_object()) fail_type("response_format", "an object", *v);
      const json* type = field(*v, "type");
      if (type == nullptr) fail("response_format", "response_format.type: required");
      const std::string t = read_string(*type, "response_format.type");
      if (t != "text") fail_unsupported("response_format", absl::StrCat("type '", t, "'"));
    }
    for (const char* name : {"tools", "functions"}) {
      if (const json* v = field(body, name)) {
        if (!v->is_array()) fail_type(name, "an array", *v);
        if (!v->empty()) fail_unsupported(name, "tool calling");
      }
    }
    if (const json* v = field(body, "tool_choice")) {
      if (!(v->is_string() && (*v == "none" || *v == "auto"))) {
        fail_unsupported("tool_choice", "tool calling");
      }
    }
    if (const json* v = field(body, "add_generation_prompt")) {
      out->add_generation_prompt = read_bool(*v, "add_generation_prompt");
    }
  });
}

std::optional<ApiError> parse_tokenize_request(const json& body, TokenizeRequest* out) {
  return catching(body, [&] {
    *out = TokenizeRequest{};
    if (const json* v = field(body, "model")) out->model = read_string(*v, "model");
    if (const json* v = field(body, "prompt")) {
      out->prompt = read_string(*v, "prompt");
      out->add_special_tokens = true;
    } else if (const json* m = field(body, "messages")) {
      out->messages = read_messages(*m);
      out->add_special_tokens = false;
      if (const json* g = field(body, "add_generation_prompt")) {
        out->add_generation_prompt = read_bool(*g, "add_generation_prompt");
      }
    } else {
      fail("prompt", "prompt: required (or messages)");
    }
    if (const json* v = field(body, "add_special_tokens")) {
      out->add_special_tokens = read_bool(*v, "add_special_tokens");
    }
  });
}

std::optional<ApiError> parse_detokenize_request(const json& body, DetokenizeRequest* out) {
  return catching(body, [&] {
    *out = DetokenizeRequest{};
    if (const json* v = field(body, "model")) out->model = read_string(*v, "model");
    const json* tokens = field(body, "tokens");
    if (tokens == nullptr) fail("tokens", "tokens: required");
    if (!tokens->is_array()) fail_type("tokens", "an array of integers", *tokens);
    out->tokens = read_prompt_ids(*tokens, "tokens");
  });
}

}  // namespace moeserve
