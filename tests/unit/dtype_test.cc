// Scalar conversions (BF16, F16, FP8-E4M3 ↔ F32) against references written
// here: decoders from the bit layout, encoders as "nearest representable
// value, ties to the even code" found by searching a table of every code.
#include "common/dtype.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace moeserve {
namespace {

uint32_t f32_bits(float f) { return std::bit_cast<uint32_t>(f); }
float bits_f32(uint32_t b) { return std::bit_cast<float>(b); }

// Fresh seed per run; printed by every failing assertion through SCOPED_TRACE.
uint64_t fresh_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) | rd();
}

// ---- independent decoders --------------------------------------------------
// IEEE-style layout with `e_bits` exponent bits and `m_bits` mantissa bits.
double decode_minifloat(uint32_t code, int e_bits, int m_bits) {
  const int bias = (1 << (e_bits - 1)) - 1;
  const uint32_t man = code & ((1u << m_bits) - 1);
  const uint32_t exp = (code >> m_bits) & ((1u << e_bits) - 1);
  const bool neg = (code >> (m_bits + e_bits)) & 1u;
  double mag = exp == 0 ? std::ldexp(static_cast<double>(man), 1 - bias - m_bits)
                        : std::ldexp(static_cast<double>(man + (1u << m_bits)),
                                     static_cast<int>(exp) - bias - m_bits);
  return neg ? -mag : mag;
}

// Positive finite codes of a format with their values, ascending.
struct CodeTable {
  std::vector<uint32_t> codes;
  std::vector<double> values;
};

CodeTable make_table(int e_bits, int m_bits, uint32_t max_finite_code) {
  CodeTable t;
  for (uint32_t c = 0; c <= max_finite_code; ++c) {
    t.codes.push_back(c);
    t.values.push_back(decode_minifloat(c, e_bits, m_bits));
  }
  return t;
}

// Nearest code to |a| (a finite, within range), ties to the even code.
uint32_t nearest_code(const CodeTable& t, double a) {
  auto it = std::lower_bound(t.values.begin(), t.values.end(), a);
  if (it == t.values.end()) return t.codes.back();
  const size_t hi = static_cast<size_t>(it - t.values.begin());
  if (hi == 0 || t.values[hi] == a) return t.codes[hi];
  const size_t lo = hi - 1;
  const double dlo = a - t.values[lo], dhi = t.values[hi] - a;
  if (dlo < dhi) return t.codes[lo];
  if (dhi < dlo) return t.codes[hi];
  return (t.codes[lo] & 1u) == 0 ? t.codes[lo] : t.codes[hi];
}

const CodeTable& f16_table() {
  static const CodeTable t = make_table(5, 10, 0x7BFF);
  return t;
}
const CodeTable& fp8_table() {
  static const CodeTable t = make_table(4, 3, 0x7E);
  return t;
}

uint16_t ref_f32_to_f16(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000u : 0u;
  const double a = std::fabs(static_cast<double>(f));
  // 65520 is halfway between 65504 and 2^16: ties-to-even rounds it up to infinity.
  if (a >= 65520.0) return sign | 0x7C00u;
  return sign | static_cast<uint16_t>(nearest_code(f16_table(), a));
}

uint8_t ref_f32_to_fp8(float f) {
  const uint8_t sign = std::signbit(f) ? 0x80u : 0u;
  const double a = std::min(std::fabs(static_cast<double>(f)), 448.0);  // saturating
  return sign | static_cast<uint8_t>(nearest_code(fp8_table(), a));
}

// BF16 is the top half of an F32: pick the nearer of truncation and truncation
// + 1 ulp, measured exactly in double, ties to the even one.
uint16_t ref_f32_to_bf16(float f) {
  const uint32_t b = f32_bits(f);
  const uint16_t lo = static_cast<uint16_t>(b >> 16);
  const uint16_t hi = static_cast<uint16_t>(lo + 1);
  const double v = std::fabs(static_cast<double>(f));
  // Magnitude of a BF16 code; the code after the largest finite one stands
  // for 2^128, so that values past max + ulp/2 round to infinity.
  auto magnitude = [](uint16_t h) {
    if ((h & 0x7FFFu) == 0x7F80u) return std::ldexp(1.0, 128);
    return std::fabs(static_cast<double>(bits_f32(static_cast<uint32_t>(h) << 16)));
  };
  const double vlo = magnitude(lo), vhi = magnitude(hi);
  const double dlo = v - vlo, dhi = vhi - v;
  if (dlo < dhi) return lo;
  if (dhi < dlo) return hi;
  return (lo & 1u) == 0 ? lo : hi;
}

// ---- FP8 E4M3 ----------------------------------------------------------------

TEST(Fp8Test, KnownValues) {
  EXPECT_EQ(f32_to_fp8e4m3(448.0f), 0x7E);
  EXPECT_EQ(fp8e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(f32_to_fp8e4m3(std::ldexp(1.0f, -9)), 0x01);
  EXPECT_EQ(fp8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(f32_to_fp8e4m3(1.0f), 0x38);
  EXPECT_EQ(fp8e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(f32_to_fp8e4m3(-1.0f), 0xB8);
  EXPECT_EQ(f32_to_fp8e4m3(std::ldexp(1.0f, -6)), 0x08);         // smallest normal
  EXPECT_EQ(fp8e4m3_to_f32(0x07), 7.0f * std::ldexp(1.0f, -9));  // largest subnormal
  EXPECT_EQ(f32_to_fp8e4m3(0.0f), 0x00);
  EXPECT_EQ(f32_to_fp8e4m3(-0.0f), 0x80);
  EXPECT_TRUE(std::isnan(fp8e4m3_to_f32(0x7F)));
  EXPECT_TRUE(std::isnan(fp8e4m3_to_f32(0xFF)));
  EXPECT_EQ(f32_to_fp8e4m3(NAN) & 0x7F, 0x7F);
}

TEST(Fp8Test, SaturatesAndRoundsHalfToEven) {
  EXPECT_EQ(f32_to_fp8e4m3(1000.0f), 0x7E);
  EXPECT_EQ(f32_to_fp8e4m3(-1e30f), 0xFE);
  EXPECT_EQ(f32_to_fp8e4m3(INFINITY), 0x7E);
  EXPECT_EQ(f32_to_fp8e4m3(464.0f), 0x7E);  // would round to 480 without saturation
  // Between 1 (0x38) and 1.125 (0x39): the midpoint goes to the even code 0x38.
  EXPECT_EQ(f32_to_fp8e4m3(1.0625f), 0x38);
  // Between 1.125 (0x39) and 1.25 (0x3A): the midpoint goes to 0x3A.
  EXPECT_EQ(f32_to_fp8e4m3(1.1875f), 0x3A);
  // Subnormal midpoints: 0.5 ulp → 0, 1.5 ulp → 2 ulp.
  EXPECT_EQ(f32_to_fp8e4m3(std::ldexp(1.0f, -10)), 0x00);
  EXPECT_EQ(f32_to_fp8e4m3(std::ldexp(3.0f, -10)), 0x02);
  // 7.5 ulp rounds up into the smallest normal.
  EXPECT_EQ(f32_to_fp8e4m3(std::ldexp(15.0f, -10)), 0x08);
}

TEST(Fp8Test, ExhaustiveDecodeEncodeRoundTrip) {
  for (int c = 0; c < 256; ++c) {
    SCOPED_TRACE(::testing::Message() << "code 0x" << std::hex << c);
    const uint8_t code = static_cast<uint8_t>(c);
    const float v = fp8e4m3_to_f32(code);
    if ((code & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(v));
      continue;
    }
    EXPECT_EQ(static_cast<double>(v), decode_minifloat(code, 4, 3));
    EXPECT_EQ(f32_to_fp8e4m3(v), code);
  }
}

TEST(Fp8Test, RandomEncodeMatchesNearestCode) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> log_mag(-12.0f, 9.5f);
  std::uniform_int_distribution<int> code(0, 0x7E);
  for (int i = 0; i < 200000; ++i) {
    float f;
    if (i % 4 == 0) {
      // Exact midpoints between neighbouring codes exercise the tie rule.
      const int c = code(rng) % 0x7E;
      f = static_cast<float>((decode_minifloat(c, 4, 3) + decode_minifloat(c + 1, 4, 3)) / 2);
    } else {
      f = std::exp2(log_mag(rng));
    }
    if (rng() & 1) f = -f;
    ASSERT_EQ(f32_to_fp8e4m3(f), ref_f32_to_fp8(f)) << "f = " << f;
  }
}

// ---- F16 ---------------------------------------------------------------------

TEST(F16Test, KnownValues) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  EXPECT_EQ(f32_to_f16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(INFINITY), 0x7C00);
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xFC00);
  EXPECT_EQ(f16_to_f32(0x7C00), INFINITY);
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
}

TEST(F16Test, RoundHalfToEven) {
  // ulp(1) = 2^-10. 1 + half ulp → 1 (even); 1 + 1.5 ulp → 1 + 2 ulp.
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(f32_to_f16(1.0f + 3.0f * std::ldexp(1.0f, -11)), 0x3C02);
  // Just above the midpoint rounds up.
  EXPECT_EQ(f32_to_f16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3C01);
  // Overflow boundary: 65519.99 stays finite, 65520 (the midpoint) becomes infinity.
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);
  // Subnormal midpoints: 0.5 ulp → 0, 1.5 ulp → 2.
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);
  // The largest subnormal plus half an ulp rounds into the smallest normal.
  EXPECT_EQ(f32_to_f16(std::ldexp(2047.0f, -25)), 0x0400);
  // Halfway across a binade edge: 2047.5 ulp below 2 → 2.0 (mantissa carries).
  EXPECT_EQ(f32_to_f16(2.0f - std::ldexp(1.0f, -11)), 0x4000);
}

TEST(F16Test, ExhaustiveDecodeEncodeRoundTrip) {
  for (uint32_t c = 0; c < 0x10000; ++c) {
    const uint16_t code = static_cast<uint16_t>(c);
    const float v = f16_to_f32(code);
    const uint32_t exp = (c >> 10) & 0x1F;
    if (exp == 0x1F) {
      if ((c & 0x3FF) != 0) {
        ASSERT_TRUE(std::isnan(v)) << std::hex << c;
      } else {
        ASSERT_EQ(v, (c & 0x8000) ? -INFINITY : INFINITY) << std::hex << c;
        ASSERT_EQ(f32_to_f16(v), code) << std::hex << c;
      }
      continue;
    }
    ASSERT_EQ(static_cast<double>(v), decode_minifloat(code, 5, 10)) << std::hex << c;
    ASSERT_EQ(f32_to_f16(v), code) << std::hex << c;
  }
}

TEST(F16Test, RandomEncodeMatchesNearestCode) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> log_mag(-26.0f, 16.5f);
  std::uniform_int_distribution<int> code(0, 0x7BFE);
  for (int i = 0; i < 200000; ++i) {
    float f;
    if (i % 4 == 0) {
      const int c = code(rng);
      f = static_cast<float>((decode_minifloat(c, 5, 10) + decode_minifloat(c + 1, 5, 10)) / 2);
    } else {
      f = std::exp2(log_mag(rng));
    }
    if (rng() & 1) f = -f;
    ASSERT_EQ(f32_to_f16(f), ref_f32_to_f16(f)) << "f = " << f;
  }
}

// ---- BF16 --------------------------------------------------------------------

TEST(Bf16Test, KnownValuesAndTies) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(f32_to_bf16(bits_f32(0x3F808000u)), 0x3F80);  // tie, even stays
  EXPECT_EQ(f32_to_bf16(bits_f32(0x3F818000u)), 0x3F82);  // tie, odd rounds up
  EXPECT_EQ(f32_to_bf16(bits_f32(0x3F808001u)), 0x3F81);  // above the tie
  EXPECT_EQ(f32_to_bf16(bits_f32(0x3F807FFFu)), 0x3F80);  // below the tie
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7F80);
  EXPECT_EQ(f32_to_bf16(bits_f32(0x7F7FFFFFu)), 0x7F80);  // FLT_MAX rounds to infinity
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  // A signalling NaN whose payload sits in the dropped bits must stay a NaN.
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(bits_f32(0x7F800001u)))));
}

TEST(Bf16Test, ExhaustiveDecodeEncodeRoundTrip) {
  for (uint32_t c = 0; c < 0x10000; ++c) {
    const float v = bf16_to_f32(static_cast<uint16_t>(c));
    ASSERT_EQ(f32_bits(v), c << 16);
    if (std::isnan(v)) {
      ASSERT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(v)))) << std::hex << c;
    } else {
      ASSERT_EQ(f32_to_bf16(v), c) << std::hex << c;
    }
  }
}

TEST(Bf16Test, RandomEncodeMatchesNearest) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 500000; ++i) {
    uint32_t b = static_cast<uint32_t>(rng());
    if (i % 4 == 0) b = (b & 0xFFFF0000u) | 0x8000u;  // exact ties
    const float f = bits_f32(b);
    if (!std::isfinite(f)) continue;
    ASSERT_EQ(f32_to_bf16(f), ref_f32_to_bf16(f)) << std::hex << "bits 0x" << b;
  }
}

// ---- sizes and names --------------------------------------------------------------

TEST(DTypeTest, BitsBytesAndNames) {
  struct Case {
    DType t;
    int bits;
    const char* name;
  };
  for (const Case& c :
       {Case{DType::kF32, 32, "F32"}, Case{DType::kBF16, 16, "BF16"}, Case{DType::kF16, 16, "F16"},
        Case{DType::kFP8E4M3, 8, "F8_E4M3"}, Case{DType::kI8, 8, "I8"},
        Case{DType::kI32, 32, "I32"}, Case{DType::kI64, 64, "I64"}, Case{DType::kI4, 4, "I4"}}) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(dtype_bits(c.t), c.bits);
    EXPECT_STREQ(dtype_name(c.t), c.name);
    ASSERT_TRUE(dtype_from_name(c.name).has_value());
    EXPECT_EQ(*dtype_from_name(c.name), c.t);
    for (int64_t n : {0, 1, 2, 3, 7, 1000, 1001}) {
      EXPECT_EQ(dtype_bytes(c.t, n), (n * c.bits + 7) / 8) << "n = " << n;
    }
  }
  EXPECT_EQ(dtype_bytes(DType::kI4, 1), 1);
  EXPECT_EQ(dtype_bytes(DType::kI4, 3), 2);
  EXPECT_EQ(dtype_bytes(DType::kI4, 4), 2);
  EXPECT_EQ(dtype_bytes(DType::kI4, 4097), 2049);
  EXPECT_FALSE(dtype_from_name("F8_E5M2").has_value());
  EXPECT_FALSE(dtype_from_name("f32").has_value());
}

}  // namespace
}  // namespace moeserve
