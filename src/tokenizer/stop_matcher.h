// Stop strings matched as text streams in, in time linear in the text.
//
// An Aho-Corasick automaton over the stop strings' bytes. feed() walks each
// new byte once (failure links amortise to O(1) per byte), so a request with
// 16 stop strings of 1 KiB costs the same per token as one with a single
// short stop. The automaton's state is the longest suffix of the text so far
// that is a prefix of some stop string: exactly the text to hold back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moeserve {

class StopMatcher {
 public:
  // `stops` must be non-empty strings.
  explicit StopMatcher(const std::vector<std::string>& stops);

  struct Hit {
    int64_t start;  // where the stop string begins, relative to the fed chunk (< 0: earlier)
    size_t stop;    // index into the stops
  };
  // Feeds the next bytes of the text. Returns the match that begins first
  // among those that end inside `bytes` (ties: the lower stop index), if any.
  std::optional<Hit> feed(std::string_view bytes);

  // Length of the longest suffix of the text fed so far that is a prefix of a
  // stop string (a whole one only right after it matched): the text that
  // could still grow into a match.
  size_t pending() const { return nodes_[static_cast<size_t>(state_)].depth; }

  // Transitions taken so far, failure hops included (≤ 2 × bytes fed).
  int64_t steps() const { return steps_; }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> next;  // sorted by byte
    int32_t fail = 0;
    uint32_t depth = 0;
    // The longest stop string that is a suffix of this node's string: its
    // length (0 if none) and index.
    uint32_t out_len = 0;
    uint32_t out_stop = 0;
  };
  int32_t child(int32_t node, uint8_t byte) const;

  std::vector<Node> nodes_;
  int32_t state_ = 0;
  int64_t steps_ = 0;
};

}  // namespace moeserve
