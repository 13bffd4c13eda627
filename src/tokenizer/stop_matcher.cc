#include "tokenizer/stop_matcher.h"

#include <algorithm>
#include <deque>

namespace moeserve {

int32_t StopMatcher::child(int32_t node, uint8_t byte) const {
  const auto& next = nodes_[static_cast<size_t>(node)].next;
  auto it = std::lower_bound(next.begin(), next.end(), byte,
                             [](const auto& edge, uint8_t b) { return edge.first < b; });
  return it != next.end() && it->first == byte ? it->second : -1;
}

StopMatcher::StopMatcher(const std::vector<std::string>& stops) : nodes_(1) {
  for (size_t s = 0; s < stops.size(); ++s) {
    int32_t node = 0;
    for (const char c : stops[s]) {
      const uint8_t b = static_cast<uint8_t>(c);
      int32_t next = child(node, b);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        Node n;
        n.depth = nodes_[static_cast<size_t>(node)].depth + 1;
        nodes_.push_back(std::move(n));
        auto& edges = nodes_[static_cast<size_t>(node)].next;
        edges.insert(std::lower_bound(edges.begin(), edges.end(), b,
                                      [](const auto& e, uint8_t x) { return e.first < x; }),
                     {b, next});
      }
      node = next;
    }
    Node& end = nodes_[static_cast<size_t>(node)];
    if (end.out_len == 0) {  // a repeated stop string keeps its first index
      end.out_len = end.depth;
      end.out_stop = static_cast<uint32_t>(s);
    }
  }
  // Failure links breadth first; a node inherits its failure node's longest
  // output when it has none of its own (that output is shorter than the node).
  std::deque<int32_t> queue;
  for (const auto& [b, c] : nodes_[0].next) queue.push_back(c);
  while (!queue.empty()) {
    const int32_t node = queue.front();
    queue.pop_front();
    for (const auto& [b, c] : nodes_[static_cast<size_t>(node)].next) {
      int32_t f = nodes_[static_cast<size_t>(node)].fail;
      while (f != 0 && child(f, b) < 0) f = nodes_[static_cast<size_t>(f)].fail;
      const int32_t target = child(f, b);
      Node& cn = nodes_[static_cast<size_t>(c)];
      cn.fail = target >= 0 && target != c ? target : 0;
      if (cn.out_len == 0) {
        cn.out_len = nodes_[static_cast<size_t>(cn.fail)].out_len;
        cn.out_stop = nodes_[static_cast<size_t>(cn.fail)].out_stop;
      }
      queue.push_back(c);
    }
  }
}

std::optional<StopMatcher::Hit> StopMatcher::feed(std::string_view bytes) {
  std::optional<Hit> best;
  for (size_t i = 0; i < bytes.size(); ++i) {
    const uint8_t b = static_cast<uint8_t>(bytes[i]);
    int32_t next = child(state_, b);
    while (next < 0 && state_ != 0) {
      state_ = nodes_[static_cast<size_t>(state_)].fail;
      ++steps_;
      next = child(state_, b);
    }
    state_ = next < 0 ? 0 : next;
    ++steps_;
    const Node& n = nodes_[static_cast<size_t>(state_)];
    if (n.out_len == 0) continue;
    // The longest stop ending here begins earliest; shorter ones end here too
    // but begin later, so they never win.
    const Hit hit{static_cast<int64_t>(i) + 1 - static_cast<int64_t>(n.out_len), n.out_stop};
    if (!best || hit.start < best->start || (hit.start == best->start && hit.stop < best->stop)) {
      best = hit;
    }
  }
  return best;
}

}  // namespace moeserve
