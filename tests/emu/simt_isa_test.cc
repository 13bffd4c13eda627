// mma.sync, ldmatrix and cp.async under the emulator against the PTX ISA's fragment tables,
// written out here on their own (PTX ISA 9.7.14.5 "Matrix Fragments for mma.m16n8k16" and
// "... mma.m16n8k32", 9.7.14.5.15 "ldmatrix"), not taken from the emulator. Inputs are small
// integers, exact in every input type, so D = A·B + C is exact whatever the summation order.
#include <bit>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/simt/emu/grid.h"
#include "kernels/simt/tests/isa_kernels.cuh"
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <gtest/gtest.h>

namespace simt::test {
namespace {

struct RowCol {
  int row, col;
};

// ---- the ISA's tables ---------------------------------------------------------------------
// m16n8k16, .f16/.bf16 A: four .b32 registers holding a0..a7, two elements each.
RowCol a_k16(int lane, int i) {
  const int group_id = lane >> 2, thread_id_in_group = lane % 4;
  const bool upper_rows = (i >= 2 && i < 4) || i >= 6;  // a2, a3, a6, a7
  return {upper_rows ? group_id + 8 : group_id,
          thread_id_in_group * 2 + (i & 1) + (i >= 4 ? 8 : 0)};
}
// m16n8k16 B: two registers holding b0..b3 (row = k, col = n).
RowCol b_k16(int lane, int i) { return {(lane % 4) * 2 + (i & 1) + (i >= 2 ? 8 : 0), lane >> 2}; }
// m16n8k32, .s8/.e4m3 A: four registers holding a0..a15, four elements each.
RowCol a_k32(int lane, int i) {
  const int group_id = lane >> 2, thread_id_in_group = lane % 4;
  const bool lower_rows = i < 4 || (i >= 8 && i < 12);
  return {lower_rows ? group_id : group_id + 8,
          thread_id_in_group * 4 + (i & 3) + (i >= 8 ? 16 : 0)};
}
// m16n8k32 B: two registers holding b0..b7.
RowCol b_k32(int lane, int i) { return {(lane % 4) * 4 + (i & 3) + (i >= 4 ? 16 : 0), lane >> 2}; }
// C and D of both shapes: c0..c3.
RowCol cd(int lane, int i) {
  return {i < 2 ? lane >> 2 : (lane >> 2) + 8, (lane % 4) * 2 + (i & 1)};
}

uint32_t encode(MmaKind kind, int v) {
  const float f = static_cast<float>(v);
  switch (kind) {
    case MmaKind::kBf16: return std::bit_cast<uint16_t>(__float2bfloat16(f));
    case MmaKind::kF16: return std::bit_cast<uint16_t>(__float2half(f));
    case MmaKind::kS8: return static_cast<uint8_t>(static_cast<int8_t>(v));
    case MmaKind::kE4m3: return __nv_fp8_e4m3(f).__x;
  }
  return 0;
}

void check_mma(MmaKind kind, uint32_t seed) {
  const bool k32 = kind == MmaKind::kS8 || kind == MmaKind::kE4m3;
  const int n_k = k32 ? 32 : 16;
  std::mt19937 rng(seed);
  const auto small = [&] { return static_cast<int>(rng() % 17) - 8; };
  std::vector<int> a(16 * n_k), b(n_k * 8), c(16 * 8);
  for (int& v : a) v = small();
  for (int& v : b) v = small();
  for (int& v : c) v = static_cast<int>(rng() % 201) - 100;

  std::vector<uint32_t> ra(32 * 4, 0), rb(32 * 2, 0), rc(32 * 4, 0), rd(32 * 4, 0xdeadbeef);
  for (int lane = 0; lane < 32; ++lane) {
    const int per_reg = k32 ? 4 : 2, bits = 32 / per_reg;
    for (int i = 0; i < 4 * per_reg; ++i) {
      const RowCol rc_ = k32 ? a_k32(lane, i) : a_k16(lane, i);
      ra[lane * 4 + i / per_reg] |= encode(kind, a[rc_.row * n_k + rc_.col])
                                    << (bits * (i % per_reg));
    }
    for (int i = 0; i < 2 * per_reg; ++i) {
      const RowCol rc_ = k32 ? b_k32(lane, i) : b_k16(lane, i);
      rb[lane * 2 + i / per_reg] |= encode(kind, b[rc_.row * 8 + rc_.col])
                                    << (bits * (i % per_reg));
    }
    for (int i = 0; i < 4; ++i) {
      const int v = c[cd(lane, i).row * 8 + cd(lane, i).col];
      rc[lane * 4 + i] = kind == MmaKind::kS8 ? static_cast<uint32_t>(v)
                                              : std::bit_cast<uint32_t>(static_cast<float>(v));
    }
  }
  const LaunchResult r = launch_mma_probe({kind, ra.data(), rb.data(), rc.data(), rd.data()});
  ASSERT_TRUE(r.ok()) << r.message;
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 4; ++i) {
      const RowCol o = cd(lane, i);
      int64_t want = c[o.row * 8 + o.col];
      for (int k = 0; k < n_k; ++k) want += int64_t{a[o.row * n_k + k]} * b[k * 8 + o.col];
      const uint32_t got = rd[lane * 4 + i];
      if (kind == MmaKind::kS8) {
        ASSERT_EQ(static_cast<int32_t>(got), want) << "lane " << lane << " d" << i;
      } else {
        ASSERT_EQ(std::bit_cast<float>(got), static_cast<float>(want))
            << "lane " << lane << " d" << i;
      }
    }
  }
}

class SimtIsa : public ::testing::Test {
 protected:
  void SetUp() override {
    EmuOptions o;
    o.racecheck = true;
    emu::set_default_options(o);
  }
};

TEST_F(SimtIsa, MmaM16n8k16Bf16) {
  for (uint32_t s = 1; s <= 3; ++s) check_mma(MmaKind::kBf16, s);
}
TEST_F(SimtIsa, MmaM16n8k16F16) {
  for (uint32_t s = 1; s <= 3; ++s) check_mma(MmaKind::kF16, s);
}
TEST_F(SimtIsa, MmaM16n8k32S8) {
  for (uint32_t s = 1; s <= 3; ++s) check_mma(MmaKind::kS8, s);
}
TEST_F(SimtIsa, MmaM16n8k32E4m3) {
  for (uint32_t s = 1; s <= 3; ++s) check_mma(MmaKind::kE4m3, s);
}

TEST_F(SimtIsa, MmaS8AccumulatorWrapsWithoutSatfinite) {
  // c = INT32_MAX, one product 1·1: s32 addition wraps (no .satfinite).
  std::vector<uint32_t> ra(128, 0), rb(64, 0), rc(128, 0x7fffffffu), rd(128, 0);
  ra[0] = 1;  // lane 0 a0: A[0][0] = 1
  rb[0] = 1;  // lane 0 b0: B[0][0] = 1
  ASSERT_TRUE(launch_mma_probe({MmaKind::kS8, ra.data(), rb.data(), rc.data(), rd.data()}).ok());
  EXPECT_EQ(rd[0], 0x80000000u);  // lane 0 d0 = D[0][0]
  EXPECT_EQ(rd[1], 0x7fffffffu);  // D[0][1] has no product
}

// ldmatrix: lane 8·i + r gives the address of row r of matrix i; each thread then holds, of
// each matrix, the two elements (row = lane / 4, cols 2·(lane % 4) and +1), low half first.
// With .trans it holds them of the transposed matrix.
void check_ldmatrix(int n_matrices, bool trans) {
  std::vector<uint16_t> image(64 * 8);
  for (int i = 0; i < 64 * 8; ++i) image[i] = static_cast<uint16_t>(1000 + i);
  std::vector<int> lane_row(32);
  for (int l = 0; l < 32; ++l) lane_row[l] = (l * 37 + 11) % 64;  // distinct, scattered rows
  std::vector<uint32_t> regs(32 * 4, 0);
  const LaunchResult r =
      launch_ldmatrix_probe({image.data(), lane_row.data(), n_matrices, trans, regs.data()});
  ASSERT_TRUE(r.ok()) << r.message;
  const auto element = [&](int matrix, int row, int col) {
    return image[lane_row[matrix * 8 + row] * 8 + col];
  };
  for (int lane = 0; lane < 32; ++lane) {
    for (int m = 0; m < n_matrices; ++m) {
      const int row = lane / 4, col = 2 * (lane % 4);
      const uint16_t lo = trans ? element(m, col, row) : element(m, row, col);
      const uint16_t hi = trans ? element(m, col + 1, row) : element(m, row, col + 1);
      ASSERT_EQ(regs[lane * 4 + m], uint32_t{lo} | uint32_t{hi} << 16)
          << "x" << n_matrices << (trans ? ".trans" : "") << " lane " << lane << " r" << m;
    }
  }
}

TEST_F(SimtIsa, LdmatrixX1) { check_ldmatrix(1, false); }
TEST_F(SimtIsa, LdmatrixX2) { check_ldmatrix(2, false); }
TEST_F(SimtIsa, LdmatrixX4) { check_ldmatrix(4, false); }
TEST_F(SimtIsa, LdmatrixX1Trans) { check_ldmatrix(1, true); }
TEST_F(SimtIsa, LdmatrixX2Trans) { check_ldmatrix(2, true); }
TEST_F(SimtIsa, LdmatrixX4Trans) { check_ldmatrix(4, true); }

// cp.async: after wait_group 1 the older of two groups is complete (copied bytes, then zeros
// up to cp-size); after wait_group 0 both are. The emulator completes a group at the latest
// moment the ISA allows, so the newer group still shows the poison (0xff) after wait_group 1.
void check_cp_async(int cp_bytes, int src_bytes, bool cache_global) {
  const unsigned n_threads = 40;
  const size_t half = n_threads * 16;
  std::vector<uint8_t> src(2 * half);
  std::mt19937 rng(static_cast<uint32_t>(cp_bytes * 100 + src_bytes));
  for (uint8_t& v : src) v = static_cast<uint8_t>(rng() % 255);  // never the poison byte
  std::vector<uint8_t> w1(2 * half, 0x11), w0(2 * half, 0x11);
  const LaunchResult r = launch_cp_async_probe(
      {src.data(), cp_bytes, src_bytes, cache_global, w1.data(), w0.data()}, n_threads);
  ASSERT_TRUE(r.ok()) << r.message;
  for (size_t t = 0; t < n_threads; ++t) {
    for (size_t i = 0; i < 16; ++i) {
      const auto want = [&](size_t at) -> uint8_t {
        if (i >= static_cast<size_t>(cp_bytes)) return 0xff;  // beyond the copy: untouched
        return i < static_cast<size_t>(src_bytes) ? src[at] : 0;
      };
      const size_t first = t * 16 + i, second = half + t * 16 + i;
      ASSERT_EQ(w1[first], want(first)) << "thread " << t << " byte " << i;
      ASSERT_EQ(w1[second], 0xff) << "newer group visible before its wait";
      ASSERT_EQ(w0[first], want(first));
      ASSERT_EQ(w0[second], want(second));
    }
  }
}

TEST_F(SimtIsa, CpAsyncCa4) { check_cp_async(4, 4, false); }
TEST_F(SimtIsa, CpAsyncCa8) { check_cp_async(8, 8, false); }
TEST_F(SimtIsa, CpAsyncCa16) { check_cp_async(16, 16, false); }
TEST_F(SimtIsa, CpAsyncCg16) { check_cp_async(16, 16, true); }
TEST_F(SimtIsa, CpAsyncZeroFill) {
  check_cp_async(16, 5, false);
  check_cp_async(8, 0, false);
  check_cp_async(16, 0, true);
}

}  // namespace
}  // namespace simt::test
