// cp.async under the emulator: a copy is queued when issued and performed when a
// cp.async.wait_group covers its group (or the thread exits), the latest moment the PTX ISA
// allows, so a kernel that reads the destination too early sees the poison. In random mode
// half of the copies land at issue instead, the earliest moment. For racecheck the write
// happens at issue and again on landing, so it conflicts with accesses anywhere in between
// (a stage overwritten while another warp still reads it).
#include <cstring>

#include "kernels/simt/emu/block_state.h"
#include "kernels/simt/emu/tensor_core.h"

namespace simt::emu {
namespace {

void land(ThreadState& t, CpAsyncCopy& c) {
  if (c.landed) return;
  if (c.src_bytes > 0) std::memcpy(c.dst, c.src, static_cast<size_t>(c.src_bytes));
  std::memset(static_cast<char*>(c.dst) + c.src_bytes, 0,
              static_cast<size_t>(c.bytes - c.src_bytes));
  race_access(t, c.dst, static_cast<size_t>(c.bytes), true);
  c.landed = true;
}

// Lands the oldest n_ops pending copies and drops them from the queue.
void complete(ThreadState& t, size_t n_ops) {
  for (size_t i = 0; i < n_ops; ++i) land(t, t.cp_pending[i]);
  t.cp_pending.erase(t.cp_pending.begin(), t.cp_pending.begin() + static_cast<long>(n_ops));
}

}  // namespace

void cp_async(void* dst, const void* src, int bytes, int src_bytes, const Loc& loc) {
  ThreadState& t = *tls_thread;
  const auto misaligned = [bytes](const void* p) {
    return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) != 0;
  };
  if (!in_shared(*t.block, dst, static_cast<size_t>(bytes))) {
    fail(t, describe_thread(t) + " cp.async (" + describe_loc(loc) +
                ") destination is not in the block's shared memory");
  }
  if (misaligned(dst) || misaligned(src)) {
    fail(t, describe_thread(t) + " cp.async (" + describe_loc(loc) + ") of " +
                std::to_string(bytes) + " bytes with a misaligned address");
  }
  if (src_bytes < 0 || src_bytes > bytes) {
    fail(t, describe_thread(t) + " cp.async (" + describe_loc(loc) + ") src-size " +
                std::to_string(src_bytes) + " outside [0, " + std::to_string(bytes) + "]");
  }
  race_access(t, dst, static_cast<size_t>(bytes), true);
  t.cp_pending.push_back({dst, src, bytes, src_bytes, false});
  BlockState& b = *t.block;
  if (b.random && b.rng() % 2 == 0) land(t, t.cp_pending.back());
}

void cp_async_commit() {
  ThreadState& t = *tls_thread;
  t.cp_group_end.push_back(t.cp_pending.size());
}

void cp_async_wait(int n_pending_groups) {
  ThreadState& t = *tls_thread;
  const size_t n_groups = t.cp_group_end.size();
  const auto keep = static_cast<size_t>(n_pending_groups);
  if (n_groups <= keep) return;
  const size_t n_done_groups = n_groups - keep;
  const size_t n_ops = t.cp_group_end[n_done_groups - 1];
  complete(t, n_ops);
  t.cp_group_end.erase(t.cp_group_end.begin(),
                       t.cp_group_end.begin() + static_cast<long>(n_done_groups));
  for (size_t& end : t.cp_group_end) end -= n_ops;
}

void cp_async_complete_all(ThreadState& t) {
  complete(t, t.cp_pending.size());
  t.cp_group_end.clear();
}

}  // namespace simt::emu
