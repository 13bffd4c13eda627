// Warp collectives: every lane named in the mask must arrive at the same collective with the
// same mask; the last one to arrive computes the result for all of them. A lane outside its
// own mask, overlapping masks, or a lane that exits or waits elsewhere is an error.
#include <cstdio>
#include <string>

#include "kernels/simt/emu/block_state.h"

namespace simt::emu {
namespace {

std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace

void warp_collective(const char* name, WarpResolver resolver, unsigned mask, void* data,
                     const Loc& loc) {
  ThreadState& t = *tls_thread;
  BlockState& b = *t.block;
  WarpState& w = b.warps[t.warp];
  const unsigned bit = 1u << t.lane;
  if ((mask & bit) == 0) {
    fail(t, describe_thread(t) + " (lane " + std::to_string(t.lane) + ") calls " + name + " (" +
                describe_loc(loc) + ") with mask " + hex(mask) + " that does not include it");
  }
  // Lanes beyond a partial last warp do not exist, as on the GPU.
  const unsigned effective = mask & w.existing;
  if (effective & w.exited) {
    fail(t, describe_thread(t) + " calls " + std::string(name) + " (" + describe_loc(loc) +
                ") with mask " + hex(mask) + " but lanes " + hex(effective & w.exited) +
                " have exited");
  }
  WarpGroup* group = nullptr;
  for (WarpGroup& g : w.groups) {
    if (g.mask == effective) {
      group = &g;
    } else if (g.mask & effective) {
      fail(t, "warp collective mask mismatch: " + describe_thread(t) + " calls " + name + " (" +
                  describe_loc(loc) + ") with mask " + hex(effective) + " while lanes " +
                  hex(g.arrived) + " wait at " + g.name + " with mask " + hex(g.mask));
    }
  }
  if (group == nullptr) {
    w.groups.push_back(WarpGroup{});
    group = &w.groups.back();
    group->name = name;
    group->resolver = resolver;
    group->mask = effective;
  } else if (group->resolver != resolver) {
    fail(t, "warp lanes at different collectives: " + describe_thread(t) + " calls " + name + " (" +
                describe_loc(loc) + ") while lanes " + hex(group->arrived) + " wait at " +
                group->name);
  }
  group->arrived |= bit;
  group->lanes[t.lane] = &t;
  group->lane_data[t.lane] = data;
  t.status = ThreadStatus::kAtWarpOp;
  t.warp_op_name = name;
  t.warp_op_loc = loc;
  if (group->arrived == group->mask) {
    WarpGroup done = *group;
    w.groups.erase(w.groups.begin() + (group - w.groups.data()));
    done.resolver(b, done.lanes, done.lane_data, done.mask);
    for (unsigned lane = 0; lane < 32; ++lane) {
      if (done.mask >> lane & 1) make_runnable(b, *done.lanes[lane]);
    }
  }
  yield_to_scheduler(t);
}

void check_exit_against_warp(ThreadState& t) {
  BlockState& b = *t.block;
  for (const WarpGroup& g : b.warps[t.warp].groups) {
    if (g.mask >> t.lane & 1) {
      record_error(b, describe_thread(t) + " exited while lanes " + hex(g.arrived) + " wait at " +
                          g.name + " with mask " + hex(g.mask) + " that includes it");
    }
  }
}

// ---- shuffles, vote, __syncwarp -----------------------------------------------------------

namespace {

struct ShflLane {
  uint64_t value;
  uint64_t result;
  int b;
  int width;
  ShflMode mode;
};

// PTX shfl.sync semantics: c = ((32 - width) << 8) | clamp, clamp 0 for up, 31 otherwise.
void resolve_shfl(BlockState&, ThreadState* const*, void* const* data, unsigned mask) {
  for (unsigned lane = 0; lane < 32; ++lane) {
    if ((mask >> lane & 1) == 0) continue;
    ShflLane& me = *static_cast<ShflLane*>(data[lane]);
    const unsigned seg_mask = (32u - static_cast<unsigned>(me.width)) & 31u;
    const unsigned clamp = me.mode == ShflMode::kUp ? 0u : 31u;
    const int max_lane = static_cast<int>((lane & seg_mask) | (clamp & ~seg_mask));
    const int min_lane = static_cast<int>(lane & seg_mask);
    // The hardware reads only the low 5 bits of the lane / delta / mask operand
    // (PTX shfl.sync: bval[4:0] = b[4:0]), so 37 acts as 5 and -1 as 31.
    const int b = me.b & 31;
    int j = 0;
    bool in_range = false;
    switch (me.mode) {
      case ShflMode::kUp:
        j = static_cast<int>(lane) - b;
        in_range = j >= max_lane;
        break;
      case ShflMode::kDown:
        j = static_cast<int>(lane) + b;
        in_range = j <= max_lane;
        break;
      case ShflMode::kXor:
        j = static_cast<int>(lane ^ static_cast<unsigned>(b));
        in_range = j <= max_lane;
        break;
      case ShflMode::kIdx:
        j = min_lane | (b & ~static_cast<int>(seg_mask) & 31);
        in_range = j <= max_lane;
        break;
    }
    if (!in_range) j = static_cast<int>(lane);
    // A source lane outside the mask is undefined on the GPU: poison it.
    me.result = (mask >> j & 1) ? static_cast<ShflLane*>(data[j])->value : ~uint64_t{0};
  }
}

void resolve_ballot(BlockState&, ThreadState* const*, void* const* data, unsigned mask) {
  unsigned bits = 0;
  for (unsigned lane = 0; lane < 32; ++lane) {
    if ((mask >> lane & 1) && *static_cast<int*>(data[lane])) bits |= 1u << lane;
  }
  for (unsigned lane = 0; lane < 32; ++lane) {
    if (mask >> lane & 1) *static_cast<int*>(data[lane]) = static_cast<int>(bits);
  }
}

void resolve_syncwarp(BlockState& b, ThreadState* const* lanes, void* const*, unsigned mask) {
  for (unsigned lane = 0; lane < 32; ++lane) {
    if (mask >> lane & 1) {
      ++b.warps[lanes[lane]->warp].sync_count;  // orders the lanes' shared accesses
      break;
    }
  }
}

struct ReduceLane {
  uint32_t value;
  WarpReduce op;
};

void resolve_reduce(BlockState&, ThreadState* const*, void* const* data, unsigned mask) {
  const WarpReduce op = static_cast<ReduceLane*>(data[__builtin_ctz(mask)])->op;
  const bool is_signed =
      op == WarpReduce::kAddS || op == WarpReduce::kMinS || op == WarpReduce::kMaxS;
  bool first = true;
  uint32_t acc = 0;
  for (unsigned lane = 0; lane < 32; ++lane) {
    if ((mask >> lane & 1) == 0) continue;
    const uint32_t v = static_cast<ReduceLane*>(data[lane])->value;
    if (first) {
      acc = v;
      first = false;
    } else if (op == WarpReduce::kAddU || op == WarpReduce::kAddS) {
      acc += v;  // wraps, as the hardware's 32-bit add
    } else {
      const bool less = is_signed ? static_cast<int32_t>(v) < static_cast<int32_t>(acc) : v < acc;
      const bool take_min = op == WarpReduce::kMinU || op == WarpReduce::kMinS;
      if (less == take_min && v != acc) acc = v;
    }
  }
  for (unsigned lane = 0; lane < 32; ++lane) {
    if (mask >> lane & 1) static_cast<ReduceLane*>(data[lane])->value = acc;
  }
}

struct MatchLane {
  uint64_t value;
  unsigned result;
  bool all_equal;
};

void resolve_match(BlockState&, ThreadState* const*, void* const* data, unsigned mask) {
  for (unsigned lane = 0; lane < 32; ++lane) {
    if ((mask >> lane & 1) == 0) continue;
    MatchLane& me = *static_cast<MatchLane*>(data[lane]);
    unsigned same = 0;
    for (unsigned other = 0; other < 32; ++other) {
      if ((mask >> other & 1) && static_cast<MatchLane*>(data[other])->value == me.value) {
        same |= 1u << other;
      }
    }
    me.result = same;
    me.all_equal = same == mask;
  }
}

}  // namespace

uint32_t warp_reduce(unsigned mask, WarpReduce op, uint32_t value, const Loc& loc) {
  ReduceLane me{value, op};
  warp_collective("__reduce_sync", resolve_reduce, mask, &me, loc);
  return me.value;
}

unsigned match(unsigned mask, uint64_t value, bool* all_equal, const Loc& loc) {
  MatchLane me{value, 0, false};
  warp_collective("__match_sync", resolve_match, mask, &me, loc);
  if (all_equal) *all_equal = me.all_equal;
  return me.result;
}

uint64_t shfl(unsigned mask, ShflMode mode, uint64_t value, int b, int width, const Loc& loc) {
  ThreadState& t = *tls_thread;
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0) {
    fail(t, describe_thread(t) + " shuffle (" + describe_loc(loc) + ") with width " +
                std::to_string(width) + ", not a power of two up to 32");
  }
  ShflLane me{value, 0, b, width, mode};
  warp_collective("__shfl_sync", resolve_shfl, mask, &me, loc);
  return me.result;
}

unsigned ballot(unsigned mask, int pred, const Loc& loc) {
  int v = pred != 0;
  warp_collective("__ballot_sync", resolve_ballot, mask, &v, loc);
  return static_cast<unsigned>(v);
}

void syncwarp(unsigned mask, const Loc& loc) {
  warp_collective("__syncwarp", resolve_syncwarp, mask, nullptr, loc);
}

}  // namespace simt::emu
