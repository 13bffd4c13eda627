// xorshift64*: a fast seeded generator for test data of 10^8 values and more.
#pragma once

#include <cstdint>

namespace moeserve {

struct Xorshift64Star {
  uint64_t state;  // must not be 0
  uint64_t operator()() {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1Dull;
  }
};

}  // namespace moeserve
