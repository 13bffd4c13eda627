// Small kernels that exercise one emulated builtin each (indices, barriers, shuffles, votes,
// atomics, shared memory); tests/emu/simt_basics_test.cc checks them against plain loops.
#pragma once

#include <cstdint>

#include "kernels/simt/launch_config.h"

namespace simt::test {

struct IndexParams {
  uint32_t* out;  // [n_blocks · n_threads, 12]: threadIdx, blockIdx, blockDim, gridDim
};
LaunchResult launch_index(const IndexParams& p, dim3 grid, dim3 block);

struct BarrierReduceParams {
  const int* pred;  // [n_threads] predicate per thread
  int* out;         // [n_threads, 3]: __syncthreads_count, _and, _or
};
LaunchResult launch_barrier_reduce(const BarrierReduceParams& p, unsigned n_threads);

enum class ShflKind : int { kIdx, kUp, kDown, kXor };
struct ShuffleParams {
  const int* in;  // [n_threads] value per thread
  int* out;       // [n_threads] shuffled value
  ShflKind kind;
  int b;      // source lane, delta or lane mask
  int width;  // segment width (power of two <= 32)
};
LaunchResult launch_shuffle(const ShuffleParams& p, unsigned n_threads);

struct VoteParams {
  const int* pred;  // [n_threads]
  unsigned* out;    // [n_threads, 3]: ballot, any, all over the full warp
};
LaunchResult launch_vote(const VoteParams& p, unsigned n_threads);

struct AtomicsParams {
  float* f_sum;        // [1] += 0.5 per thread
  int* i_sum;          // [1] += 1 per thread
  int* i_max;          // [1] max over global thread ids
  unsigned* cas_sum;   // [1] += thread id via an atomicCAS loop
  int* shared_counts;  // [n_blocks] per block: count of threads, summed in shared memory
};
LaunchResult launch_atomics(const AtomicsParams& p, unsigned n_blocks, unsigned n_threads);

struct ReverseParams {
  const float* in;  // [n_blocks, n] rows
  float* out;       // [n_blocks, n] each row reversed through dynamic shared memory
  int n;            // threads per block = row length
};
LaunchResult launch_reverse_dynamic(const ReverseParams& p, unsigned n_blocks, const EmuOptions* o);

struct BlockSumParams {
  const float* in;  // [n_blocks, 256]
  float* out;       // [n_blocks] row sums via a static shared tree reduction
};
LaunchResult launch_block_sum(const BlockSumParams& p, unsigned n_blocks, const EmuOptions* o);

struct BarrierLoopParams {
  int n_iterations;  // barriers per thread
  int* out;          // [1] checksum written by thread 0
};
LaunchResult launch_barrier_loop(const BarrierLoopParams& p, unsigned n_blocks, unsigned n_threads,
                                 const EmuOptions* o);

struct IntrinsicsParams {
  const uint32_t* x;  // [n_threads]
  const uint32_t* y;  // [n_threads]
  const uint32_t* s;  // [n_threads] selector / shift
  uint32_t* out;      // [n_threads, 15]: byte_perm, funnelshift_l, funnelshift_r, umulhi, mulhi,
                      // dp4a s, dp4a u, reduce add/min/max u (x), reduce add/min/max s (x),
                      // match_any (x % 5), match_all (y % 2)
};
LaunchResult launch_intrinsics(const IntrinsicsParams& p, unsigned n_threads);

struct SpinHandoffParams {
  int* out;  // [1] the value thread 1 publishes, read by thread 0 after spinning on a flag
};
// Thread 0 spins on a shared flag until thread 1 (scheduled after it) sets it.
LaunchResult launch_spin_handoff(const SpinHandoffParams& p);

}  // namespace simt::test
