#include "kernels/simt/launch.h"
#include "kernels/simt/simt.h"
#include "kernels/simt/tests/basic_kernels.cuh"

namespace simt::test {
namespace {

__global__ void index_kernel(const IndexParams p) {
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned blk = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  uint32_t* o = p.out + (uint64_t{blk} * (blockDim.x * blockDim.y * blockDim.z) + t) * 12;
  o[0] = threadIdx.x, o[1] = threadIdx.y, o[2] = threadIdx.z;
  o[3] = blockIdx.x, o[4] = blockIdx.y, o[5] = blockIdx.z;
  o[6] = blockDim.x, o[7] = blockDim.y, o[8] = blockDim.z;
  o[9] = gridDim.x, o[10] = gridDim.y, o[11] = gridDim.z;
}

__global__ void barrier_reduce_kernel(const BarrierReduceParams p) {
  const int pred = p.pred[threadIdx.x];
  p.out[threadIdx.x * 3 + 0] = __syncthreads_count(pred);
  p.out[threadIdx.x * 3 + 1] = __syncthreads_and(pred);
  p.out[threadIdx.x * 3 + 2] = __syncthreads_or(pred);
}

__global__ void shuffle_kernel(const ShuffleParams p) {
  const int v = p.in[threadIdx.x];
  int r = 0;
  switch (p.kind) {
    case ShflKind::kIdx: r = __shfl_sync(0xffffffffu, v, p.b, p.width); break;
    case ShflKind::kUp:
      r = __shfl_up_sync(0xffffffffu, v, static_cast<unsigned>(p.b), p.width);
      break;
    case ShflKind::kDown:
      r = __shfl_down_sync(0xffffffffu, v, static_cast<unsigned>(p.b), p.width);
      break;
    case ShflKind::kXor: r = __shfl_xor_sync(0xffffffffu, v, p.b, p.width); break;
  }
  p.out[threadIdx.x] = r;
}

__global__ void vote_kernel(const VoteParams p) {
  const int pred = p.pred[threadIdx.x];
  p.out[threadIdx.x * 3 + 0] = __ballot_sync(0xffffffffu, pred);
  p.out[threadIdx.x * 3 + 1] = static_cast<unsigned>(__any_sync(0xffffffffu, pred));
  p.out[threadIdx.x * 3 + 2] = static_cast<unsigned>(__all_sync(0xffffffffu, pred));
}

__global__ void atomics_kernel(const AtomicsParams p) {
  SIMT_SHARED(int, count, );
  if (threadIdx.x == 0) count = 0;
  __syncthreads();
  const unsigned id = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(p.f_sum, 0.5f);
  atomicAdd(p.i_sum, 1);
  atomicMax(p.i_max, static_cast<int>(id));
  unsigned old = *p.cas_sum;
  for (;;) {
    const unsigned seen = atomicCAS(p.cas_sum, old, old + id);
    if (seen == old) break;
    old = seen;
  }
  atomicAdd(&count, 1);
  __syncthreads();
  if (threadIdx.x == 0) p.shared_counts[blockIdx.x] = count;
}

__global__ void reverse_dynamic_kernel(const ReverseParams p) {
  SIMT_DYNAMIC_SHARED(float, row);
  const float* in = p.in + static_cast<int64_t>(blockIdx.x) * p.n;
  row[threadIdx.x] = in[threadIdx.x];
  __syncthreads();
  p.out[static_cast<int64_t>(blockIdx.x) * p.n + threadIdx.x] = row[p.n - 1 - threadIdx.x];
}

__global__ void block_sum_kernel(const BlockSumParams p) {
  SIMT_SHARED(float, partial, [256]);
  partial[threadIdx.x] = p.in[blockIdx.x * 256 + threadIdx.x];
  __syncthreads();
  for (unsigned stride = 128; stride >= 32; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  // The last 32 partial sums: one warp, with shuffles.
  if (threadIdx.x < 32) {
    float v = partial[threadIdx.x];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (threadIdx.x == 0) p.out[blockIdx.x] = v;
  }
}

__global__ void barrier_loop_kernel(const BarrierLoopParams p) {
  int acc = 0;
  for (int i = 0; i < p.n_iterations; ++i) {
    acc += static_cast<int>(threadIdx.x) ^ i;
    __syncthreads();
  }
  if (threadIdx.x == 0) p.out[0] = acc;
}

__global__ void intrinsics_kernel(const IntrinsicsParams p) {
  const unsigned t = threadIdx.x;
  const uint32_t x = p.x[t], y = p.y[t], s = p.s[t];
  uint32_t* o = p.out + t * 15;
  o[0] = __byte_perm(x, y, s);
  o[1] = __funnelshift_l(x, y, s);
  o[2] = __funnelshift_r(x, y, s);
  o[3] = __umulhi(x, y);
  o[4] = static_cast<uint32_t>(__mulhi(static_cast<int>(x), static_cast<int>(y)));
  o[5] =
      static_cast<uint32_t>(__dp4a(static_cast<int>(x), static_cast<int>(y), static_cast<int>(s)));
  o[6] = __dp4a(x, y, s);
  o[7] = __reduce_add_sync(0xffffffffu, x);
  o[8] = __reduce_min_sync(0xffffffffu, x);
  o[9] = __reduce_max_sync(0xffffffffu, x);
  o[10] = static_cast<uint32_t>(__reduce_add_sync(0xffffffffu, static_cast<int>(x)));
  o[11] = static_cast<uint32_t>(__reduce_min_sync(0xffffffffu, static_cast<int>(x)));
  o[12] = static_cast<uint32_t>(__reduce_max_sync(0xffffffffu, static_cast<int>(x)));
  o[13] = __match_any_sync(0xffffffffu, x % 5);
  int all = -1;
  o[14] = __match_all_sync(0xffffffffu, y % 2, &all) ^ (all ? 0u : 0x5a5a5a5au);
}

__global__ void spin_handoff_kernel(const SpinHandoffParams p) {
  SIMT_SHARED(int, flag, );
  SIMT_SHARED(int, value, );
  if (threadIdx.x == 0) flag = 0;
  __syncthreads();
  if (threadIdx.x == 0) {
    while (*static_cast<volatile int*>(&flag) == 0) {
    }
    __threadfence_block();
    p.out[0] = *static_cast<volatile int*>(&value);
  } else if (threadIdx.x == 1) {
    *static_cast<volatile int*>(&value) = 42;
    __threadfence_block();
    *static_cast<volatile int*>(&flag) = 1;
  }
}

}  // namespace

LaunchResult launch_intrinsics(const IntrinsicsParams& p, unsigned n_threads) {
  return launch({.kernel_name = "intrinsics_kernel", .block = dim3(n_threads)}, intrinsics_kernel,
                p);
}

LaunchResult launch_spin_handoff(const SpinHandoffParams& p) {
  return launch({.kernel_name = "spin_handoff_kernel", .block = dim3(64)}, spin_handoff_kernel, p);
}

LaunchResult launch_index(const IndexParams& p, dim3 grid, dim3 block) {
  return launch({.kernel_name = "index_kernel", .grid = grid, .block = block}, index_kernel, p);
}

LaunchResult launch_barrier_reduce(const BarrierReduceParams& p, unsigned n_threads) {
  return launch({.kernel_name = "barrier_reduce_kernel", .block = dim3(n_threads)},
                barrier_reduce_kernel, p);
}

LaunchResult launch_shuffle(const ShuffleParams& p, unsigned n_threads) {
  return launch({.kernel_name = "shuffle_kernel", .block = dim3(n_threads)}, shuffle_kernel, p);
}

LaunchResult launch_vote(const VoteParams& p, unsigned n_threads) {
  return launch({.kernel_name = "vote_kernel", .block = dim3(n_threads)}, vote_kernel, p);
}

LaunchResult launch_atomics(const AtomicsParams& p, unsigned n_blocks, unsigned n_threads) {
  return launch({.kernel_name = "atomics_kernel", .grid = dim3(n_blocks), .block = dim3(n_threads)},
                atomics_kernel, p);
}

LaunchResult launch_reverse_dynamic(const ReverseParams& p, unsigned n_blocks,
                                    const EmuOptions* o) {
  return launch({.kernel_name = "reverse_dynamic_kernel",
                 .grid = dim3(n_blocks),
                 .block = dim3(static_cast<unsigned>(p.n)),
                 .dynamic_smem_bytes = sizeof(float) * static_cast<size_t>(p.n),
                 .emu = o},
                reverse_dynamic_kernel, p);
}

LaunchResult launch_block_sum(const BlockSumParams& p, unsigned n_blocks, const EmuOptions* o) {
  return launch(
      {.kernel_name = "block_sum_kernel", .grid = dim3(n_blocks), .block = dim3(256), .emu = o},
      block_sum_kernel, p);
}

LaunchResult launch_barrier_loop(const BarrierLoopParams& p, unsigned n_blocks, unsigned n_threads,
                                 const EmuOptions* o) {
  return launch({.kernel_name = "barrier_loop_kernel",
                 .grid = dim3(n_blocks),
                 .block = dim3(n_threads),
                 .emu = o},
                barrier_loop_kernel, p);
}

}  // namespace simt::test
