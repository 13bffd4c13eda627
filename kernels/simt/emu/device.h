// CUDA device builtins for kernel source compiled as plain C++ by the host compiler: the
// thread/block/grid indices, barriers, warp collectives, atomics and math intrinsics, with
// CUDA's names, so kernel source reads the same as on the GPU. Everything that switches
// fibers or touches shared state is out of line in the emulator library, which is not
// instrumented for racecheck (so its own accesses are never reported).
#pragma once

// Every CUDA header first: the index macros below would break their declarations.
#include <driver_types.h>
#include <vector_functions.h>
#include <vector_types.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

namespace simt::emu {

// The part of a thread's state inline device code reads. Set before each fiber resumes.
struct ThreadView {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};
extern thread_local ThreadView* tls_view;

using Loc = std::source_location;

enum class BarrierReduce : uint8_t { kNone, kCount, kAnd, kOr };
int syncthreads_reduce(BarrierReduce reduce, int pred, const Loc& loc);
void syncwarp(unsigned mask, const Loc& loc);

enum class ShflMode : uint8_t { kIdx, kUp, kDown, kXor };
uint64_t shfl(unsigned mask, ShflMode mode, uint64_t value, int b, int width, const Loc& loc);
unsigned ballot(unsigned mask, int pred, const Loc& loc);
enum class WarpReduce : uint8_t { kAddU, kMinU, kMaxU, kAddS, kMinS, kMaxS };
uint32_t warp_reduce(unsigned mask, WarpReduce op, uint32_t value, const Loc& loc);
// Lanes of the mask whose value equals the calling lane's; *all_equal when every lane matches.
unsigned match(unsigned mask, uint64_t value, bool* all_equal, const Loc& loc);
unsigned active_mask();

void* shared_slot(const void* tag, size_t bytes, size_t align, const char* name);
void* dynamic_shared();

template <typename T>
T shfl_typed(unsigned mask, ShflMode mode, T var, int b, int width, const Loc& loc) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of <= 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &var, sizeof(T));
  bits = shfl(mask, mode, bits, b, width, loc);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

}  // namespace simt::emu

// ---- indices ----------------------------------------------------------------------------------
// Macros because CUDA spells them as variables; each reads the running fiber's view.
#define threadIdx (::simt::emu::tls_view->thread_idx)
#define blockIdx (::simt::emu::tls_view->block_idx)
#define blockDim (::simt::emu::tls_view->block_dim)
#define gridDim (::simt::emu::tls_view->grid_dim)
#define warpSize 32

#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
#ifndef __restrict__
#define __restrict__ __restrict
#endif

// ---- barriers and warp collectives ------------------------------------------------------------
// The source location tells barriers at different call sites apart (divergent code).
inline void __syncthreads(const std::source_location& loc = std::source_location::current()) {
  ::simt::emu::syncthreads_reduce(::simt::emu::BarrierReduce::kNone, 0, loc);
}
inline int __syncthreads_count(int pred,
                               const std::source_location& loc = std::source_location::current()) {
  return ::simt::emu::syncthreads_reduce(::simt::emu::BarrierReduce::kCount, pred, loc);
}
inline int __syncthreads_and(int pred,
                             const std::source_location& loc = std::source_location::current()) {
  return ::simt::emu::syncthreads_reduce(::simt::emu::BarrierReduce::kAnd, pred, loc);
}
inline int __syncthreads_or(int pred,
                            const std::source_location& loc = std::source_location::current()) {
  return ::simt::emu::syncthreads_reduce(::simt::emu::BarrierReduce::kOr, pred, loc);
}
inline void __syncwarp(unsigned mask = 0xffffffffu,
                       const std::source_location& loc = std::source_location::current()) {
  ::simt::emu::syncwarp(mask, loc);
}

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32,
              const std::source_location& loc = std::source_location::current()) {
  return ::simt::emu::shfl_typed(mask, ::simt::emu::ShflMode::kIdx, var, src_lane, width, loc);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32,
                 const std::source_location& loc = std::source_location::current()) {
  return ::simt::emu::shfl_typed(mask, ::simt::emu::ShflMode::kUp, var, static_cast<int>(delta),
                                 width, loc);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
                   const std::source_location& loc = std::source_location::current()) {
  return ::simt::emu::shfl_typed(mask, ::simt::emu::ShflMode::kDown, var, static_cast<int>(delta),
                                 width, loc);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32,
                  const std::source_location& loc = std::source_location::current()) {
  return ::simt::emu::shfl_typed(mask, ::simt::emu::ShflMode::kXor, var, lane_mask, width, loc);
}
inline unsigned __ballot_sync(unsigned mask, int pred,
                              const std::source_location& loc = std::source_location::current()) {
  return ::simt::emu::ballot(mask, pred, loc);
}
inline int __any_sync(unsigned mask, int pred,
                      const std::source_location& loc = std::source_location::current()) {
  return ::simt::emu::ballot(mask, pred, loc) != 0;
}
inline int __all_sync(unsigned mask, int pred,
                      const std::source_location& loc = std::source_location::current()) {
  return ::simt::emu::ballot(mask, !pred, loc) == 0;  // no lane of the mask has pred false
}
inline unsigned __activemask() { return ::simt::emu::active_mask(); }

// sm_80 warp reductions and sm_70 match: warp collectives like the shuffles.
inline unsigned __reduce_add_sync(
    unsigned mask, unsigned v, const std::source_location& loc = std::source_location::current()) {
  return ::simt::emu::warp_reduce(mask, ::simt::emu::WarpReduce::kAddU, v, loc);
}
inline unsigned __reduce_min_sync(
    unsigned mask, unsigned v, const std::source_location& loc = std::source_location::current()) {
  return ::simt::emu::warp_reduce(mask, ::simt::emu::WarpReduce::kMinU, v, loc);
}
inline unsigned __reduce_max_sync(
    unsigned mask, unsigned v, const std::source_location& loc = std::source_location::current()) {
  return ::simt::emu::warp_reduce(mask, ::simt::emu::WarpReduce::kMaxU, v, loc);
}
inline int __reduce_add_sync(unsigned mask, int v,
                             const std::source_location& loc = std::source_location::current()) {
  return static_cast<int>(::simt::emu::warp_reduce(mask, ::simt::emu::WarpReduce::kAddS,
                                                   static_cast<uint32_t>(v), loc));
}
inline int __reduce_min_sync(unsigned mask, int v,
                             const std::source_location& loc = std::source_location::current()) {
  return static_cast<int>(::simt::emu::warp_reduce(mask, ::simt::emu::WarpReduce::kMinS,
                                                   static_cast<uint32_t>(v), loc));
}
inline int __reduce_max_sync(unsigned mask, int v,
                             const std::source_location& loc = std::source_location::current()) {
  return static_cast<int>(::simt::emu::warp_reduce(mask, ::simt::emu::WarpReduce::kMaxS,
                                                   static_cast<uint32_t>(v), loc));
}
template <typename T>
unsigned __match_any_sync(unsigned mask, T value,
                          const std::source_location& loc = std::source_location::current()) {
  static_assert(std::is_integral_v<T> || std::is_floating_point_v<T>, "match of a scalar");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  return ::simt::emu::match(mask, bits, nullptr, loc);
}
template <typename T>
unsigned __match_all_sync(unsigned mask, T value, int* pred,
                          const std::source_location& loc = std::source_location::current()) {
  static_assert(std::is_integral_v<T> || std::is_floating_point_v<T>, "match of a scalar");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bool all = false;
  const unsigned m = ::simt::emu::match(mask, bits, &all, loc);
  *pred = all;
  return all ? m : 0u;
}

// Host fences (out of line: GCC's -fsanitize=thread rejects inline fences).
void __threadfence_block();
void __threadfence();
void __threadfence_system();

// ---- atomics (global or shared; real atomics, since blocks run on several OS threads) --------
float atomicAdd(float* address, float val);
double atomicAdd(double* address, double val);
int atomicAdd(int* address, int val);
unsigned atomicAdd(unsigned* address, unsigned val);
unsigned long long atomicAdd(unsigned long long* address, unsigned long long val);
int atomicSub(int* address, int val);
unsigned atomicSub(unsigned* address, unsigned val);
int atomicMax(int* address, int val);
unsigned atomicMax(unsigned* address, unsigned val);
unsigned long long atomicMax(unsigned long long* address, unsigned long long val);
int atomicMin(int* address, int val);
unsigned atomicMin(unsigned* address, unsigned val);
unsigned long long atomicMin(unsigned long long* address, unsigned long long val);
int atomicCAS(int* address, int compare, int val);
unsigned atomicCAS(unsigned* address, unsigned compare, unsigned val);
unsigned long long atomicCAS(unsigned long long* address, unsigned long long compare,
                             unsigned long long val);
int atomicExch(int* address, int val);
unsigned atomicExch(unsigned* address, unsigned val);
float atomicExch(float* address, float val);
int atomicAnd(int* address, int val);
int atomicOr(int* address, int val);
int atomicXor(int* address, int val);
unsigned atomicAnd(unsigned* address, unsigned val);
unsigned atomicOr(unsigned* address, unsigned val);
unsigned atomicXor(unsigned* address, unsigned val);

// ---- math intrinsics --------------------------------------------------------------------------
// Fast-math intrinsics get the accurate libm result: within the GPU intrinsic's documented error.
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanf(float x) { return std::tan(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __fmaf_rn(float x, float y, float z) { return std::fma(x, y, z); }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
  return (x >> 16) | (x << 16);
}
// Byte i of the result is byte (s >> 4i) & 7 of the 8-byte value y:x.
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const uint64_t v = uint64_t{y} << 32 | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i)
    r |= static_cast<unsigned>((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return r;
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  return static_cast<unsigned>(((uint64_t{hi} << 32 | lo) << (shift & 31)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  return static_cast<unsigned>((uint64_t{hi} << 32 | lo) >> (shift & 31));
}
inline unsigned __umulhi(unsigned x, unsigned y) {
  return static_cast<unsigned>((uint64_t{x} * y) >> 32);
}
inline int __mulhi(int x, int y) { return static_cast<int>((int64_t{x} * y) >> 32); }
// Four-way byte dot product with 32-bit accumulate (wrapping), as dp4a.
inline int __dp4a(int a, int b, int c) {
  uint32_t acc = static_cast<uint32_t>(c);
  for (int i = 0; i < 4; ++i) {
    acc += static_cast<uint32_t>(static_cast<int8_t>(a >> (8 * i)) *
                                 static_cast<int8_t>(b >> (8 * i)));
  }
  return static_cast<int>(acc);
}
inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) {
  for (int i = 0; i < 4; ++i) c += ((a >> (8 * i)) & 0xff) * ((b >> (8 * i)) & 0xff);
  return c;
}
template <typename T>
T __ldg(const T* p) {
  return *p;
}
