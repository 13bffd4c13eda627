#include "common/dtype.h"

#include <cmath>

namespace moeserve {

int dtype_bits(DType t) {
  switch (t) {
    case DType::kF32: return 32;
    case DType::kBF16: return 16;
    case DType::kF16: return 16;
    case DType::kFP8E4M3: return 8;
    case DType::kI8: return 8;
    case DType::kI32: return 32;
    case DType::kI64: return 64;
    case DType::kI4: return 4;
  }
  return 0;
}

int64_t dtype_bytes(DType t, int64_t n) { return (n * dtype_bits(t) + 7) / 8; }

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kFP8E4M3: return "F8_E4M3";
    case DType::kI8: return "I8";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
    case DType::kI4: return "I4";
  }
  return "?";
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16, DType::kFP8E4M3, DType::kI8, DType::kI32,
                  DType::kI64, DType::kI4}) {
    if (name == dtype_name(t)) return t;
  }
  return std::nullopt;
}

float f16_to_f32(uint16_t v) {
  const uint32_t sign = (v >> 15) & 1u;
  const uint32_t exp = (v >> 10) & 0x1fu;
  const uint32_t man = v & 0x3ffu;
  float mag;
  if (exp == 0) {
    mag = std::ldexp(static_cast<float>(man), -24);
  } else if (exp == 31) {
    mag = man ? NAN : INFINITY;
  } else {
    mag = std::ldexp(static_cast<float>(man | 0x400u), static_cast<int>(exp) - 25);
  }
  return sign ? -mag : mag;
}

uint16_t f32_to_f16(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000u : 0u;
  if (std::isnan(f)) return sign | 0x7e00u;
  float a = std::fabs(f);
  if (a >= 65520.0f) return sign | 0x7c00u;  // rounds to infinity
  if (a < std::ldexp(1.0f, -14)) {
    // Subnormal: units of 2^-24, rint rounds half to even.
    return sign | static_cast<uint16_t>(std::nearbyint(std::ldexp(a, 24)));
  }
  int e;
  float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  // 11 significant bits: scale so that the integer part holds them.
  uint32_t q = static_cast<uint32_t>(std::nearbyint(std::ldexp(m, 11)));
  if (q == 2048) {
    q = 1024;
    ++e;
  }
  const uint32_t biased = static_cast<uint32_t>(e - 1 + 15);
  if (biased >= 31) return sign | 0x7c00u;
  return sign | static_cast<uint16_t>((biased << 10) | (q & 0x3ffu));
}

float fp8e4m3_to_f32(uint8_t v) {
  const uint32_t sign = v >> 7;
  const uint32_t exp = (v >> 3) & 0xfu;
  const uint32_t man = v & 0x7u;
  float mag;
  if (exp == 15 && man == 7) {
    mag = NAN;
  } else if (exp == 0) {
    mag = std::ldexp(static_cast<float>(man), -9);  // subnormal: man/8 * 2^-6
  } else {
    mag = std::ldexp(static_cast<float>(man | 8u), static_cast<int>(exp) - 10);
  }
  return sign ? -mag : mag;
}

uint8_t f32_to_fp8e4m3(float f) {
  const uint8_t sign = std::signbit(f) ? 0x80u : 0u;
  if (std::isnan(f)) return sign | 0x7fu;
  float a = std::fmin(std::fabs(f), 448.0f);
  if (a < std::ldexp(1.0f, -6)) {
    return sign |
           static_cast<uint8_t>(std::nearbyint(std::ldexp(a, 9)));  // may round to 8 = min normal
  }
  int e;
  float m = std::frexp(a, &e);
  uint32_t q = static_cast<uint32_t>(std::nearbyint(std::ldexp(m, 4)));  // 4 significant bits
  if (q == 16) {
    q = 8;
    ++e;
  }
  const uint32_t biased = static_cast<uint32_t>(e - 1 + 7);
  uint8_t out = static_cast<uint8_t>((biased << 3) | (q & 7u));
  if (out > 0x7eu) out = 0x7eu;  // 448 is the largest finite value
  return sign | out;
}

}  // namespace moeserve
