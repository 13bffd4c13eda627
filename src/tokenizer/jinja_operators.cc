#include "tokenizer/jinja_operators.h"

#include <cmath>
#include <limits>

#include "tokenizer/jinja_error.h"

namespace moeserve::jinja {
namespace {

[[noreturn]] void unsupported(std::string_view op, const Value& a, const Value& b) {
  fail("unsupported operand types for " + std::string(op) + ": '" + std::string(type_name(a)) +
       "' and '" + std::string(type_name(b)) + "'");
}

Value repeat_string(const std::string& s, int64_t n, Budget& budget) {
  if (n <= 0 || s.empty()) return Value(std::string());
  budget.check_size(s.size() * static_cast<size_t>(std::min<int64_t>(n, 1LL << 40)));
  std::string out;
  out.reserve(s.size() * static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out += s;
  return Value(std::move(out));
}

Value repeat_list(const ValueList& list, int64_t n, Budget& budget) {
  ValueList out;
  if (n <= 0) return Value(std::move(out));
  budget.charge(static_cast<int64_t>(list.size()) * std::min<int64_t>(n, 1LL << 40));
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), list.begin(), list.end());
  return Value(std::move(out));
}

bool contains(const Value& item, const Value& container) {
  switch (container.kind()) {
    case ValueKind::kUndefined: return false;
    case ValueKind::kString:
      if (!item.is_string()) {
        fail("'in <string>' requires a string as left operand, not " +
             std::string(type_name(item)));
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    case ValueKind::kList:
      for (const Value& x : container.as_list())
        if (equals(x, item)) return true;
      return false;
    case ValueKind::kDict:
      return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
    default: fail("argument of type '" + std::string(type_name(container)) + "' is not iterable");
  }
}

Value arithmetic(std::string_view op, const Value& a, const Value& b) {
  if (a.is_int() && b.is_int()) {
    const int64_t x = a.as_int(), y = b.as_int();
    int64_t r = 0;
    if (op == "+") {
      if (__builtin_add_overflow(x, y, &r)) fail("integer overflow");
      return Value(r);
    }
    if (op == "-") {
      if (__builtin_sub_overflow(x, y, &r)) fail("integer overflow");
      return Value(r);
    }
    if (op == "*") {
      if (__builtin_mul_overflow(x, y, &r)) fail("integer overflow");
      return Value(r);
    }
    if (op == "/") {
      if (y == 0) fail("division by zero");
      return Value(static_cast<double>(x) / static_cast<double>(y));
    }
    if (op == "//" || op == "%") {
      if (y == 0) fail("integer division or modulo by zero");
      if (x == std::numeric_limits<int64_t>::min() && y == -1) fail("integer overflow");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {  // Python floors toward -inf
        --q;
        m += y;
      }
      return Value(op == "//" ? q : m);
    }
    if (op == "**") {
      if (y < 0) return Value(std::pow(static_cast<double>(x), static_cast<double>(y)));
      int64_t result = 1, base = x, e = y;
      while (e > 0) {
        if (e & 1) {
          if (__builtin_mul_overflow(result, base, &result)) fail("integer overflow");
        }
        e >>= 1;
        if (e > 0 && __builtin_mul_overflow(base, base, &base)) fail("integer overflow");
      }
      return Value(result);
    }
  }
  const double x = a.as_number(), y = b.as_number();
  if (op == "+") return Value(x + y);
  if (op == "-") return Value(x - y);
  if (op == "*") return Value(x * y);
  if (op == "/") {
    if (y == 0) fail("float division by zero");
    return Value(x / y);
  }
  if (op == "//" || op == "%") {
    if (y == 0) fail("float modulo by zero");
    double m = std::fmod(x, y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    return Value(op == "//" ? std::floor(x / y) : m);
  }
  if (op == "**") return Value(std::pow(x, y));
  unsupported(op, a, b);
}

}  // namespace

Value binary_op(std::string_view op, const Value& a, const Value& b, Budget& budget) {
  if (op == "==") return Value(equals(a, b));
  if (op == "!=") return Value(!equals(a, b));
  if (op == "<") return Value(compare(a, b) < 0);
  if (op == ">") return Value(compare(a, b) > 0);
  if (op == "<=") return Value(compare(a, b) <= 0);
  if (op == ">=") return Value(compare(a, b) >= 0);
  if (op == "in") return Value(contains(a, b));
  if (op == "not in") return Value(!contains(a, b));
  if (op == "~") {
    std::string out = to_str(a, budget.max_bytes);
    out += to_str(b, budget.max_bytes);
    budget.check_size(out.size());
    return Value(std::move(out));
  }
  if (a.is_number() && b.is_number()) return arithmetic(op, a, b);
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      budget.check_size(a.as_string().size() + b.as_string().size());
      return Value(a.as_string() + b.as_string());
    }
    if (a.is_list() && b.is_list()) {
      budget.charge(static_cast<int64_t>(a.as_list().size() + b.as_list().size()));
      ValueList out = a.as_list();
      out.insert(out.end(), b.as_list().begin(), b.as_list().end());
      return Value(std::move(out));
    }
  }
  if (op == "*") {
    if (a.is_string() && b.is_int()) return repeat_string(a.as_string(), b.as_int(), budget);
    if (a.is_int() && b.is_string()) return repeat_string(b.as_string(), a.as_int(), budget);
    if (a.is_list() && b.is_int()) return repeat_list(a.as_list(), b.as_int(), budget);
    if (a.is_int() && b.is_list()) return repeat_list(b.as_list(), a.as_int(), budget);
  }
  if (a.is_undefined() || b.is_undefined()) {
    fail("cannot apply '" + std::string(op) + "' to an undefined value");
  }
  unsupported(op, a, b);
}

Value unary_op(std::string_view op, const Value& a) {
  if (op == "not") return Value(!truthy(a));
  if (op == "-") {
    if (a.is_int()) {
      if (a.as_int() == std::numeric_limits<int64_t>::min()) fail("integer overflow");
      return Value(-a.as_int());
    }
    if (a.is_float()) return Value(-a.as_float());
  }
  if (op == "+" && a.is_number()) return a;
  fail("bad operand type for unary " + std::string(op) + ": '" + std::string(type_name(a)) + "'");
}

}  // namespace moeserve::jinja
