// Global functions every template sees: namespace(), range(), dict(),
// raise_exception() and strftime_now().
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_budget.h"
#include "tokenizer/jinja_value.h"

namespace moeserve::jinja {

// The callables capture `budget` (range() is charged per item).
std::vector<std::pair<std::string, Value>> make_builtins(Budget& budget);

}  // namespace moeserve::jinja
