// Internal state of one emulated block and its threads (emulator .cc files only; kernel
// source never sees it). A block runs on one OS thread: its CUDA threads are fibers that the
// block's scheduler resumes one at a time, so nothing here needs a lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/simt/emu/device.h"
#include "kernels/simt/emu/grid.h"
#include "kernels/simt/launch_config.h"
#include <boost/context/fiber.hpp>

namespace simt::emu {

struct BlockState;
struct ThreadState;

// Thrown inside a fiber to unwind it when its block is aborted; caught at the fiber's entry.
struct AbortThread {};

enum class ThreadStatus : uint8_t { kReady, kAtBarrier, kAtWarpOp, kExited };

struct CpAsyncCopy {
  void* dst;
  const void* src;
  int bytes;      // cp-size
  int src_bytes;  // copied; the rest zero-filled
  bool landed;    // already performed (random mode lands some copies early)
};

struct ThreadState {
  ThreadView view;  // first, so tls_view can point at it
  BlockState* block = nullptr;
  unsigned linear = 0;  // x + y·bx + z·bx·by
  unsigned lane = 0;
  unsigned warp = 0;
  ThreadStatus status = ThreadStatus::kReady;
  bool started = false;
  bool aborting = false;
  uint32_t slice_accesses = 0;  // shared accesses since this thread was last resumed
  boost::context::fiber fiber;  // this thread, while it is suspended
  boost::context::fiber sink;   // the scheduler, while this thread runs
  void* stack_base = nullptr;
  size_t stack_size = 0;
  void* asan_fake_stack = nullptr;
  // Barrier arrival.
  Loc barrier_loc;
  BarrierReduce barrier_reduce = BarrierReduce::kNone;
  int barrier_pred = 0;
  int barrier_result = 0;
  // Warp collective arrival: what it waits at.
  const char* warp_op_name = nullptr;
  Loc warp_op_loc;
  // cp.async: issued copies and the end index of each committed group.
  std::vector<CpAsyncCopy> cp_pending;
  std::vector<size_t> cp_group_end;
};

// Resolves a warp collective once every lane of its mask has arrived. lane_data[i] is what
// lane i passed (nullptr for lanes outside the mask).
using WarpResolver = void (*)(BlockState& block, ThreadState* const* lanes, void* const* lane_data,
                              unsigned mask);

struct WarpGroup {
  const char* name = nullptr;
  WarpResolver resolver = nullptr;
  unsigned mask = 0;
  unsigned arrived = 0;
  ThreadState* lanes[32] = {};
  void* lane_data[32] = {};
};

struct WarpState {
  unsigned existing = 0;    // lanes that exist (the last warp of a block may be partial)
  unsigned exited = 0;      // lanes that returned from the kernel
  uint32_t sync_count = 0;  // __syncwarp completions: orders accesses for racecheck
  std::vector<WarpGroup> groups;
};

struct SharedSlot {
  const void* tag;
  size_t offset;
  size_t bytes;
  const char* name;
};

// One shadow cell per shared-memory byte: who last wrote and read it, in which barrier epoch.
struct ShadowCell {
  uint32_t w_epoch = 0;
  uint32_t r_epoch = 0;
  uint16_t w_thread = 0;
  uint16_t r_thread = 0;
  uint32_t w_warp_sync = 0;
  uint32_t r_warp_sync = 0;
  bool r_multi = false;  // read by more than one thread this epoch
};

struct LaunchPlan {
  LaunchConfig config;
  EmuOptions options;
  KernelThunk thunk;
  unsigned n_threads = 0;
};

struct BlockState {
  const LaunchPlan* plan = nullptr;
  uint3 block_idx{};
  unsigned n_threads = 0;
  std::vector<ThreadState> threads;
  std::vector<WarpState> warps;
  // Scheduling.
  std::vector<uint16_t> runnable;
  size_t runnable_head = 0;  // deterministic mode pops from the front
  std::mt19937_64 rng;
  bool random = false;
  // The barrier being filled.
  unsigned n_at_barrier = 0;
  unsigned n_exited = 0;
  Loc barrier_loc;
  // Shared memory: [dynamic | static slots], poisoned at block start.
  std::vector<std::byte> arena;
  size_t dynamic_bytes = 0;
  size_t static_used = 0;
  std::vector<SharedSlot> slots;
  // Racecheck.
  bool racecheck = false;
  uint32_t epoch = 0;  // current barrier epoch; shadow cells from older epochs are stale
  std::vector<ShadowCell> shadow;
  int n_preempt = 0;
  std::vector<std::string> races;
  size_t n_races = 0;
  // The scheduler's own stack, for AddressSanitizer's fiber annotations.
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;
  void* sched_fake_stack = nullptr;
  // First error; set once, then every fiber is unwound.
  std::string error;
  bool failed = false;
};

extern thread_local ThreadState* tls_thread;

// ---- scheduler (scheduler.cc) -------------------------------------------------------------
// Suspends the running thread until the scheduler resumes it; throws AbortThread when its
// block is being aborted.
void yield_to_scheduler(ThreadState& t);
void make_runnable(BlockState& b, ThreadState& t);
// Records the block's first error; the running thread then unwinds.
[[noreturn]] void fail(ThreadState& t, const std::string& message);
// Records an error without unwinding (for code that is not running in a fiber).
void record_error(BlockState& b, const std::string& message);
std::string describe_thread(const ThreadState& t);
std::string describe_block(const BlockState& b);
std::string describe_loc(const Loc& loc);

// ---- warp collectives (warp.cc) -----------------------------------------------------------
// Arrives at a warp collective; returns once resolver has run for the whole mask.
void warp_collective(const char* name, WarpResolver resolver, unsigned mask, void* data,
                     const Loc& loc);
// Called when a thread exits: a collective still waiting for it can never complete.
void check_exit_against_warp(ThreadState& t);

// ---- racecheck (race_detector.cc) ---------------------------------------------------------
void race_access(ThreadState& t, const void* addr, size_t bytes, bool is_write);
bool in_shared(const BlockState& b, const void* addr, size_t bytes);

// ---- cp.async (cp_async.cc) ---------------------------------------------------------------
void cp_async_complete_all(ThreadState& t);

}  // namespace simt::emu
