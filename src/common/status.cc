#include "common/status.h"

#include <cstdio>
#include <cstdlib>

namespace moeserve {

void check_failed(const char* cond, const char* file, int line, const std::string& message) {
  std::fprintf(stderr, "moeserve: check failed at %s:%d: %s %s\n", file, line, cond,
               message.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace moeserve
