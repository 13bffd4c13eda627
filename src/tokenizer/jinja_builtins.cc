#include "tokenizer/jinja_builtins.h"

#include <ctime>
#include <memory>

#include "tokenizer/jinja_error.h"

namespace moeserve::jinja {
namespace {

Value make_callable(std::string name, std::function<Value(const CallArgs&)> fn) {
  auto c = std::make_shared<Callable>();
  c->name = std::move(name);
  c->fn = std::move(fn);
  return Value(std::shared_ptr<const Callable>(std::move(c)));
}

int64_t int_arg(const Value& v, const char* what) {
  if (!v.is_int()) fail(std::string(what) + " must be an integer");
  return v.as_int();
}

Value builtin_range(const CallArgs& args, Budget& budget) {
  const auto& a = args.positional;
  if (a.empty() || a.size() > 3 || !args.keyword.empty()) fail("range() takes 1 to 3 integers");
  int64_t start = 0, stop = 0, step = 1;
  if (a.size() == 1) {
    stop = int_arg(a[0], "range() argument");
  } else {
    start = int_arg(a[0], "range() argument");
    stop = int_arg(a[1], "range() argument");
    if (a.size() == 3) step = int_arg(a[2], "range() step");
  }
  if (step == 0) fail("range() step must not be zero");
  // Count first so an enormous range is refused before allocating.
  const long double span = static_cast<long double>(stop) - static_cast<long double>(start);
  const long double count = span / static_cast<long double>(step);
  const int64_t n = count <= 0 ? 0 : static_cast<int64_t>(count + 0.999999L);
  budget.charge(n);
  ValueList out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out.emplace_back(start + i * step);
  return Value(std::move(out));
}

Value builtin_namespace(const CallArgs& args, bool is_namespace) {
  ValueDict dict;
  dict.is_namespace = is_namespace;
  for (const Value& v : args.positional) {
    if (!v.is_dict()) fail("positional argument must be a mapping");
    for (const auto& [key, item] : v.as_dict().entries()) dict.set(key, item);
  }
  for (const auto& [key, item] : args.keyword) dict.set(key, item);
  return Value(std::move(dict));
}

Value builtin_strftime_now(const CallArgs& args) {
  if (args.positional.size() != 1 || !args.positional[0].is_string()) {
    fail("strftime_now() takes a format string");
  }
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[256];
  const size_t n = std::strftime(buf, sizeof(buf), args.positional[0].as_string().c_str(), &tm);
  return Value(std::string(buf, n));
}

}  // namespace

std::vector<std::pair<std::string, Value>> make_builtins(Budget& budget) {
  std::vector<std::pair<std::string, Value>> out;
  out.emplace_back("range", make_callable("range", [&budget](const CallArgs& args) {
                     return builtin_range(args, budget);
                   }));
  out.emplace_back("namespace", make_callable("namespace", [](const CallArgs& args) {
                     return builtin_namespace(args, true);
                   }));
  out.emplace_back("dict", make_callable("dict", [](const CallArgs& args) {
                     return builtin_namespace(args, false);
                   }));
  out.emplace_back("raise_exception", make_callable("raise_exception", [](const CallArgs& args) {
                     if (args.positional.empty()) fail("raise_exception() called");
                     fail(to_str(args.positional[0]));
                     return Value();
                   }));
  out.emplace_back("strftime_now", make_callable("strftime_now", builtin_strftime_now));
  return out;
}

}  // namespace moeserve::jinja
