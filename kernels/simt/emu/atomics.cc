// CUDA atomics on host memory. Blocks run on several OS threads, so these are real atomics
// (relaxed, as CUDA's are). Out of line so racecheck never sees them as plain accesses.
#include <atomic>

#include "kernels/simt/emu/device.h"

namespace {

template <typename T>
T fetch_add(T* a, T v) {
  return std::atomic_ref<T>(*a).fetch_add(v, std::memory_order_relaxed);
}
template <typename T>
T fetch_sub(T* a, T v) {
  return std::atomic_ref<T>(*a).fetch_sub(v, std::memory_order_relaxed);
}
template <typename T>
T fetch_max(T* a, T v) {
  std::atomic_ref<T> r(*a);
  T old = r.load(std::memory_order_relaxed);
  while (old < v && !r.compare_exchange_weak(old, v, std::memory_order_relaxed)) {
  }
  return old;
}
template <typename T>
T fetch_min(T* a, T v) {
  std::atomic_ref<T> r(*a);
  T old = r.load(std::memory_order_relaxed);
  while (v < old && !r.compare_exchange_weak(old, v, std::memory_order_relaxed)) {
  }
  return old;
}
template <typename T>
T cas(T* a, T compare, T v) {
  std::atomic_ref<T>(*a).compare_exchange_strong(compare, v, std::memory_order_relaxed);
  return compare;  // the old value, whether or not it was replaced
}
template <typename T>
T exch(T* a, T v) {
  return std::atomic_ref<T>(*a).exchange(v, std::memory_order_relaxed);
}

}  // namespace

using ull = unsigned long long;
float atomicAdd(float* a, float v) { return fetch_add(a, v); }
double atomicAdd(double* a, double v) { return fetch_add(a, v); }
int atomicAdd(int* a, int v) { return fetch_add(a, v); }
unsigned atomicAdd(unsigned* a, unsigned v) { return fetch_add(a, v); }
ull atomicAdd(ull* a, ull v) { return fetch_add(a, v); }
int atomicSub(int* a, int v) { return fetch_sub(a, v); }
unsigned atomicSub(unsigned* a, unsigned v) { return fetch_sub(a, v); }
int atomicMax(int* a, int v) { return fetch_max(a, v); }
unsigned atomicMax(unsigned* a, unsigned v) { return fetch_max(a, v); }
ull atomicMax(ull* a, ull v) { return fetch_max(a, v); }
int atomicMin(int* a, int v) { return fetch_min(a, v); }
unsigned atomicMin(unsigned* a, unsigned v) { return fetch_min(a, v); }
ull atomicMin(ull* a, ull v) { return fetch_min(a, v); }
int atomicCAS(int* a, int c, int v) { return cas(a, c, v); }
unsigned atomicCAS(unsigned* a, unsigned c, unsigned v) { return cas(a, c, v); }
ull atomicCAS(ull* a, ull c, ull v) { return cas(a, c, v); }
int atomicExch(int* a, int v) { return exch(a, v); }
unsigned atomicExch(unsigned* a, unsigned v) { return exch(a, v); }
float atomicExch(float* a, float v) { return exch(a, v); }
int atomicAnd(int* a, int v) { return std::atomic_ref<int>(*a).fetch_and(v); }
int atomicOr(int* a, int v) { return std::atomic_ref<int>(*a).fetch_or(v); }
int atomicXor(int* a, int v) { return std::atomic_ref<int>(*a).fetch_xor(v); }
unsigned atomicAnd(unsigned* a, unsigned v) { return std::atomic_ref<unsigned>(*a).fetch_and(v); }
unsigned atomicOr(unsigned* a, unsigned v) { return std::atomic_ref<unsigned>(*a).fetch_or(v); }
unsigned atomicXor(unsigned* a, unsigned v) { return std::atomic_ref<unsigned>(*a).fetch_xor(v); }

void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
