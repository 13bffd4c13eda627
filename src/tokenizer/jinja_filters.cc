#include "tokenizer/jinja_filters.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <unordered_map>

#include "tokenizer/jinja_error.h"
#include "tokenizer/jinja_methods.h"
#include "tokenizer/jinja_strings.h"

namespace moeserve::jinja {
namespace {

using FilterFn = Value (*)(const Value&, const CallArgs&, Budget& budget);
using TestFn = bool (*)(const Value&, const CallArgs&);

const Value& required_arg(const CallArgs& args, size_t i, std::string_view name) {
  const Value* v = args.get(i, name);
  if (v == nullptr) fail("missing argument '" + std::string(name) + "'");
  return *v;
}

const Value* optional_arg(const CallArgs& args, size_t i, std::string_view name) {
  const Value* v = args.get(i, name);
  return (v == nullptr || v->is_none()) ? nullptr : v;
}

// `attribute` may be dotted ("function.name"); numeric parts index lists.
Value get_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(),
                                                      [](char c) { return c >= '0' && c <= '9'; });
    cur = numeric ? get_item(cur, Value(static_cast<int64_t>(std::atoll(part.c_str()))))
                  : get_item(cur, Value(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

// Remaining positional arguments after the first `skip`, as a CallArgs for a test.
CallArgs shift_args(const CallArgs& args, size_t skip) {
  CallArgs rest;
  for (size_t i = skip; i < args.positional.size(); ++i)
    rest.positional.push_back(args.positional[i]);
  return rest;
}

Value filter_trim(const Value& v, const CallArgs& args, Budget& budget) {
  std::optional<std::string> chars;
  if (const Value* c = optional_arg(args, 0, "chars")) chars = to_str(*c, budget.max_bytes);
  return Value(py_strip(to_str(v, budget.max_bytes), chars, true, true));
}

Value filter_tojson(const Value& v, const CallArgs& args, Budget& budget) {
  int indent = -1;
  if (const Value* i = optional_arg(args, 0, "indent")) {
    if (!i->is_int() || i->as_int() < 0 || i->as_int() > 64) fail("tojson: bad indent");
    indent = static_cast<int>(i->as_int());
  }
  return Value(to_json(v, indent, budget.max_bytes));
}

Value filter_length(const Value& v, const CallArgs&, Budget& budget) {
  switch (v.kind()) {
    case ValueKind::kUndefined: return Value(int64_t{0});
    case ValueKind::kString: return Value(code_point_length(v.as_string()));
    case ValueKind::kList: return Value(static_cast<int64_t>(v.as_list().size()));
    case ValueKind::kDict: return Value(static_cast<int64_t>(v.as_dict().size()));
    default: fail("object of type " + std::string(type_name(v)) + " has no length");
  }
}

Value filter_upper(const Value& v, const CallArgs&, Budget& budget) {
  return Value(ascii_upper(to_str(v, budget.max_bytes)));
}
Value filter_lower(const Value& v, const CallArgs&, Budget& budget) {
  return Value(ascii_lower(to_str(v, budget.max_bytes)));
}
Value filter_capitalize(const Value& v, const CallArgs&, Budget& budget) {
  return Value(py_capitalize(to_str(v, budget.max_bytes)));
}
Value filter_title(const Value& v, const CallArgs&, Budget& budget) {
  return Value(py_title(to_str(v, budget.max_bytes)));
}
Value filter_string(const Value& v, const CallArgs&, Budget& budget) {
  return Value(to_str(v, budget.max_bytes));
}
Value filter_safe(const Value& v, const CallArgs&, Budget& budget) { return v; }

Value filter_join(const Value& v, const CallArgs& args, Budget& budget) {
  const Value* sep = optional_arg(args, 0, "d");
  const Value* attribute = optional_arg(args, 1, "attribute");
  const std::string separator = sep ? to_str(*sep, budget.max_bytes) : "";
  std::string out;
  bool first = true;
  for (const Value& item : iterate(v)) {
    if (!first) out += separator;
    first = false;
    out += to_str(attribute ? get_path(item, to_str(*attribute, budget.max_bytes)) : item);
    budget.check_size(out.size());
  }
  return Value(std::move(out));
}

Value filter_replace(const Value& v, const CallArgs& args, Budget& budget) {
  const Value* count = optional_arg(args, 2, "count");
  if (count && !count->is_int()) fail("replace: count must be an integer");
  return Value(py_replace(to_str(v, budget.max_bytes),
                          to_str(required_arg(args, 0, "old"), budget.max_bytes),
                          to_str(required_arg(args, 1, "new"), budget.max_bytes),
                          count ? count->as_int() : -1, budget.max_bytes));
}

Value filter_default(const Value& v, const CallArgs& args, Budget& budget) {
  const Value* fallback = args.get(0, "default_value");
  const Value* boolean = args.get(1, "boolean");
  const bool use_fallback = (boolean && truthy(*boolean)) ? !truthy(v) : v.is_undefined();
  if (!use_fallback) return v;
  return fallback ? *fallback : Value(std::string());
}

Value filter_items(const Value& v, const CallArgs&, Budget& budget) {
  if (v.is_undefined()) return Value(ValueList{});
  if (!v.is_dict()) fail("items filter needs a mapping, got " + std::string(type_name(v)));
  Value out;
  call_method(v, "items", CallArgs{}, budget, &out);
  return out;
}

// select / reject / selectattr / rejectattr share this.
Value select_impl(const Value& v, const CallArgs& args, bool by_attr, bool keep,
                  const Budget& budget) {
  size_t next_arg = 0;
  std::string attribute;
  if (by_attr) attribute = to_str(required_arg(args, next_arg++, "attribute"), budget.max_bytes);
  const Value* test = args.positional.size() > next_arg ? &args.positional[next_arg] : nullptr;
  if (test && !test->is_string()) fail("test name must be a string");
  if (test && !is_known_test(test->as_string())) fail("unknown test '" + test->as_string() + "'");
  const CallArgs test_args = shift_args(args, next_arg + 1);
  ValueList out;
  for (const Value& item : iterate(v)) {
    const Value subject = by_attr ? get_path(item, attribute) : item;
    const bool passes = test ? apply_test(test->as_string(), subject, test_args) : truthy(subject);
    if (passes == keep) out.push_back(item);
  }
  return Value(std::move(out));
}

Value filter_select(const Value& v, const CallArgs& a, Budget& budget) {
  return select_impl(v, a, false, true, budget);
}
Value filter_reject(const Value& v, const CallArgs& a, Budget& budget) {
  return select_impl(v, a, false, false, budget);
}
Value filter_selectattr(const Value& v, const CallArgs& a, Budget& budget) {
  return select_impl(v, a, true, true, budget);
}
Value filter_rejectattr(const Value& v, const CallArgs& a, Budget& budget) {
  return select_impl(v, a, true, false, budget);
}

Value filter_map(const Value& v, const CallArgs& args, Budget& budget) {
  ValueList out;
  if (const Value* attribute = args.keyword_arg("attribute")) {
    const Value* fallback = args.keyword_arg("default");
    for (const Value& item : iterate(v)) {
      Value x = get_path(item, to_str(*attribute, budget.max_bytes));
      out.push_back(x.is_undefined() && fallback ? *fallback : x);
    }
    return Value(std::move(out));
  }
  if (args.positional.empty() || !args.positional[0].is_string()) {
    fail("map needs a filter name or attribute=");
  }
  const std::string& filter = args.positional[0].as_string();
  if (!is_known_filter(filter)) fail("unknown filter '" + filter + "'");
  const CallArgs rest = shift_args(args, 1);
  for (const Value& item : iterate(v)) out.push_back(apply_filter(filter, item, rest, budget));
  return Value(std::move(out));
}

Value filter_first(const Value& v, const CallArgs&, Budget& budget) {
  ValueList items = iterate(v);
  return items.empty() ? Value() : items.front();
}

Value filter_last(const Value& v, const CallArgs&, Budget& budget) {
  ValueList items = iterate(v);
  return items.empty() ? Value() : items.back();
}

Value filter_int(const Value& v, const CallArgs& args, Budget& budget) {
  const Value* fallback = args.get(0, "default");
  const Value def = fallback ? *fallback : Value(int64_t{0});
  if (v.is_int()) return v;
  if (v.is_bool()) return Value(static_cast<int64_t>(v.as_bool()));
  if (v.is_float()) {
    const double d = v.as_float();
    if (!std::isfinite(d) || std::fabs(d) > 9.2e18) return def;
    return Value(static_cast<int64_t>(d));
  }
  if (v.is_string()) {
    const std::string s = py_strip(v.as_string(), std::nullopt, true, true);
    if (s.empty()) return def;
    char* end = nullptr;
    errno = 0;
    const long long i = std::strtoll(s.c_str(), &end, 10);
    if (*end == '\0' && errno == 0) return Value(static_cast<int64_t>(i));
    const double d = std::strtod(s.c_str(), &end);
    if (*end == '\0' && std::isfinite(d) && std::fabs(d) < 9.2e18) {
      return Value(static_cast<int64_t>(d));
    }
  }
  return def;
}

Value filter_float(const Value& v, const CallArgs& args, Budget& budget) {
  const Value* fallback = args.get(0, "default");
  const Value def = fallback ? *fallback : Value(0.0);
  if (v.is_number()) return Value(v.as_number());
  if (v.is_bool()) return Value(v.as_bool() ? 1.0 : 0.0);
  if (v.is_string()) {
    const std::string s = py_strip(v.as_string(), std::nullopt, true, true);
    char* end = nullptr;
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && *end == '\0') return Value(d);
  }
  return def;
}

Value filter_list(const Value& v, const CallArgs&, Budget& budget) {
  ValueList items = iterate(v);
  budget.charge(static_cast<int64_t>(items.size()));
  return Value(std::move(items));
}

Value filter_reverse(const Value& v, const CallArgs&, Budget& budget) {
  if (v.is_string()) return slice(v, Value(), Value(), Value(int64_t{-1}));
  ValueList items = iterate(v);
  std::reverse(items.begin(), items.end());
  return Value(std::move(items));
}

Value filter_unique(const Value& v, const CallArgs&, Budget& budget) {
  ValueList out;
  for (const Value& item : iterate(v)) {
    budget.charge(static_cast<int64_t>(out.size()));
    bool seen = false;
    for (const Value& o : out) seen = seen || equals(o, item);
    if (!seen) out.push_back(item);
  }
  return Value(std::move(out));
}

Value filter_sort(const Value& v, const CallArgs& args, Budget& budget) {
  const Value* reverse = args.get(0, "reverse");
  const Value* attribute = args.keyword_arg("attribute");
  ValueList items = iterate(v);
  budget.charge(static_cast<int64_t>(items.size()));
  const auto key = [&](const Value& x) {
    return attribute ? get_path(x, to_str(*attribute, budget.max_bytes)) : x;
  };
  std::stable_sort(items.begin(), items.end(),
                   [&](const Value& a, const Value& b) { return compare(key(a), key(b)) < 0; });
  if (reverse && truthy(*reverse)) std::reverse(items.begin(), items.end());
  return Value(std::move(items));
}

Value filter_abs(const Value& v, const CallArgs&, Budget& budget) {
  if (v.is_int()) return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
  if (v.is_float()) return Value(std::fabs(v.as_float()));
  fail("abs needs a number");
}

Value filter_indent(const Value& v, const CallArgs& args, Budget& budget) {
  const Value* width_v = args.get(0, "width");
  const Value* first_v = args.get(1, "first");
  const Value* blank_v = args.get(2, "blank");
  const std::string pad =
      width_v && width_v->is_string()
          ? width_v->as_string()
          : std::string(width_v
                            ? static_cast<size_t>(std::clamp<int64_t>(width_v->as_number(), 0, 256))
                            : 4,
                        ' ');
  const bool first = first_v && truthy(*first_v);
  const bool blank = blank_v && truthy(*blank_v);
  const std::string s = to_str(v, budget.max_bytes);
  std::string out;
  size_t start = 0;
  bool is_first = true;
  while (true) {
    const size_t nl = s.find('\n', start);
    const std::string line =
        s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    if ((is_first ? first : true) && (blank || !line.empty())) out += pad;
    out += line;
    if (nl == std::string::npos) break;
    out += '\n';
    start = nl + 1;
    is_first = false;
    budget.check_size(out.size());
  }
  return Value(std::move(out));
}

const std::unordered_map<std::string_view, FilterFn>& filters() {
  static const auto* kFilters = new std::unordered_map<std::string_view, FilterFn>{
      {"trim", filter_trim},
      {"tojson", filter_tojson},
      {"length", filter_length},
      {"count", filter_length},
      {"upper", filter_upper},
      {"lower", filter_lower},
      {"capitalize", filter_capitalize},
      {"title", filter_title},
      {"join", filter_join},
      {"replace", filter_replace},
      {"default", filter_default},
      {"d", filter_default},
      {"items", filter_items},
      {"select", filter_select},
      {"reject", filter_reject},
      {"selectattr", filter_selectattr},
      {"rejectattr", filter_rejectattr},
      {"map", filter_map},
      {"first", filter_first},
      {"last", filter_last},
      {"string", filter_string},
      {"int", filter_int},
      {"float", filter_float},
      {"list", filter_list},
      {"safe", filter_safe},
      {"reverse", filter_reverse},
      {"unique", filter_unique},
      {"sort", filter_sort},
      {"abs", filter_abs},
      {"indent", filter_indent},
  };
  return *kFilters;
}

bool test_equalto(const Value& v, const CallArgs& a) {
  return equals(v, required_arg(a, 0, "other"));
}
bool test_ne(const Value& v, const CallArgs& a) { return !equals(v, required_arg(a, 0, "other")); }
bool test_lt(const Value& v, const CallArgs& a) {
  return compare(v, required_arg(a, 0, "other")) < 0;
}
bool test_le(const Value& v, const CallArgs& a) {
  return compare(v, required_arg(a, 0, "other")) <= 0;
}
bool test_gt(const Value& v, const CallArgs& a) {
  return compare(v, required_arg(a, 0, "other")) > 0;
}
bool test_ge(const Value& v, const CallArgs& a) {
  return compare(v, required_arg(a, 0, "other")) >= 0;
}

int64_t int_operand(const Value& v) {
  if (!v.is_int()) fail("test needs an integer");
  return v.as_int();
}

const std::unordered_map<std::string_view, TestFn>& tests() {
  static const auto* kTests = new std::unordered_map<std::string_view, TestFn>{
      {"defined", [](const Value& v, const CallArgs&) { return !v.is_undefined(); }},
      {"undefined", [](const Value& v, const CallArgs&) { return v.is_undefined(); }},
      {"none", [](const Value& v, const CallArgs&) { return v.is_none(); }},
      {"string", [](const Value& v, const CallArgs&) { return v.is_string(); }},
      {"mapping", [](const Value& v, const CallArgs&) { return v.is_dict(); }},
      {"iterable",
       [](const Value& v, const CallArgs&) { return v.is_list() || v.is_string() || v.is_dict(); }},
      {"sequence",
       [](const Value& v, const CallArgs&) { return v.is_list() || v.is_string() || v.is_dict(); }},
      {"number", [](const Value& v, const CallArgs&) { return v.is_number(); }},
      {"integer", [](const Value& v, const CallArgs&) { return v.is_int(); }},
      {"float", [](const Value& v, const CallArgs&) { return v.is_float(); }},
      {"boolean", [](const Value& v, const CallArgs&) { return v.is_bool(); }},
      {"callable", [](const Value& v, const CallArgs&) { return v.is_callable(); }},
      {"true", [](const Value& v, const CallArgs&) { return v.is_bool() && v.as_bool(); }},
      {"false", [](const Value& v, const CallArgs&) { return v.is_bool() && !v.as_bool(); }},
      {"odd", [](const Value& v, const CallArgs&) { return int_operand(v) % 2 != 0; }},
      {"even", [](const Value& v, const CallArgs&) { return int_operand(v) % 2 == 0; }},
      {"divisibleby",
       [](const Value& v, const CallArgs& a) {
         const int64_t d = int_operand(required_arg(a, 0, "num"));
         if (d == 0) fail("divisibleby 0");
         return int_operand(v) % d == 0;
       }},
      {"lower",
       [](const Value& v, const CallArgs&) {
         return v.is_string() && ascii_lower(v.as_string()) == v.as_string();
       }},
      {"upper",
       [](const Value& v, const CallArgs&) {
         return v.is_string() && ascii_upper(v.as_string()) == v.as_string();
       }},
      {"in",
       [](const Value& v, const CallArgs& a) {
         const Value& seq = required_arg(a, 0, "seq");
         if (seq.is_string())
           return v.is_string() && seq.as_string().find(v.as_string()) != std::string::npos;
         for (const Value& item : iterate(seq))
           if (equals(item, v)) return true;
         return false;
       }},
      {"sameas",
       [](const Value& v, const CallArgs& a) {
         const Value& o = required_arg(a, 0, "other");
         if (v.identity() != nullptr || o.identity() != nullptr)
           return v.identity() == o.identity();
         return v.kind() == o.kind() && equals(v, o);
       }},
      {"equalto", test_equalto},
      {"eq", test_equalto},
      {"==", test_equalto},
      {"ne", test_ne},
      {"!=", test_ne},
      {"lt", test_lt},
      {"<", test_lt},
      {"le", test_le},
      {"<=", test_le},
      {"gt", test_gt},
      {">", test_gt},
      {"ge", test_ge},
      {">=", test_ge},
      {"lessthan", test_lt},
      {"greaterthan", test_gt},
  };
  return *kTests;
}

}  // namespace

bool is_known_filter(std::string_view name) { return filters().count(name) > 0; }
bool is_known_test(std::string_view name) { return tests().count(name) > 0; }

Value apply_filter(std::string_view name, const Value& value, const CallArgs& args,
                   Budget& budget) {
  const auto it = filters().find(name);
  if (it == filters().end()) fail("unknown filter '" + std::string(name) + "'");
  return it->second(value, args, budget);
}

bool apply_test(std::string_view name, const Value& value, const CallArgs& args) {
  const auto it = tests().find(name);
  if (it == tests().end()) fail("unknown test '" + std::string(name) + "'");
  return it->second(value, args);
}

ValueList iterate(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kUndefined: return {};
    case ValueKind::kList: return v.as_list();
    case ValueKind::kDict: {
      ValueList keys;
      for (const auto& entry : v.as_dict().entries()) keys.emplace_back(entry.first);
      return keys;
    }
    case ValueKind::kString: {
      const std::string& s = v.as_string();
      const std::vector<size_t> offs = code_point_offsets(s);
      ValueList chars;
      for (size_t i = 0; i + 1 < offs.size(); ++i)
        chars.emplace_back(s.substr(offs[i], offs[i + 1] - offs[i]));
      return chars;
    }
    default: fail("object of type " + std::string(type_name(v)) + " is not iterable");
  }
}

}  // namespace moeserve::jinja
