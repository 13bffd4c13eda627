#include "tokenizer/jinja_methods.h"

#include <optional>

#include "tokenizer/jinja_error.h"
#include "tokenizer/jinja_strings.h"

namespace moeserve::jinja {
namespace {

[[noreturn]] void undefined_access(std::string_view what) {
  fail("cannot access " + std::string(what) + " of an undefined value");
}

// Python's slice.indices(): clamps start/stop for a sequence of length n.
void slice_indices(int64_t n, const Value& start_v, const Value& stop_v, int64_t step,
                   int64_t* start, int64_t* stop) {
  const auto get = [](const Value& v, int64_t fallback) -> int64_t {
    if (v.is_none() || v.is_undefined()) return fallback;
    if (!v.is_int()) fail("slice indices must be integers");
    return v.as_int();
  };
  const auto clamp = [&](int64_t i, int64_t lo, int64_t hi) {
    if (i < 0) i += n;
    if (i < lo) return lo;
    if (i > hi) return hi;
    return i;
  };
  if (step > 0) {
    *start = start_v.is_int() ? clamp(get(start_v, 0), 0, n) : 0;
    *stop = stop_v.is_int() ? clamp(get(stop_v, n), 0, n) : n;
  } else {
    *start = start_v.is_int() ? clamp(get(start_v, n - 1), -1, n - 1) : n - 1;
    *stop = stop_v.is_int() ? clamp(get(stop_v, -1), -1, n - 1) : -1;
  }
  get(start_v, 0);  // type checks
  get(stop_v, 0);
}

std::optional<std::string> optional_string_arg(const CallArgs& args, size_t i,
                                               std::string_view name) {
  const Value* v = args.get(i, name);
  if (v == nullptr || v->is_none() || v->is_undefined()) return std::nullopt;
  if (!v->is_string()) fail("argument '" + std::string(name) + "' must be a string");
  return v->as_string();
}

const std::string& string_arg(const CallArgs& args, size_t i, std::string_view name) {
  const Value* v = args.get(i, name);
  if (v == nullptr || !v->is_string()) {
    fail("argument '" + std::string(name) + "' must be a string");
  }
  return v->as_string();
}

int64_t int_arg(const CallArgs& args, size_t i, std::string_view name, int64_t fallback) {
  const Value* v = args.get(i, name);
  if (v == nullptr || v->is_none()) return fallback;
  if (!v->is_int()) fail("argument '" + std::string(name) + "' must be an integer");
  return v->as_int();
}

bool affix_matches(const std::string& s, const Value& affix, bool prefix) {
  const auto one = [&](const Value& a) {
    if (!a.is_string()) fail("startswith/endswith takes a string or a list of strings");
    const std::string& x = a.as_string();
    if (x.size() > s.size()) return false;
    return prefix ? s.compare(0, x.size(), x) == 0
                  : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.is_list()) {
    for (const Value& a : affix.as_list())
      if (one(a)) return true;
    return false;
  }
  return one(affix);
}

bool string_method(const std::string& s, std::string_view name, const CallArgs& args,
                   Budget& budget, Value* out) {
  if (name == "startswith" || name == "endswith") {
    const Value* affix = args.get(0, "prefix");
    if (affix == nullptr) fail(std::string(name) + "() needs an argument");
    *out = Value(affix_matches(s, *affix, name == "startswith"));
  } else if (name == "strip" || name == "lstrip" || name == "rstrip") {
    *out = Value(
        py_strip(s, optional_string_arg(args, 0, "chars"), name != "rstrip", name != "lstrip"));
  } else if (name == "split") {
    const std::optional<std::string> sep = optional_string_arg(args, 0, "sep");
    if (sep && sep->empty()) fail("split(): empty separator");
    ValueList parts;
    for (std::string& p : py_split(s, sep, int_arg(args, 1, "maxsplit", -1)))
      parts.emplace_back(std::move(p));
    budget.charge(static_cast<int64_t>(parts.size()));
    *out = Value(std::move(parts));
  } else if (name == "upper") {
    *out = Value(ascii_upper(s));
  } else if (name == "lower") {
    *out = Value(ascii_lower(s));
  } else if (name == "title") {
    *out = Value(py_title(s));
  } else if (name == "capitalize") {
    *out = Value(py_capitalize(s));
  } else if (name == "replace") {
    const std::string& from = string_arg(args, 0, "old");
    const std::string& to = string_arg(args, 1, "new");
    *out = Value(py_replace(s, from, to, int_arg(args, 2, "count", -1), budget.max_bytes));
  } else if (name == "find") {
    const size_t hit = s.find(string_arg(args, 0, "sub"));
    *out = Value(hit == std::string::npos ? int64_t{-1}
                                          : code_point_length(std::string_view(s).substr(0, hit)));
  } else if (name == "count") {
    const std::string& sub = string_arg(args, 0, "sub");
    int64_t n = 0;
    if (sub.empty()) {
      n = code_point_length(s) + 1;
    } else {
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
    }
    *out = Value(n);
  } else if (name == "join") {
    const Value* items = args.get(0, "iterable");
    if (items == nullptr || !items->is_list()) fail("join() takes a list");
    std::string r;
    bool first = true;
    for (const Value& item : items->as_list()) {
      if (!item.is_string()) fail("join() items must be strings");
      if (!first) r += s;
      first = false;
      r += item.as_string();
      budget.check_size(r.size());
    }
    *out = Value(std::move(r));
  } else {
    return false;
  }
  return true;
}

bool dict_method(const Value& object, std::string_view name, const CallArgs& args, Budget& budget,
                 Value* out) {
  const ValueDict& d = object.as_dict();
  if (name == "get") {
    const Value* key = args.get(0, "key");
    if (key == nullptr) fail("get() needs a key");
    const Value* found = key->is_string() ? d.find(key->as_string()) : nullptr;
    const Value* fallback = args.get(1, "default");
    *out = found ? *found : fallback ? *fallback : Value::none();
    return true;
  }
  if (name == "items" || name == "keys" || name == "values") {
    budget.charge(static_cast<int64_t>(d.size()));
    ValueList list;
    list.reserve(d.size());
    for (const auto& [k, v] : d.entries()) {
      if (name == "items")
        list.emplace_back(ValueList{Value(k), v});
      else if (name == "keys")
        list.emplace_back(k);
      else
        list.push_back(v);
    }
    *out = Value(std::move(list));
    return true;
  }
  return false;
}

bool list_method(const Value& object, std::string_view name, const CallArgs& args, Budget& budget,
                 Value* out) {
  ValueList& list = object.as_list();
  if (name == "append") {
    if (args.positional.size() != 1) fail("append() takes one argument");
    budget.charge();
    budget.mutated.push_back(object);
    list.push_back(args.positional[0]);
    *out = Value::none();
    return true;
  }
  if (name == "extend") {
    if (args.positional.size() != 1 || !args.positional[0].is_list()) {
      fail("extend() takes a list");
    }
    const ValueList items = args.positional[0].as_list();  // copy: may alias `list`
    budget.charge(static_cast<int64_t>(items.size()));
    budget.mutated.push_back(object);
    list.insert(list.end(), items.begin(), items.end());
    *out = Value::none();
    return true;
  }
  return false;
}

}  // namespace

Value get_attr(const Value& object, std::string_view name) {
  if (object.is_undefined()) undefined_access("attribute '" + std::string(name) + "'");
  if (object.is_dict()) {
    if (const Value* v = object.as_dict().find(name)) return *v;
  }
  return Value();
}

Value get_item(const Value& object, const Value& key) {
  if (object.is_undefined()) undefined_access("item " + repr(key));
  if (object.is_dict()) {
    if (key.is_string()) {
      if (const Value* v = object.as_dict().find(key.as_string())) return *v;
    }
    return Value();
  }
  if (!key.is_int()) return Value();
  int64_t i = key.as_int();
  if (object.is_list()) {
    const ValueList& list = object.as_list();
    const auto n = static_cast<int64_t>(list.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value();
    return list[static_cast<size_t>(i)];
  }
  if (object.is_string()) {
    const std::string& s = object.as_string();
    const std::vector<size_t> offs = code_point_offsets(s);
    const auto n = static_cast<int64_t>(offs.size()) - 1;
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value();
    const auto u = static_cast<size_t>(i);
    return Value(s.substr(offs[u], offs[u + 1] - offs[u]));
  }
  return Value();
}

Value slice(const Value& object, const Value& start, const Value& stop, const Value& step_v) {
  if (object.is_undefined()) undefined_access("a slice");
  int64_t step = 1;
  if (step_v.is_int())
    step = step_v.as_int();
  else if (!step_v.is_none() && !step_v.is_undefined())
    fail("slice step must be an integer");
  if (step == 0) fail("slice step cannot be zero");
  if (object.is_list()) {
    const ValueList& list = object.as_list();
    int64_t b = 0, e = 0;
    slice_indices(static_cast<int64_t>(list.size()), start, stop, step, &b, &e);
    ValueList out;
    for (int64_t i = b; step > 0 ? i < e : i > e; i += step)
      out.push_back(list[static_cast<size_t>(i)]);
    return Value(std::move(out));
  }
  if (object.is_string()) {
    const std::string& s = object.as_string();
    const std::vector<size_t> offs = code_point_offsets(s);
    int64_t b = 0, e = 0;
    slice_indices(static_cast<int64_t>(offs.size()) - 1, start, stop, step, &b, &e);
    std::string out;
    for (int64_t i = b; step > 0 ? i < e : i > e; i += step) {
      const auto u = static_cast<size_t>(i);
      out.append(s, offs[u], offs[u + 1] - offs[u]);
    }
    return Value(std::move(out));
  }
  fail("cannot slice a " + std::string(type_name(object)));
}

bool call_method(const Value& object, std::string_view name, const CallArgs& args, Budget& budget,
                 Value* result) {
  if (object.is_string()) return string_method(object.as_string(), name, args, budget, result);
  if (object.is_dict() && !object.as_dict().is_namespace) {
    return dict_method(object, name, args, budget, result);
  }
  if (object.is_list()) return list_method(object, name, args, budget, result);
  return false;
}

}  // namespace moeserve::jinja
