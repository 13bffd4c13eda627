#include "server/serve_config.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

// ---- the table of settings -------------------------------------------------------------------
// One row per setting that both a config file and a flag can set: the config key is `key`, the
// flag is `--` + key with dashes. --config, --api-key and --help are flags only.

using FieldPtr = std::variant<std::string*, int*, int64_t*, size_t*, double*, bool*>;

struct Option {
  const char* key;
  const char* value_name;  // in the usage text; unused for booleans
  const char* help;
  const char* if_empty;  // what an empty string means (usage and describe); nullptr: not special
  FieldPtr (*field)(ServeConfig&);
};

#define MS_FIELD(member) [](ServeConfig& c) -> FieldPtr { return &c.member; }

const Option kOptions[] = {
    {"model", "DIR", "Hugging Face model directory (config.json + *.safetensors)",
     "the built-in tiny model", MS_FIELD(engine.model_dir)},
    {"tokenizer", "DIR", "directory of tokenizer.json and tokenizer_config.json",
     "the model directory", MS_FIELD(engine.tokenizer_dir)},
    {"served_model_name", "NAME", "model id of the API", "the model directory's name",
     MS_FIELD(engine.served_model_name)},
    {"backend", "NAME", "cpu, cuda or auto (CUDA when usable and able to run models)", nullptr,
     MS_FIELD(engine.backend)},
    {"threads", "N", "CPU backend threads; 0 = all cores", nullptr, MS_FIELD(engine.threads)},
    {"block_size", "N", "tokens per KV-cache block, in [1, 1024]", nullptr,
     MS_FIELD(engine.block_size)},
    {"kv_cache_blocks", "N", "KV-cache blocks; 0 = as many as --kv-cache-memory-mb holds", nullptr,
     MS_FIELD(engine.kv_cache_blocks)},
    {"kv_cache_memory_mb", "MB",
     "KV-cache MiB if --kv-cache-blocks is 0 (both 0: by max_model_len)", nullptr,
     MS_FIELD(engine.kv_cache_memory_mb)},
    {"kv_cache_dtype", "DTYPE", "bf16 (half the memory) or f32", nullptr,
     MS_FIELD(engine.kv_cache_dtype)},
    {"gpu_memory_fraction", "F", "share of GPU memory the CUDA backend reserves as its pool",
     nullptr, MS_FIELD(engine.gpu_memory_fraction)},
    {"activation_dtype", "DTYPE", "auto (f32 on the CPU, bf16 on CUDA), bf16 or f32", nullptr,
     MS_FIELD(engine.activation_dtype)},
    {"memory_limit_gb", "GB", "GiB the model, KV cache and activations must fit in",
     "cgroup limit, else RAM", MS_FIELD(engine.memory_limit_gb)},
    {"max_num_batched_tokens", "N", "tokens computed in one engine step (>= --max-num-seqs)",
     nullptr, MS_FIELD(engine.max_num_batched_tokens)},
    {"max_num_seqs", "N", "sequences in one engine step", nullptr, MS_FIELD(engine.max_num_seqs)},
    {"max_model_len", "N", "prompt + output tokens of one sequence; 0 = the model's limit", nullptr,
     MS_FIELD(engine.max_model_len)},
    {"max_n", "N", "largest n (choices per request), in [1, 1024]", nullptr,
     MS_FIELD(engine.max_n)},
    {"max_waiting_requests", "N", "queued requests beyond this are refused (429)", nullptr,
     MS_FIELD(engine.max_waiting_requests)},
    {"enable_chunked_prefill", nullptr, "split long prompts across engine steps", nullptr,
     MS_FIELD(engine.enable_chunked_prefill)},
    {"enable_prefix_caching", nullptr, "reuse the KV cache of shared prompt prefixes", nullptr,
     MS_FIELD(engine.enable_prefix_caching)},
    {"scheduling_policy", "NAME", "fcfs (by arrival) or priority (lower value first)", nullptr,
     MS_FIELD(engine.scheduling_policy)},
    {"enforce_eager", nullptr, "run every step eagerly: no CUDA graphs for decode steps", nullptr,
     MS_FIELD(engine.enforce_eager)},
    {"log_steps", nullptr, "one debug log line per engine step", nullptr,
     MS_FIELD(engine.log_steps)},
    {"host", "ADDR", "address the HTTP and gRPC servers listen on", nullptr, MS_FIELD(host)},
    {"port", "N", "HTTP port; 0 = any free port", nullptr, MS_FIELD(port)},
    {"grpc_port", "N", "gRPC port; -1 = no gRPC server, 0 = any free port", nullptr,
     MS_FIELD(grpc_port)},
    {"http_threads", "N", "I/O threads of the HTTP server", nullptr, MS_FIELD(http_threads)},
    {"api_key_file", "FILE", "file holding the API key (trailing newline ignored)", "none",
     MS_FIELD(api_key_file)},
    {"max_body_bytes", "N", "largest request body in bytes (larger: 413)", nullptr,
     MS_FIELD(max_body_bytes)},
    {"max_header_bytes", "N", "largest request header in bytes (larger: 431)", nullptr,
     MS_FIELD(max_header_bytes)},
    {"request_timeout_s", "S", "seconds a request may take, queueing included; 0 = no limit",
     nullptr, MS_FIELD(request_timeout_s)},
    {"shutdown_timeout_s", "S", "seconds to let running requests finish on SIGTERM/SIGINT", nullptr,
     MS_FIELD(shutdown_timeout_s)},
    {"cors_allow_origin", "ORIGIN", "Access-Control-Allow-Origin value, e.g. *", "no CORS headers",
     MS_FIELD(cors_allow_origin)},
    {"log_level", "LEVEL", "trace, debug, info, warn, error, critical or off", nullptr,
     MS_FIELD(log_level)},
    {"log_requests", nullptr, "one log line per finished request", nullptr, MS_FIELD(log_requests)},
};

#undef MS_FIELD

constexpr const char* kApiKeyEnv = "MOESERVE_API_KEY";

const Option* find_option(std::string_view key) {
  for (const Option& o : kOptions) {
    if (key == o.key) return &o;
  }
  return nullptr;
}

bool is_bool(const Option& o) {
  ServeConfig probe;
  return std::holds_alternative<bool*>(o.field(probe));
}

std::string flag_of(const Option& o) {
  std::string flag = absl::StrCat("--", o.key);
  for (char& c : flag) {
    if (c == '_') c = '-';
  }
  return flag;
}

// The value of a setting as text: numbers plainly, booleans as true/false, strings raw.
std::string value_text(FieldPtr field) {
  return std::visit(
      [](auto* p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return *p;
        } else if constexpr (std::is_same_v<T, bool>) {
          return *p ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          std::ostringstream os;
          os << *p;
          return os.str();
        } else {
          return absl::StrCat(*p);
        }
      },
      field);
}

std::string shown_value(const Option& o, ServeConfig& c) {
  std::string v = value_text(o.field(c));
  if (v.empty() && o.if_empty != nullptr) return absl::StrCat("(", o.if_empty, ")");
  return v;
}

// ---- values from text (flags) and from JSON (files) ------------------------------------------

// Sets `field` from flag text; the error names the flag.
Status set_from_text(FieldPtr field, const std::string& flag, const std::string& text) {
  return std::visit(
      [&](auto* p) -> Status {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::string>) {
          *p = text;
          return absl::OkStatus();
        } else if constexpr (std::is_same_v<T, bool>) {
          if (text == "true" || text == "1") {
            *p = true;
          } else if (text == "false" || text == "0") {
            *p = false;
          } else {
            return absl::InvalidArgumentError(
                absl::StrCat(flag, ": '", text, "' is not true or false"));
          }
          return absl::OkStatus();
        } else if constexpr (std::is_same_v<T, double>) {
          double v;
          if (!absl::SimpleAtod(text, &v) || !std::isfinite(v)) {
            return absl::InvalidArgumentError(
                absl::StrCat(flag, ": '", text, "' is not a finite number"));
          }
          *p = v;
          return absl::OkStatus();
        } else {
          // SimpleAtoi rejects overflow and, for unsigned types, a minus sign.
          std::conditional_t<std::is_same_v<T, size_t>, uint64_t, T> v;
          if (!absl::SimpleAtoi(text, &v)) {
            return absl::InvalidArgumentError(absl::StrCat(
                flag, ": '", text, "' is not ",
                std::is_unsigned_v<T> ? "a non-negative integer" : "an integer", " in range"));
          }
          *p = static_cast<T>(v);
          return absl::OkStatus();
        }
      },
      field);
}

// Sets `field` from a JSON value; the error names the file and the key.
Status set_from_json(FieldPtr field, const std::string& where, const nlohmann::json& j) {
  auto wrong = [&](const char* expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": expected ", expected, ", got ", j.type_name(), " ", j.dump()));
  };
  return std::visit(
      [&](auto* p) -> Status {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::string>) {
          if (!j.is_string()) return wrong("a string");
          *p = j.get<std::string>();
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!j.is_boolean()) return wrong("true or false");
          *p = j.get<bool>();
        } else if constexpr (std::is_same_v<T, double>) {
          if (!j.is_number()) return wrong("a number");
          *p = j.get<double>();
        } else if constexpr (std::is_same_v<T, size_t>) {
          if (!j.is_number_unsigned()) return wrong("a non-negative integer");
          *p = j.get<size_t>();
        } else {
          if (!j.is_number_integer()) return wrong("an integer");
          // Integers out of T's range: JSON reads them as int64 or uint64.
          if (j.is_number_unsigned() ? j.get<uint64_t>() > uint64_t{std::numeric_limits<T>::max()}
                                     : (j.get<int64_t>() < std::numeric_limits<T>::min() ||
                                        j.get<int64_t>() > std::numeric_limits<T>::max())) {
            return wrong("an integer in range");
          }
          *p = static_cast<T>(j.is_number_unsigned() ? static_cast<int64_t>(j.get<uint64_t>())
                                                     : j.get<int64_t>());
        }
        return absl::OkStatus();
      },
      field);
}

// 1-based line and column of the byte at 1-based offset `byte` (nlohmann's parse_error::byte).
std::pair<size_t, size_t> line_and_column(const std::string& text, size_t byte) {
  size_t line = 1;
  size_t column = 1;
  for (size_t i = 0; i + 1 < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

StatusOr<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the file"));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return ss.str();
}

bool has_control_char(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

bool has_space_or_control(const std::string& s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c == 0x7f) return true;
  }
  return false;
}

// Reads the API key from `path`: trailing whitespace (the newline) is dropped; the key itself
// is never echoed in errors.
StatusOr<std::string> read_api_key(const std::string& path) {
  auto text = read_file(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("api_key_file = \"", path, "\": cannot open the file"));
  }
  std::string key = std::move(*text);
  while (!key.empty() &&
         (key.back() == '\n' || key.back() == '\r' || key.back() == ' ' || key.back() == '\t')) {
    key.pop_back();
  }
  if (key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("api_key_file = \"", path, "\": the file holds no key"));
  }
  if (has_space_or_control(key)) {
    return absl::InvalidArgumentError(
        absl::StrCat("api_key_file = \"", path, "\": the key must be one line without spaces"));
  }
  return key;
}

Status bad(const char* key, int64_t value, const std::string& rule) {
  return absl::InvalidArgumentError(absl::StrCat(key, " = ", value, ": ", rule));
}
Status bad(const char* key, const std::string& value, const std::string& rule) {
  return absl::InvalidArgumentError(absl::StrCat(key, " = \"", value, "\": ", rule));
}
Status bad_seconds(const char* key, double value, const std::string& rule) {
  std::ostringstream os;
  os << key << " = " << value << ": " << rule;
  return absl::InvalidArgumentError(os.str());
}

// The payload that marks the --help status.
constexpr const char* kHelpPayload = "moeserve.serve.help";

}  // namespace

StatusOr<ServeConfig> load_serve_config(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, read_file(path));
  std::vector<std::string> duplicates;
  std::set<std::string> seen;
  // Reports duplicate top-level keys, which nlohmann would silently collapse to the last.
  nlohmann::json::parser_callback_t on_event = [&](int depth, nlohmann::json::parse_event_t event,
                                                   nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!seen.insert(parsed.get<std::string>()).second) {
        duplicates.push_back(parsed.get<std::string>());
      }
    }
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, on_event, /*allow_exceptions=*/true,
                              /*ignore_comments=*/true);
  } catch (const nlohmann::json::parse_error& e) {
    const auto [line, column] = line_and_column(text, e.byte);
    std::string what = e.what();
    // "[json.exception.parse_error.101] parse error at line 3, column 0: syntax error …": keep
    // what follows the position, which is ours (computed from the byte offset).
    if (const size_t at = what.find("parse error"); at != std::string::npos) {
      if (const size_t colon = what.find(": ", at); colon != std::string::npos) {
        what = what.substr(colon + 2);
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", line, ":", column, ": invalid JSON: ", what));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": expected a JSON object of settings, got ", j.type_name()));
  }
  if (!duplicates.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": \"", duplicates.front(), "\" is set twice"));
  }
  ServeConfig config;
  for (const auto& [key, value] : j.items()) {
    if (key == "api_key") {
      return absl::InvalidArgumentError(absl::StrCat(
          path,
          ": \"api_key\" is not read from config files (they get copied and logged); use "
          "\"api_key_file\", --api-key or $",
          kApiKeyEnv));
    }
    const Option* option = find_option(key);
    if (option == nullptr) {
      std::vector<std::string> known;
      for (const Option& o : kOptions) known.push_back(o.key);
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": unknown key \"", key, "\"; known keys: ", absl::StrJoin(known, ", ")));
    }
    RETURN_IF_ERROR(
        set_from_json(option->field(config), absl::StrCat(path, ": \"", key, "\""), value));
  }
  return config;
}

bool is_help_request(const Status& status) {
  return status.code() == absl::StatusCode::kCancelled &&
         status.GetPayload(kHelpPayload).has_value();
}

StatusOr<ServeConfig> parse_serve_args(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      Status help = absl::CancelledError("help requested");
      help.SetPayload(kHelpPayload, absl::Cord("1"));
      return help;
    }
  }

  // First pass: split flags from values, find --config and the API key flags.
  struct Setting {
    const Option* option;
    std::string flag;
    std::string value;
  };
  std::vector<Setting> settings;
  std::optional<std::string> config_path;
  std::optional<std::string> api_key;
  std::optional<std::string> api_key_file;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", arg, "' (options are --name VALUE)"));
    }
    std::string flag = arg;
    std::optional<std::string> inline_value;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      flag = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    std::string key = flag.substr(2);
    for (char& c : key) {
      if (c == '-') c = '_';
    }
    const Option* option = find_option(key);
    // Booleans: --name, --no-name or --name=true|false.
    if (option == nullptr && key.rfind("no_", 0) == 0 && !inline_value) {
      const Option* negated = find_option(key.substr(3));
      if (negated != nullptr && is_bool(*negated)) {
        settings.push_back({negated, flag, "false"});
        continue;
      }
    }
    if (option != nullptr && is_bool(*option)) {
      settings.push_back({option, flag, inline_value.value_or("true")});
      continue;
    }
    const bool known = option != nullptr || flag == "--config" || flag == "--api-key";
    if (!known) return absl::InvalidArgumentError(absl::StrCat("unknown option '", flag, "'"));
    std::string value;
    if (inline_value) {
      value = *inline_value;
    } else {
      // A following "--x" is the next flag, not this one's value (negative numbers still pass).
      if (i + 1 >= argc || std::string_view(argv[i + 1]).substr(0, 2) == "--") {
        return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
      }
      value = argv[++i];
    }
    if (flag == "--config") {
      if (config_path) return absl::InvalidArgumentError("--config given twice");
      config_path = value;
    } else if (flag == "--api-key") {
      if (value.empty()) return absl::InvalidArgumentError("--api-key: the key is empty");
      api_key = value;
    } else {
      if (option == find_option("api_key_file")) api_key_file = value;
      settings.push_back({option, flag, value});
    }
  }
  if (api_key && api_key_file) {
    return absl::InvalidArgumentError("give only one of --api-key and --api-key-file");
  }

  // The file, then the flags over it.
  ServeConfig config;
  if (config_path) {
    ASSIGN_OR_RETURN(config, load_serve_config(*config_path));
  }
  for (const Setting& s : settings) {
    RETURN_IF_ERROR(set_from_text(s.option->field(config), s.flag, s.value));
  }

  // The API key: --api-key, else the file (flag over config), else the environment.
  if (api_key) {
    config.api_key = *api_key;
    config.api_key_file.clear();  // the flag overrides a file named in the config
  } else if (!config.api_key_file.empty()) {
    ASSIGN_OR_RETURN(config.api_key, read_api_key(config.api_key_file));
  } else if (const char* env = std::getenv(kApiKeyEnv); env != nullptr && *env != '\0') {
    config.api_key = env;
  }

  // Everything but the model directory, which the caller may still fill in.
  ServeConfig check = config;
  if (check.engine.model_dir.empty()) check.engine.model_dir = "(default)";
  RETURN_IF_ERROR(validate_serve_config(check));
  return config;
}

Status validate_serve_config(const ServeConfig& c) {
  RETURN_IF_ERROR(c.engine.validate());
  if (c.host.empty()) return bad("host", c.host, "must be set (e.g. 127.0.0.1 or 0.0.0.0)");
  if (has_space_or_control(c.host)) return bad("host", c.host, "must be an address or host name");
  if (c.port < 0 || c.port > 65535) return bad("port", c.port, "must be in [0, 65535]");
  if (c.grpc_port < -1 || c.grpc_port > 65535) {
    return bad("grpc_port", c.grpc_port, "must be in [-1, 65535] (-1 = off)");
  }
  if (c.port > 0 && c.grpc_port == c.port) {
    return bad("grpc_port", c.grpc_port, "must differ from port");
  }
  if (c.http_threads < 1 || c.http_threads > 256) {
    return bad("http_threads", c.http_threads, "must be in [1, 256]");
  }
  if (has_space_or_control(c.api_key)) {
    return absl::InvalidArgumentError("api_key: must be one word without spaces");
  }
  if (has_control_char(c.api_key_file)) {
    return bad("api_key_file", c.api_key_file, "must not contain control characters");
  }
  constexpr size_t kKiB = 1024;
  if (c.max_body_bytes < kKiB || c.max_body_bytes > (kKiB << 20)) {
    return bad("max_body_bytes", static_cast<int64_t>(c.max_body_bytes),
               "must be in [1024, 1073741824] (1 KiB to 1 GiB)");
  }
  if (c.max_header_bytes < kKiB || c.max_header_bytes > (kKiB << 10)) {
    return bad("max_header_bytes", static_cast<int64_t>(c.max_header_bytes),
               "must be in [1024, 1048576] (1 KiB to 1 MiB)");
  }
  if (!(c.request_timeout_s >= 0) || !std::isfinite(c.request_timeout_s)) {
    return bad_seconds("request_timeout_s", c.request_timeout_s, "must be >= 0 (0 = no limit)");
  }
  if (!(c.shutdown_timeout_s >= 0) || !std::isfinite(c.shutdown_timeout_s)) {
    return bad_seconds("shutdown_timeout_s", c.shutdown_timeout_s, "must be >= 0");
  }
  // Sent back verbatim as a response header.
  if (has_space_or_control(c.cors_allow_origin)) {
    return bad("cors_allow_origin", c.cors_allow_origin,
               "must be * or an origin such as https://example.com");
  }
  static const std::set<std::string> kLevels = {"trace", "debug",    "info", "warn",
                                                "error", "critical", "off"};
  if (kLevels.count(c.log_level) == 0) {
    return bad("log_level", c.log_level,
               "must be trace, debug, info, warn, error, critical or off");
  }
  return absl::OkStatus();
}

const char* serve_usage() {
  static const std::string usage = [] {
    ServeConfig defaults;
    std::string text =
        "usage: moeserve serve [--config FILE] [--model DIR] [options]\n"
        "\n"
        "Serves a model over an OpenAI-compatible HTTP API and gRPC. Settings come from the\n"
        "JSON file of --config (keys as below without the dashes, in snake_case), then from\n"
        "flags, which win. Booleans: --name, --no-name or --name=true|false. Reference:\n"
        "docs/configuration.md.\n"
        "\n";
    // "  --flag VALUE   help (default: X)", the default on a line of its own past 100 columns.
    auto line = [&text](const std::string& left, const std::string& help,
                        const std::string& default_text) {
      constexpr size_t kColumn = 34;
      std::string l = absl::StrCat("  ", left);
      l.resize(std::max(l.size() + 1, kColumn), ' ');
      l += help;
      const std::string tail =
          default_text.empty() ? "" : absl::StrCat("(default: ", default_text, ")");
      if (!tail.empty() && l.size() + 1 + tail.size() > 100) {
        absl::StrAppend(&l, "\n", std::string(kColumn, ' '), tail);
      } else if (!tail.empty()) {
        absl::StrAppend(&l, " ", tail);
      }
      absl::StrAppend(&text, l, "\n");
    };
    line("--config FILE", "JSON config file, applied before the flags", "none");
    for (const Option& o : kOptions) {
      const std::string flag = flag_of(o);
      const std::string left = is_bool(o) ? absl::StrCat("--[no-]", flag.substr(2))
                                          : absl::StrCat(flag, " ", o.value_name);
      std::string default_text = value_text(o.field(defaults));
      if (default_text.empty() && o.if_empty != nullptr) default_text = o.if_empty;
      line(left, o.help, default_text);
      if (std::string_view(o.key) == "api_key_file") {
        line("--api-key KEY", "API key that clients must send as a Bearer token",
             absl::StrCat("that of --api-key-file, else $", kApiKeyEnv));
      }
    }
    line("--help, -h", "print this help", "");
    return text;
  }();
  return usage.c_str();
}

std::string describe(const ServeConfig& config) {
  ServeConfig c = config;  // the table's accessors take a mutable config
  std::string out;
  for (const Option& o : kOptions) {
    absl::StrAppend(&out, o.key, ": ", shown_value(o, c), "\n");
    if (std::string_view(o.key) == "api_key_file") {
      absl::StrAppend(&out, "api_key: ", c.api_key.empty() ? "(none)" : "(set)", "\n");
    }
  }
  return out;
}

}  // namespace moeserve
