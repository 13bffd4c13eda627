// Runtime values of the Jinja interpreter: none, bool, int, float, string,
// list, dict (insertion-ordered), callable, plus `undefined`. Lists and dicts
// have reference semantics like Python's (a namespace is a dict flagged as
// such), so `ns.attr = ...` and `list.append(x)` mutate shared state.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "nlohmann/json_fwd.hpp"

namespace moeserve::jinja {

class Value;
class ValueDict;
struct Callable;
using ValueList = std::vector<Value>;

enum class ValueKind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kCallable };

class Value {
 public:
  Value() = default;  // undefined
  Value(bool b) : v_(b) {}
  Value(int i) : v_(static_cast<int64_t>(i)) {}
  Value(int64_t i) : v_(i) {}
  Value(double d) : v_(d) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(ValueList list) : v_(std::make_shared<ValueList>(std::move(list))) {}
  Value(ValueDict dict);
  Value(std::shared_ptr<const Callable> fn) : v_(std::move(fn)) {}

  static Value none() {
    Value v;
    v.v_ = nullptr;
    return v;
  }

  ValueKind kind() const { return static_cast<ValueKind>(v_.index()); }
  bool is_undefined() const { return kind() == ValueKind::kUndefined; }
  bool is_none() const { return kind() == ValueKind::kNone; }
  bool is_bool() const { return kind() == ValueKind::kBool; }
  bool is_int() const { return kind() == ValueKind::kInt; }
  bool is_float() const { return kind() == ValueKind::kFloat; }
  bool is_number() const { return is_int() || is_float(); }
  bool is_string() const { return kind() == ValueKind::kString; }
  bool is_list() const { return kind() == ValueKind::kList; }
  bool is_dict() const { return kind() == ValueKind::kDict; }
  bool is_callable() const { return kind() == ValueKind::kCallable; }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  // Int or float as double.
  double as_number() const { return is_int() ? static_cast<double>(as_int()) : as_float(); }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  // Lists and dicts are shared: the reference stays valid while any copy lives.
  ValueList& as_list() const { return *std::get<std::shared_ptr<ValueList>>(v_); }
  ValueDict& as_dict() const { return *std::get<std::shared_ptr<ValueDict>>(v_); }
  const Callable& as_callable() const { return *std::get<std::shared_ptr<const Callable>>(v_); }
  // Identity of a shared list/dict (for `sameas`).
  const void* identity() const;

 private:
  std::variant<std::monostate, std::nullptr_t, bool, int64_t, double, std::string,
               std::shared_ptr<ValueList>, std::shared_ptr<ValueDict>,
               std::shared_ptr<const Callable>>
      v_;
};

// Insertion-ordered string-keyed map. Dicts in chat templates are small, so a
// linear scan beats hashing.
class ValueDict {
 public:
  using Entry = std::pair<std::string, Value>;

  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  // Replaces an existing key in place (keeping its position) or appends.
  void set(std::string key, Value value);
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  const std::vector<Entry>& entries() const { return entries_; }

  bool is_namespace = false;

 private:
  std::vector<Entry> entries_;
};

// Arguments of a call: positional then keyword, as written.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  const Value* keyword_arg(std::string_view name) const;
  // Positional argument `index`, else keyword `name`, else nullptr.
  const Value* get(size_t index, std::string_view name) const;
};

struct Callable {
  std::string name;
  std::function<Value(const CallArgs&)> fn;
};

// Nesting deeper than this in values (input JSON, self-referencing lists) is
// an error rather than a stack overflow.
inline constexpr int kMaxValueDepth = 256;

std::string_view type_name(const Value& v);
bool truthy(const Value& v);
// Text longer than this (from to_str/repr/to_json/replace) is an error.
inline constexpr size_t kNoSizeLimit = static_cast<size_t>(-1);

// Python str(): what `{{ v }}` prints.
std::string to_str(const Value& v, size_t max_bytes = kNoSizeLimit);
// Python repr(): how strings look inside printed lists and dicts.
std::string repr(const Value& v, size_t max_bytes = kNoSizeLimit);
// Python float repr: 1.0, 0.1, 1e+16, 1.5e-07.
std::string format_float(double d);
// json.dumps(v, ensure_ascii=False, indent=indent) with Python separators;
// indent < 0 means none.
std::string to_json(const Value& v, int indent, size_t max_bytes = kNoSizeLimit);
// The error every size check raises.
[[noreturn]] void fail_size_limit(size_t max_bytes);
bool equals(const Value& a, const Value& b);
// -1/0/1 for numbers or strings; throws JinjaError for other types.
int compare(const Value& a, const Value& b);
// Converts template inputs; throws JinjaError when nested too deep. Use the
// ordered_json overload to keep object key order (tojson output depends on it).
Value from_json(const nlohmann::json& j);
Value from_json(const nlohmann::ordered_json& j);

}  // namespace moeserve::jinja
