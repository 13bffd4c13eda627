// Render limits and the running counters checked against them. A template
// that loops forever, recurses without end or builds huge strings stops with
// an error instead of hanging or exhausting memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/jinja_error.h"
#include "tokenizer/jinja_value.h"

namespace moeserve::jinja {

struct Budget {
  int64_t max_steps = 0;   // statements + loop iterations + calls + list items built
  size_t max_bytes = 0;    // any single string or output buffer
  int max_call_depth = 0;  // nested macro calls
  int64_t n_steps = 0;
  int call_depth = 0;
  // Lists/namespaces mutated during the render (the only way to build a
  // reference cycle); the interpreter empties them at the end so shared_ptr
  // cycles cannot leak.
  std::vector<Value> mutated;

  void charge(int64_t n = 1) {
    n_steps += n;
    if (n_steps > max_steps) {
      fail("render step limit exceeded (" + std::to_string(max_steps) + " steps): endless loop?");
    }
  }
  void check_size(size_t n_bytes) const {
    if (n_bytes > max_bytes) fail_size_limit(max_bytes);
  }
};

}  // namespace moeserve::jinja
