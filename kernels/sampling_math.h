// The sampler's arithmetic that the CPU backend (src/backend/sampling.cc) and the sampling
// kernel (kernels/sampling.cu) share, so that a seeded row draws the same token on both.
//
// Agreement is by construction, not by tolerance:
//  - a weight is exp((l - best) · (1 / temperature)) computed here from IEEE-rounded +, -, ×, ÷
//    only (no libm, no FMA: device code uses the _rn intrinsics, which nvcc never contracts;
//    the host build is ISO C++, where GCC does not contract either), so both sides get the
//    same bits;
//  - weights become 2^-44 fixed point, and masses are sums of those integers: integer sums
//    do not depend on the order of the reduction, so a tree on the GPU and a loop on the CPU
//    give the same totals, thresholds and cumulative masses;
//  - ranks compare one 64-bit key (value, then lower id), never float equality.
// Plain C++ with no CUDA dependency: the CPU backend includes it in every build.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MOESERVE_SAMPLING_HD __host__ __device__ __forceinline__
#else
#define MOESERVE_SAMPLING_HD inline
#endif

namespace moeserve::sampling_math {

// Weights are multiples of 2^-44: a sum over kMaxVocab tokens of weights ≤ 1 fits in 64 bits.
inline constexpr double kWeightScale = 17592186044416.0;  // 2^44
inline constexpr int64_t kMaxVocab = int64_t{1} << 20;
// exp(-31) < 2^-44: every token further below the best weighs 0 in fixed point.
inline constexpr double kMinExponent = -31.0;

MOESERVE_SAMPLING_HD double mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
MOESERVE_SAMPLING_HD double add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
MOESERVE_SAMPLING_HD double sub(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
MOESERVE_SAMPLING_HD double div(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
MOESERVE_SAMPLING_HD double to_double(uint64_t v) {
#if defined(__CUDA_ARCH__)
  return __ull2double_rn(v);
#else
  return static_cast<double>(v);  // round to nearest, as on the device
#endif
}

// exp(x) for x in [kMinExponent, 0], within a few ulp: x = k·ln2 + r (Cody–Waite, ln2's
// high part has trailing zeros so k·ln2_hi is exact), Taylor to r^13 on |r| ≤ ln2/2 (the
// first dropped term is below 2^-57), then an exact scaling by 2^k.
MOESERVE_SAMPLING_HD double exp_nonpositive(double x) {
  constexpr double kInvLn2 = 1.4426950408889634;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  const double k = floor(add(mul(x, kInvLn2), 0.5));
  const double r = sub(sub(x, mul(k, kLn2Hi)), mul(k, kLn2Lo));
  // Horner from 1/13! down to 1/1!; each coefficient is 1/n! rounded once by the compiler.
  constexpr double kInvFact[14] = {1.0,
                                   1.0,
                                   1.0 / 2,
                                   1.0 / 6,
                                   1.0 / 24,
                                   1.0 / 120,
                                   1.0 / 720,
                                   1.0 / 5040,
                                   1.0 / 40320,
                                   1.0 / 362880,
                                   1.0 / 3628800,
                                   1.0 / 39916800,
                                   1.0 / 479001600,
                                   1.0 / 6227020800.0};
  double p = kInvFact[13];
  for (int n = 12; n >= 0; --n) p = add(mul(p, r), kInvFact[n]);
  // 2^k from its bits (k ∈ [-45, 0]: a normal number), so the scaling is one exact product.
  const auto bits = static_cast<uint64_t>(1023 + static_cast<int64_t>(k)) << 52;
#if defined(__CUDA_ARCH__)
  return mul(p, __longlong_as_double(static_cast<long long>(bits)));
#else
  return mul(p, std::bit_cast<double>(bits));
#endif
}

// 1 / temperature, once per row: a multiply per token is cheaper than a divide.
MOESERVE_SAMPLING_HD double inverse_temperature(float temperature) {
  return div(1.0, static_cast<double>(temperature));
}

// The unnormalised probability of logit l relative to the best logit:
// exp((l - best) · inv_temperature) ∈ [0, 1]; 0 below exp(kMinExponent).
MOESERVE_SAMPLING_HD double weight(float l, float best, double inv_temperature) {
  const double x = mul(sub(static_cast<double>(l), static_cast<double>(best)), inv_temperature);
  return x < kMinExponent ? 0.0 : exp_nonpositive(x);
}

// floor(w · 2^44): the product by a power of two is exact.
MOESERVE_SAMPLING_HD uint64_t fixed_weight(double w) {
  return static_cast<uint64_t>(mul(w, kWeightScale));
}

// top_p keeps the shortest most-likely prefix whose fixed-point mass reaches this.
MOESERVE_SAMPLING_HD uint64_t top_p_target(float top_p, uint64_t total) {
  const auto t = static_cast<uint64_t>(ceil(mul(static_cast<double>(top_p), to_double(total))));
  return t < total ? t : total;
}

// The draw picks the first kept token, in id order, whose cumulative mass exceeds this
// (u ∈ [0, 1) is the row's Philox draw); none does only through rounding: then the last.
MOESERVE_SAMPLING_HD uint64_t draw_target(double u, uint64_t total) {
  return static_cast<uint64_t>(mul(u, to_double(total)));
}

// Order-preserving unsigned image of a float (−0 and +0 are one value, as == says).
MOESERVE_SAMPLING_HD uint32_t order_key(float v) {
  if (v == 0.0f) v = 0.0f;
#if defined(__CUDA_ARCH__)
  const uint32_t bits = __float_as_uint(v);
#else
  const uint32_t bits = std::bit_cast<uint32_t>(v);
#endif
  return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
}

// Larger key = ranked first: higher value, then lower id.
MOESERVE_SAMPLING_HD uint64_t rank_key(float v, int32_t id) {
  return (static_cast<uint64_t>(order_key(v)) << 32) | static_cast<uint32_t>(~id);
}
MOESERVE_SAMPLING_HD int32_t key_id(uint64_t key) {
  return static_cast<int32_t>(~static_cast<uint32_t>(key));
}
MOESERVE_SAMPLING_HD float key_value(uint64_t key) {
  const auto k = static_cast<uint32_t>(key >> 32);
  const uint32_t bits = (k & 0x80000000u) != 0 ? k & 0x7fffffffu : ~k;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  return std::bit_cast<float>(bits);
#endif
}

}  // namespace moeserve::sampling_math
