// Typed, exception-free access to tokenizer.json fields. Every error names the
// field by its JSON path (e.g. "pre_tokenizer.pretokenizers[2].pattern").
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

#include "common/status.h"
#include <nlohmann/json.hpp>

namespace moeserve::tokenizer_json {

using Json = nlohmann::json;

// String concatenation over std::string_view and integers (this Abseil build's
// StrCat takes absl::string_view, which std::string_view does not convert to).
inline void str_append(std::string& out, std::string_view s) { out.append(s); }
inline void str_append(std::string& out, const char* s) { out.append(s); }
inline void str_append(std::string& out, const std::string& s) { out.append(s); }
template <typename T>
requires std::is_integral_v<T>
inline void str_append(std::string& out, T v) { out.append(std::to_string(v)); }
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::string out;
  (str_append(out, args), ...);
  return out;
}

inline std::string child(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : str_cat(path, ".", key);
}
inline std::string index(std::string_view path, size_t i) { return str_cat(path, "[", i, "]"); }

inline Status field_error(std::string_view path, std::string_view what) {
  return absl::InvalidArgumentError(str_cat("tokenizer.json: field '", path, "' ", what));
}

// Returns the member or nullptr when absent or null.
inline const Json* find(const Json& j, std::string_view key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

inline StatusOr<const Json*> require(const Json& j, std::string_view path, std::string_view key) {
  const Json* v = find(j, key);
  if (v == nullptr) return field_error(child(path, key), "is missing");
  return v;
}

inline StatusOr<std::string> get_string(const Json& j, std::string_view path,
                                        std::string_view key) {
  ASSIGN_OR_RETURN(const Json* v, require(j, path, key));
  if (!v->is_string()) return field_error(child(path, key), "must be a string");
  return v->get<std::string>();
}

inline StatusOr<std::string> get_string_or(const Json& j, std::string_view path,
                                           std::string_view key, std::string fallback) {
  if (find(j, key) == nullptr) return fallback;
  return get_string(j, path, key);
}

inline StatusOr<bool> get_bool_or(const Json& j, std::string_view path, std::string_view key,
                                  bool fallback) {
  const Json* v = find(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) return field_error(child(path, key), "must be a boolean");
  return v->get<bool>();
}

inline StatusOr<int64_t> get_int_or(const Json& j, std::string_view path, std::string_view key,
                                    int64_t fallback) {
  const Json* v = find(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_number_integer()) return field_error(child(path, key), "must be an integer");
  return v->get<int64_t>();
}

inline StatusOr<const Json*> get_array(const Json& j, std::string_view path, std::string_view key) {
  ASSIGN_OR_RETURN(const Json* v, require(j, path, key));
  if (!v->is_array()) return field_error(child(path, key), "must be an array");
  return v;
}

// A `{"String": s}` or `{"Regex": r}` pattern object.
struct Pattern {
  std::string text;
  bool is_regex = false;
};
inline StatusOr<Pattern> get_pattern(const Json& j, std::string_view path, std::string_view key) {
  ASSIGN_OR_RETURN(const Json* v, require(j, path, key));
  std::string p = child(path, key);
  if (const Json* s = find(*v, "String"); s != nullptr && s->is_string())
    return Pattern{s->get<std::string>(), false};
  if (const Json* r = find(*v, "Regex"); r != nullptr && r->is_string())
    return Pattern{r->get<std::string>(), true};
  return field_error(p, "must be {\"String\": …} or {\"Regex\": …}");
}

}  // namespace moeserve::tokenizer_json
