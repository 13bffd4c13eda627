// Filters (`x | name(args)`) and tests (`x is name(args)`).
#pragma once

#include <string_view>

#include "tokenizer/jinja_budget.h"
#include "tokenizer/jinja_value.h"

namespace moeserve::jinja {

bool is_known_filter(std::string_view name);
bool is_known_test(std::string_view name);

// Both throw JinjaError (without location) on bad arguments.
Value apply_filter(std::string_view name, const Value& value, const CallArgs& args, Budget& budget);
bool apply_test(std::string_view name, const Value& value, const CallArgs& args);

// Items a `for` loop visits: list items, string characters, dict keys;
// undefined iterates as empty. Throws for other kinds.
ValueList iterate(const Value& v);

}  // namespace moeserve::jinja
