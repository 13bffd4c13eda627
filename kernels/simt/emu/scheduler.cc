// Runs one block: each CUDA thread is a Boost.Context fiber on this OS thread. Threads run
// until they reach a barrier, a warp collective or the end of the kernel; the scheduler then
// resumes the next runnable one (in linear order, or at random in random mode). A block that
// can make no progress while some threads still wait is an error, never a hang.
#include "kernels/simt/emu/scheduler.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "kernels/simt/emu/block_state.h"
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define SIMT_ASAN 1
#endif

namespace simt::emu {

thread_local ThreadView* tls_view = nullptr;
thread_local ThreadState* tls_thread = nullptr;

namespace {

// Fiber stacks are reused across blocks; AddressSanitizer frames need more room.
#if defined(SIMT_ASAN)
constexpr size_t kStackBytes = 256 * 1024;
#else
constexpr size_t kStackBytes = 64 * 1024;
#endif
constexpr size_t kGuardBytes = 4096;

void asan_start_switch(void** fake_stack_save, const void* bottom, size_t size) {
#if defined(SIMT_ASAN)
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
  (void)fake_stack_save, (void)bottom, (void)size;
#endif
}
void asan_finish_switch(void* fake_stack_save, const void** bottom_old, size_t* size_old) {
#if defined(SIMT_ASAN)
  __sanitizer_finish_switch_fiber(fake_stack_save, bottom_old, size_old);
#else
  (void)fake_stack_save, (void)bottom_old, (void)size_old;
#endif
}

// Hands out preallocated stacks to boost::context::fiber; releasing one is a no-op.
struct PoolStack {
  void* base;
  size_t size;
  boost::context::stack_context allocate() {
    boost::context::stack_context sc;
    sc.size = size;
    sc.sp = static_cast<char*>(base) + size;
    return sc;
  }
  void deallocate(boost::context::stack_context&) noexcept {}
};

void fiber_main(ThreadState& t) {
  BlockState& b = *t.block;
  try {
    if (!t.aborting) {
      b.plan->thunk.invoke(b.plan->thunk.kernel, b.plan->thunk.params);
      cp_async_complete_all(t);
      t.status = ThreadStatus::kExited;
      b.warps[t.warp].exited |= 1u << t.lane;
      ++b.n_exited;
      if (b.n_at_barrier > 0) {
        record_error(b, describe_thread(t) + " exited while " + std::to_string(b.n_at_barrier) +
                            " threads wait at __syncthreads (" + describe_loc(b.barrier_loc) +
                            "): a barrier not reached by every thread of the block");
      }
      check_exit_against_warp(t);
    }
  } catch (const AbortThread&) {
  } catch (const std::exception& e) {
    record_error(b, describe_thread(t) + " threw: " + e.what());
  }
  t.status = ThreadStatus::kExited;
}

}  // namespace

StackPool::~StackPool() {
  for (void* s : stacks_) munmap(s, kStackBytes + kGuardBytes);
}

void* StackPool::get(size_t i) {
  while (stacks_.size() <= i) {
    void* p = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("simt emulator: cannot map a fiber stack");
    mprotect(p, kGuardBytes, PROT_NONE);  // an overflow faults instead of corrupting a neighbour
    stacks_.push_back(p);
  }
  return static_cast<char*>(stacks_[i]) + kGuardBytes;
}

size_t StackPool::stack_bytes() { return kStackBytes; }

std::string describe_loc(const Loc& loc) {
  const char* f = loc.file_name();
  const char* slash = std::strrchr(f, '/');
  return std::string(slash ? slash + 1 : f) + ":" + std::to_string(loc.line());
}

std::string describe_block(const BlockState& b) {
  return "kernel '" + std::string(b.plan->config.kernel_name) + "' block (" +
         std::to_string(b.block_idx.x) + "," + std::to_string(b.block_idx.y) + "," +
         std::to_string(b.block_idx.z) + ")";
}

std::string describe_thread(const ThreadState& t) {
  return "thread (" + std::to_string(t.view.thread_idx.x) + "," +
         std::to_string(t.view.thread_idx.y) + "," + std::to_string(t.view.thread_idx.z) + ")";
}

void record_error(BlockState& b, const std::string& message) {
  if (b.failed) return;
  b.failed = true;
  b.error = describe_block(b) + ": " + message;
}

void fail(ThreadState& t, const std::string& message) {
  record_error(*t.block, message);
  yield_to_scheduler(t);
  throw AbortThread{};  // not reached: an aborting block never resumes a thread normally
}

void make_runnable(BlockState& b, ThreadState& t) {
  t.status = ThreadStatus::kReady;
  b.runnable.push_back(static_cast<uint16_t>(t.linear));
}

void yield_to_scheduler(ThreadState& t) {
  if (t.aborting) throw AbortThread{};
  BlockState& b = *t.block;
  asan_start_switch(&t.asan_fake_stack, b.sched_stack_bottom, b.sched_stack_size);
  t.sink = std::move(t.sink).resume();
  asan_finish_switch(t.asan_fake_stack, &b.sched_stack_bottom, &b.sched_stack_size);
  if (t.aborting) throw AbortThread{};
}

namespace {

void resume(BlockState& b, ThreadState& t) {
  t.slice_accesses = 0;
  tls_view = &t.view;
  tls_thread = &t;
  asan_start_switch(&b.sched_fake_stack, t.stack_base, t.stack_size);
  t.fiber = std::move(t.fiber).resume();
  asan_finish_switch(b.sched_fake_stack, nullptr, nullptr);
  tls_view = nullptr;
  tls_thread = nullptr;
}

void start_fiber(ThreadState& t) {
  t.started = true;
#if defined(SIMT_ASAN)
  // Frames of an earlier fiber on this stack may have left poisoned redzones behind.
  __asan_unpoison_memory_region(t.stack_base, t.stack_size);
#endif
  t.fiber = boost::context::fiber(
      std::allocator_arg, PoolStack{t.stack_base, t.stack_size},
      [&t](boost::context::fiber&& sink) {
        t.sink = std::move(sink);
        BlockState& b = *t.block;
        asan_finish_switch(nullptr, &b.sched_stack_bottom, &b.sched_stack_size);
        fiber_main(t);
        asan_start_switch(nullptr, b.sched_stack_bottom, b.sched_stack_size);
        return std::move(t.sink);
      });
}

uint16_t pop_runnable(BlockState& b) {
  if (b.runnable_head > 4096 && b.runnable_head * 2 > b.runnable.size()) {
    b.runnable.erase(b.runnable.begin(), b.runnable.begin() + static_cast<long>(b.runnable_head));
    b.runnable_head = 0;
  }
  if (!b.random) return b.runnable[b.runnable_head++];
  const size_t live = b.runnable.size() - b.runnable_head;
  const size_t pick = b.runnable_head + b.rng() % live;
  std::swap(b.runnable[pick], b.runnable[b.runnable_head]);
  return b.runnable[b.runnable_head++];
}

// No thread can run but some have not exited: name who waits where, one entry per waiting
// point (barrier or collective call site), with its first thread and how many wait there.
std::string describe_stall(const BlockState& b) {
  struct Point {
    const char* what;
    Loc loc;
    const ThreadState* first;
    unsigned n;
  };
  std::vector<Point> points;
  for (const ThreadState& t : b.threads) {
    if (t.status == ThreadStatus::kExited) continue;
    const bool at_barrier = t.status == ThreadStatus::kAtBarrier;
    const char* what = at_barrier ? "__syncthreads" : t.warp_op_name;
    const Loc& loc = at_barrier ? t.barrier_loc : t.warp_op_loc;
    bool found = false;
    for (Point& p : points) {
      if (p.what == what && p.loc.line() == loc.line() && p.loc.file_name() == loc.file_name()) {
        ++p.n;
        found = true;
      }
    }
    if (!found) points.push_back({what, loc, &t, 1});
  }
  std::string out = "no thread can make progress:";
  for (const Point& p : points) {
    out += " " + describe_thread(*p.first) +
           (p.n > 1 ? " and " + std::to_string(p.n - 1) + " more" : std::string()) + " waits at " +
           p.what + " (" + describe_loc(p.loc) + ");";
  }
  return out;
}

}  // namespace

void run_block(BlockState& b, StackPool& stacks) {
  // Every thread starts ready; the scheduler order decides who runs first.
  b.runnable.clear();
  b.runnable_head = 0;
  for (ThreadState& t : b.threads) {
    t.stack_base = stacks.get(t.linear);
    t.stack_size = StackPool::stack_bytes();
    start_fiber(t);
    b.runnable.push_back(static_cast<uint16_t>(t.linear));
  }
  while (!b.failed) {
    if (b.runnable_head == b.runnable.size()) {
      b.runnable.clear();
      b.runnable_head = 0;
      bool all_exited = true;
      for (const ThreadState& t : b.threads) all_exited &= t.status == ThreadStatus::kExited;
      if (!all_exited) record_error(b, describe_stall(b));
      break;
    }
    ThreadState& t = b.threads[pop_runnable(b)];
    resume(b, t);
  }
  // Unwind every suspended fiber so its stack frames are destroyed properly.
  for (ThreadState& t : b.threads) {
    if (t.fiber) {
      t.aborting = true;
      resume(b, t);
    }
    t.fiber = {};
  }
}

// ---- barriers ---------------------------------------------------------------------------------

int syncthreads_reduce(BarrierReduce reduce, int pred, const Loc& loc) {
  ThreadState& t = *tls_thread;
  BlockState& b = *t.block;
  if (b.n_exited > 0) {
    const ThreadState* gone = nullptr;
    for (const ThreadState& u : b.threads) {
      if (gone == nullptr && u.status == ThreadStatus::kExited) gone = &u;
    }
    fail(t, describe_thread(t) + " reached __syncthreads (" + describe_loc(loc) + ") after " +
                describe_thread(*gone) +
                " exited: a barrier not reached by every thread of the block");
  }
  if (b.n_at_barrier == 0) {
    b.barrier_loc = loc;
  } else if (loc.line() != b.barrier_loc.line() ||
             (loc.file_name() != b.barrier_loc.file_name() &&
              std::strcmp(loc.file_name(), b.barrier_loc.file_name()) != 0)) {
    const ThreadState* other = nullptr;
    for (const ThreadState& u : b.threads) {
      if (u.status == ThreadStatus::kAtBarrier) other = &u;
    }
    fail(t, "barrier in divergent code: " + describe_thread(t) + " at __syncthreads (" +
                describe_loc(loc) + ") while " + describe_thread(*other) +
                " waits at __syncthreads (" + describe_loc(b.barrier_loc) + ")");
  }
  t.status = ThreadStatus::kAtBarrier;
  t.barrier_loc = loc;
  t.barrier_reduce = reduce;
  t.barrier_pred = pred != 0;
  if (++b.n_at_barrier == b.n_threads) {
    int count = 0;
    for (const ThreadState& u : b.threads) count += u.barrier_pred;
    for (ThreadState& u : b.threads) {
      switch (u.barrier_reduce) {
        case BarrierReduce::kNone: u.barrier_result = 0; break;
        case BarrierReduce::kCount: u.barrier_result = count; break;
        case BarrierReduce::kAnd: u.barrier_result = count == static_cast<int>(b.n_threads); break;
        case BarrierReduce::kOr: u.barrier_result = count > 0; break;
      }
      make_runnable(b, u);
    }
    b.n_at_barrier = 0;
    ++b.epoch;  // accesses before and after a barrier never race
  }
  yield_to_scheduler(t);
  return t.barrier_result;
}

// ---- shared memory ----------------------------------------------------------------------------

void* shared_slot(const void* tag, size_t bytes, size_t align, const char* name) {
  ThreadState& t = *tls_thread;
  BlockState& b = *t.block;
  for (const SharedSlot& s : b.slots) {
    if (s.tag == tag) return b.arena.data() + s.offset;
  }
  const size_t offset = (b.dynamic_bytes + b.static_used + align - 1) / align * align;
  if (offset + bytes > b.arena.size()) {
    fail(t, "static shared memory exceeds 48 KiB at '" + std::string(name) + "'");
  }
  b.static_used = offset + bytes - b.dynamic_bytes;
  b.slots.push_back({tag, offset, bytes, name});
  return b.arena.data() + offset;
}

void* dynamic_shared() { return tls_thread->block->arena.data(); }

unsigned active_mask() {
  const ThreadState& t = *tls_thread;
  const WarpState& w = t.block->warps[t.warp];
  return w.existing & ~w.exited;
}

}  // namespace simt::emu
