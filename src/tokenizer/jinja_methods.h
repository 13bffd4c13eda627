// Member access on values: `x.name`, `x[key]`, `x[a:b:c]`, and the Python
// methods templates call (`str.startswith`, `dict.get`, `list.append`, ...).
#pragma once

#include <string_view>

#include "tokenizer/jinja_budget.h"
#include "tokenizer/jinja_value.h"

namespace moeserve::jinja {

// Missing attributes and keys give undefined; access on undefined throws.
Value get_attr(const Value& object, std::string_view name);
Value get_item(const Value& object, const Value& key);
// Python slicing of lists and strings (by code point); null parts are Values
// that are none or undefined.
Value slice(const Value& object, const Value& start, const Value& stop, const Value& step);

// Calls method `name` of `object`. Returns false when the object has no such
// method; throws JinjaError on bad arguments.
bool call_method(const Value& object, std::string_view name, const CallArgs& args, Budget& budget,
                 Value* result);

}  // namespace moeserve::jinja
