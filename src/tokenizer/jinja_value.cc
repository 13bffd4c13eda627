#include "tokenizer/jinja_value.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "nlohmann/json.hpp"
#include "tokenizer/jinja_error.h"
#include "tokenizer/jinja_strings.h"

namespace moeserve::jinja {

Value::Value(ValueDict dict) : v_(std::make_shared<ValueDict>(std::move(dict))) {}

const void* Value::identity() const {
  if (is_list()) return &as_list();
  if (is_dict()) return &as_dict();
  if (is_callable()) return &as_callable();
  return nullptr;
}

const Value* ValueDict::find(std::string_view key) const {
  for (const Entry& e : entries_)
    if (e.first == key) return &e.second;
  return nullptr;
}

Value* ValueDict::find(std::string_view key) {
  for (Entry& e : entries_)
    if (e.first == key) return &e.second;
  return nullptr;
}

void ValueDict::set(std::string key, Value value) {
  if (Value* existing = find(key)) {
    *existing = std::move(value);
    return;
  }
  entries_.emplace_back(std::move(key), std::move(value));
}

const Value* CallArgs::keyword_arg(std::string_view name) const {
  for (const auto& [k, v] : keyword)
    if (k == name) return &v;
  return nullptr;
}

const Value* CallArgs::get(size_t index, std::string_view name) const {
  if (index < positional.size()) return &positional[index];
  return keyword_arg(name);
}

std::string_view type_name(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kUndefined: return "undefined";
    case ValueKind::kNone: return "none";
    case ValueKind::kBool: return "bool";
    case ValueKind::kInt: return "int";
    case ValueKind::kFloat: return "float";
    case ValueKind::kString: return "string";
    case ValueKind::kList: return "list";
    case ValueKind::kDict: return v.as_dict().is_namespace ? "namespace" : "dict";
    case ValueKind::kCallable: return "function";
  }
  return "?";
}

bool truthy(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kUndefined:
    case ValueKind::kNone: return false;
    case ValueKind::kBool: return v.as_bool();
    case ValueKind::kInt: return v.as_int() != 0;
    case ValueKind::kFloat: return v.as_float() != 0.0;
    case ValueKind::kString: return !v.as_string().empty();
    case ValueKind::kList: return !v.as_list().empty();
    case ValueKind::kDict: return v.as_dict().is_namespace || !v.as_dict().empty();
    case ValueKind::kCallable: return true;
  }
  return false;
}

std::string format_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0.0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string_view sci(buf, res.ptr - buf);  // shortest round-trip, e.g. -1.25e-07
  std::string out;
  if (sci.front() == '-') {
    out += '-';
    sci.remove_prefix(1);
  }
  const size_t e_pos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_pos))
    if (c != '.') digits += c;
  const int exp = std::atoi(std::string(sci.substr(e_pos + 1)).c_str());
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      const size_t n_int = static_cast<size_t>(exp) + 1;
      if (digits.size() <= n_int) {
        out += digits + std::string(n_int - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, n_int) + "." + digits.substr(n_int);
      }
    } else {
      out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exp_buf[16];
  std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  out += exp_buf;
  return out;
}

namespace {

void check_depth(int depth) {
  if (depth > kMaxValueDepth) fail("value nested too deeply (or refers to itself)");
}

void check_size(const std::string& out, size_t max_bytes) {
  if (out.size() > max_bytes) fail_size_limit(max_bytes);
}

void append_repr(std::string& out, const Value& v, bool nested, int depth, size_t max_bytes) {
  check_depth(depth);
  check_size(out, max_bytes);
  switch (v.kind()) {
    case ValueKind::kUndefined: break;
    case ValueKind::kNone: out += "None"; break;
    case ValueKind::kBool: out += v.as_bool() ? "True" : "False"; break;
    case ValueKind::kInt: out += std::to_string(v.as_int()); break;
    case ValueKind::kFloat: out += format_float(v.as_float()); break;
    case ValueKind::kString: out += nested ? py_repr_string(v.as_string()) : v.as_string(); break;
    case ValueKind::kList: {
      out += '[';
      bool first = true;
      for (const Value& item : v.as_list()) {
        if (!first) out += ", ";
        first = false;
        append_repr(out, item, true, depth + 1, max_bytes);
      }
      out += ']';
      break;
    }
    case ValueKind::kDict: {
      const ValueDict& d = v.as_dict();
      out += d.is_namespace ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [key, item] : d.entries()) {
        if (!first) out += ", ";
        first = false;
        out += py_repr_string(key);
        out += ": ";
        append_repr(out, item, true, depth + 1, max_bytes);
      }
      out += d.is_namespace ? "}>" : "}";
      break;
    }
    case ValueKind::kCallable: out += "<function " + v.as_callable().name + ">"; break;
  }
}

void append_json(std::string& out, const Value& v, int indent, int depth, size_t max_bytes) {
  check_depth(depth);
  check_size(out, max_bytes);
  const auto newline = [&](int level) {
    out += '\n';
    out.append(static_cast<size_t>(indent) * static_cast<size_t>(level), ' ');
  };
  switch (v.kind()) {
    case ValueKind::kUndefined:
    case ValueKind::kNone: out += "null"; break;
    case ValueKind::kBool: out += v.as_bool() ? "true" : "false"; break;
    case ValueKind::kInt: out += std::to_string(v.as_int()); break;
    case ValueKind::kFloat: {
      const double d = v.as_float();
      if (std::isnan(d))
        out += "NaN";
      else if (std::isinf(d))
        out += d < 0 ? "-Infinity" : "Infinity";
      else
        out += format_float(d);
      break;
    }
    case ValueKind::kString: append_json_string(out, v.as_string()); break;
    case ValueKind::kList: {
      const ValueList& list = v.as_list();
      if (list.empty()) {
        out += "[]";
        break;
      }
      out += '[';
      for (size_t i = 0; i < list.size(); ++i) {
        if (i > 0) out += indent >= 0 ? "," : ", ";
        if (indent >= 0) newline(depth + 1);
        append_json(out, list[i], indent, depth + 1, max_bytes);
      }
      if (indent >= 0) newline(depth);
      out += ']';
      break;
    }
    case ValueKind::kDict: {
      const ValueDict& dict = v.as_dict();
      if (dict.empty()) {
        out += "{}";
        break;
      }
      out += '{';
      bool first = true;
      for (const auto& [key, item] : dict.entries()) {
        if (!first) out += indent >= 0 ? "," : ", ";
        first = false;
        if (indent >= 0) newline(depth + 1);
        append_json_string(out, key);
        out += ": ";
        append_json(out, item, indent, depth + 1, max_bytes);
      }
      if (indent >= 0) newline(depth);
      out += '}';
      break;
    }
    case ValueKind::kCallable: fail("cannot convert a function to JSON");
  }
}

bool equals_at(const Value& a, const Value& b, int depth) {
  check_depth(depth);
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int()) return a.as_int() == b.as_int();
    return a.as_number() == b.as_number();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case ValueKind::kUndefined:
    case ValueKind::kNone: return true;
    case ValueKind::kBool: return a.as_bool() == b.as_bool();
    case ValueKind::kString: return a.as_string() == b.as_string();
    case ValueKind::kList: {
      const ValueList& x = a.as_list();
      const ValueList& y = b.as_list();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equals_at(x[i], y[i], depth + 1)) return false;
      return true;
    }
    case ValueKind::kDict: {
      const ValueDict& x = a.as_dict();
      const ValueDict& y = b.as_dict();
      if (x.size() != y.size()) return false;
      for (const auto& [key, item] : x.entries()) {
        const Value* other = y.find(key);
        if (other == nullptr || !equals_at(item, *other, depth + 1)) return false;
      }
      return true;
    }
    case ValueKind::kCallable: return a.identity() == b.identity();
    default: return false;
  }
}

template <typename Json>
Value from_json_at(const Json& j, int depth) {
  check_depth(depth);
  switch (j.type()) {
    case nlohmann::detail::value_t::null: return Value::none();
    case nlohmann::detail::value_t::boolean: return Value(j.template get<bool>());
    case nlohmann::detail::value_t::number_integer: return Value(j.template get<int64_t>());
    case nlohmann::detail::value_t::number_unsigned: {
      const uint64_t u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<double>(u));
      return Value(static_cast<int64_t>(u));
    }
    case nlohmann::detail::value_t::number_float: return Value(j.template get<double>());
    case nlohmann::detail::value_t::string: return Value(j.template get_ref<const std::string&>());
    case nlohmann::detail::value_t::array: {
      ValueList list;
      list.reserve(j.size());
      for (const auto& item : j) list.push_back(from_json_at(item, depth + 1));
      return Value(std::move(list));
    }
    case nlohmann::detail::value_t::object: {
      ValueDict dict;
      for (const auto& [key, item] : j.items()) dict.set(key, from_json_at(item, depth + 1));
      return Value(std::move(dict));
    }
    default: return Value::none();  // binary / discarded: not produced by JSON parsing
  }
}

}  // namespace

void fail_size_limit(size_t max_bytes) {
  fail("output size limit exceeded (" + std::to_string(max_bytes) + " bytes)");
}

std::string to_str(const Value& v, size_t max_bytes) {
  if (v.is_string()) return v.as_string();
  std::string out;
  append_repr(out, v, false, 0, max_bytes);
  check_size(out, max_bytes);
  return out;
}

std::string repr(const Value& v, size_t max_bytes) {
  std::string out;
  append_repr(out, v, true, 0, max_bytes);
  check_size(out, max_bytes);
  return out;
}

std::string to_json(const Value& v, int indent, size_t max_bytes) {
  std::string out;
  append_json(out, v, indent, 0, max_bytes);
  check_size(out, max_bytes);
  return out;
}

bool equals(const Value& a, const Value& b) { return equals_at(a, b, 0); }

int compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int()) return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int();
    const double x = a.as_number(), y = b.as_number();
    return x < y ? -1 : x > y;
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : c > 0;
  }
  fail("cannot compare " + std::string(type_name(a)) + " with " + std::string(type_name(b)));
}

Value from_json(const nlohmann::json& j) { return from_json_at(j, 0); }
Value from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 0); }

}  // namespace moeserve::jinja
