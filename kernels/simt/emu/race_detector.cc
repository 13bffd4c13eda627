// Shared-memory racecheck and random preemption. Kernel translation units are compiled with
// GCC's ThreadSanitizer instrumentation (-fsanitize=thread without its runtime), so every load
// and store calls a __tsan_* hook; this file is that runtime. A hook ignores addresses outside
// the running block's shared arena. Inside it, racecheck compares the access with the byte's
// last writer and readers of the current barrier epoch; in random mode the thread may also be
// preempted, so a missing barrier shows in the results too.
#include <atomic>
#include <cstdio>
#include <string>

#include "kernels/simt/emu/block_state.h"
#include "kernels/simt/emu/grid.h"

namespace simt::emu {
namespace {

std::atomic<bool> g_instrumented{false};

// A thread that makes this many shared accesses without reaching a barrier is preempted, so a
// spin-wait on a flag another thread of the block sets cannot hang the emulator. Count-based,
// so the deterministic schedule stays deterministic.
constexpr uint32_t kSpinSlice = 1u << 14;

std::string describe_offset(const BlockState& b, size_t offset) {
  for (const SharedSlot& s : b.slots) {
    if (offset >= s.offset && offset < s.offset + s.bytes) {
      return "'" + std::string(s.name) + "'+" + std::to_string(offset - s.offset);
    }
  }
  if (offset < b.dynamic_bytes) return "dynamic shared+" + std::to_string(offset);
  return "shared offset " + std::to_string(offset);
}

// Accesses of two lanes of one warp are ordered when a __syncwarp completed in between.
bool ordered(const BlockState& b, const ThreadState& t, unsigned other, uint32_t other_sync) {
  return other / 32 == t.warp && b.warps[t.warp].sync_count != other_sync;
}

// other < 0: several other threads read the byte; the shadow keeps only the first reader.
void report(BlockState& b, const ThreadState& t, size_t offset, bool is_write, int other,
            bool other_wrote) {
  ++b.n_races;
  if (b.races.size() >= 8) return;
  const std::string who = other < 0 ? "another thread" : describe_thread(b.threads[other]);
  b.races.push_back(describe_block(b) + ": shared-memory race on " + describe_offset(b, offset) +
                    " (shared offset " + std::to_string(offset) +
                    "): " + (is_write ? "write" : "read") + " by " + describe_thread(t) + ", " +
                    (other_wrote ? "write" : "read") + " by " + who + " with no barrier between");
}

void on_access(const void* addr, size_t bytes, bool is_write) {
  ThreadState* t = tls_thread;
  if (t == nullptr || t->aborting) return;
  BlockState& b = *t->block;
  if (!in_shared(b, addr, bytes)) return;
  if (b.racecheck) race_access(*t, addr, bytes, is_write);
  const int one_in = b.plan->options.preempt_one_in;
  if (++t->slice_accesses >= kSpinSlice ||
      (b.random && one_in > 0 && b.rng() % static_cast<uint64_t>(one_in) == 0)) {
    // No AbortThread from here: the compiler treats these hooks as non-throwing. An aborted
    // thread instead unwinds at its next barrier or collective, or runs to its end.
    make_runnable(b, *t);
    try {
      yield_to_scheduler(*t);
    } catch (const AbortThread&) {
    }
  }
}

}  // namespace

bool racecheck_available() { return g_instrumented.load(std::memory_order_relaxed); }

bool in_shared(const BlockState& b, const void* addr, size_t bytes) {
  const auto* p = static_cast<const std::byte*>(addr);
  return p >= b.arena.data() && p + bytes <= b.arena.data() + b.arena.size();
}

void race_access(ThreadState& t, const void* addr, size_t bytes, bool is_write) {
  BlockState& b = *t.block;
  if (!b.racecheck) return;
  const size_t offset = static_cast<size_t>(static_cast<const std::byte*>(addr) - b.arena.data());
  const uint32_t sync = b.warps[t.warp].sync_count;
  const auto me = static_cast<uint16_t>(t.linear);
  bool reported = false;
  for (size_t i = 0; i < bytes; ++i) {
    ShadowCell& c = b.shadow[offset + i];
    if (!reported && c.w_epoch == b.epoch && c.w_thread != me &&
        !ordered(b, t, c.w_thread, c.w_warp_sync)) {
      report(b, t, offset + i, is_write, c.w_thread, true);
      reported = true;
    }
    if (!reported && is_write && c.r_epoch == b.epoch && (c.r_thread != me || c.r_multi) &&
        !ordered(b, t, c.r_thread, c.r_warp_sync)) {
      report(b, t, offset + i, true, c.r_thread == me ? -1 : c.r_thread, false);
      reported = true;
    }
    if (is_write) {
      c.w_epoch = b.epoch;
      c.w_thread = me;
      c.w_warp_sync = sync;
    } else if (c.r_epoch != b.epoch) {
      c.r_epoch = b.epoch;
      c.r_thread = me;
      c.r_multi = false;
      c.r_warp_sync = sync;
    } else if (c.r_thread != me) {
      c.r_multi = true;
      c.r_warp_sync = sync;
    }
  }
}

}  // namespace simt::emu

// ---- the hooks GCC's -fsanitize=thread instrumentation calls ------------------------------
extern "C" {
void __tsan_init() { simt::emu::g_instrumented = true; }
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}
#define SIMT_TSAN_HOOKS(n)                                                      \
  void __tsan_read##n(void* a) { simt::emu::on_access(a, n, false); }           \
  void __tsan_write##n(void* a) { simt::emu::on_access(a, n, true); }           \
  void __tsan_unaligned_read##n(void* a) { simt::emu::on_access(a, n, false); } \
  void __tsan_unaligned_write##n(void* a) { simt::emu::on_access(a, n, true); }
SIMT_TSAN_HOOKS(1)
SIMT_TSAN_HOOKS(2)
SIMT_TSAN_HOOKS(4)
SIMT_TSAN_HOOKS(8)
SIMT_TSAN_HOOKS(16)
#undef SIMT_TSAN_HOOKS
void __tsan_read_range(void* a, unsigned long n) { simt::emu::on_access(a, n, false); }
void __tsan_write_range(void* a, unsigned long n) { simt::emu::on_access(a, n, true); }
}
