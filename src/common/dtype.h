// Element types and scalar conversions (BF16, F16, FP8-E4M3 ↔ F32).
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace moeserve {

enum class DType : uint8_t {
  kF32,
  kBF16,
  kF16,
  kFP8E4M3,  // OCP E4M3 "fn": no infinities, 0x7F/0xFF are NaN, max 448
  kI8,
  kI32,
  kI64,
  kI4,  // two signed 4-bit values per byte, low nibble first; scaled per group
};

// Size of one element in bits (4 for kI4).
int dtype_bits(DType t);
// Bytes needed for `n` elements (rounded up for packed types).
int64_t dtype_bytes(DType t, int64_t n);
// The name used in safetensors headers ("F32", "BF16", "F8_E4M3", …).
const char* dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);

inline float bf16_to_f32(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even, NaN kept quiet.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float f16_to_f32(uint16_t v);
uint16_t f32_to_f16(float f);
float fp8e4m3_to_f32(uint8_t v);
uint8_t f32_to_fp8e4m3(float f);  // saturates to ±448, round-to-nearest-even

}  // namespace moeserve
