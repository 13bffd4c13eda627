// Tree-walking interpreter: renders a parsed Template against a context.
#pragma once

#include <string>

#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_budget.h"
#include "tokenizer/jinja_value.h"

namespace moeserve::jinja {

// `context` must be a dict; its keys become the template's global variables
// (beside the builtins namespace, range, dict, raise_exception, strftime_now).
// Throws JinjaError (with the location of the failing node) on errors and
// when the budget runs out.
std::string render(const Template& tmpl, const Value& context, Budget& budget);

}  // namespace moeserve::jinja
