// Status helpers over Abseil: the error currency between modules.
#pragma once

#include "absl/strings/str_cat.h"
#include "moeserve/status.h"

#define MS_CONCAT_INNER_(a, b) a##b
#define MS_CONCAT_(a, b) MS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                \
  do {                                       \
    ::absl::Status ms_status_ = (expr);      \
    if (!ms_status_.ok()) return ms_status_; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, f())` unwraps a StatusOr or returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(MS_CONCAT_(ms_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(*tmp)

// Internal invariants: abort with a message (never for user input).
#define MS_CHECK(cond, ...)                                                                        \
  do {                                                                                             \
    if (!(cond)) ::moeserve::check_failed(#cond, __FILE__, __LINE__, ::absl::StrCat(__VA_ARGS__)); \
  } while (0)

namespace moeserve {
[[noreturn]] void check_failed(const char* cond, const char* file, int line,
                               const std::string& message);
}  // namespace moeserve
