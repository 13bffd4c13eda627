// Arithmetic, concatenation, comparison and membership operators with
// Python semantics (int/float promotion, str * int, list + list, ...).
#pragma once

#include <string_view>

#include "tokenizer/jinja_budget.h"
#include "tokenizer/jinja_value.h"

namespace moeserve::jinja {

// op: + - * / // % ** ~ == != < > <= >= in "not in". Throws JinjaError.
Value binary_op(std::string_view op, const Value& a, const Value& b, Budget& budget);
// op: - + not
Value unary_op(std::string_view op, const Value& a);

}  // namespace moeserve::jinja
