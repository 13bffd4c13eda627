// kernels/rope_kv.cu (rope, kv_cache_write, rope_kv_write) under the emulator, through its
// launch function, against plain loops written here: F32 and BF16 rows and caches, strided
// heads, the 128-bit path (576-wide cache rows, 64 rope columns) and the per-pair path
// (widths and offsets that are not multiples of 8), padding slots (-1) and positions outside
// the angle table (NaN). Fresh random data each run (the seed is printed); the cache starts
// as NaN so a row the kernel fails to write cannot pass, and rows it must not write are
// checked to stay NaN. Deterministic and random schedules, racecheck on.
#include <bit>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <random>
#include <vector>

#include "kernels/rope_kv.cuh"
#include "kernels/simt/emu/grid.h"
#include <cuda_bf16.h>
#include <gtest/gtest.h>

namespace moeserve::kernels {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

uint16_t to_bf16(float v) { return std::bit_cast<uint16_t>(__float2bfloat16(v)); }
float from_bf16(uint16_t b) { return __bfloat162float(std::bit_cast<__nv_bfloat16>(b)); }

// Values of one element type behind an untyped pointer.
struct Buf {
  ElemType type;
  std::vector<float> f;
  std::vector<uint16_t> b;
  Buf(ElemType t, size_t n, float fill) : type(t), f(n, fill), b(n, to_bf16(fill)) {}
  void* ptr() { return type == ElemType::kF32 ? static_cast<void*>(f.data()) : b.data(); }
  float get(size_t i) const { return type == ElemType::kF32 ? f[i] : from_bf16(b[i]); }
  void set(size_t i, float v) {
    if (type == ElemType::kF32) {
      f[i] = v;
    } else {
      b[i] = to_bf16(v);
    }
  }
  float round(float v) const { return type == ElemType::kF32 ? v : from_bf16(to_bf16(v)); }
};

class RopeKvEmu : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    simt::EmuOptions o;
    o.racecheck = true;
    o.schedule = GetParam() == 0 ? simt::Schedule::kDeterministic : simt::Schedule::kRandom;
    o.seed = static_cast<uint64_t>(GetParam());
    simt::emu::set_default_options(o);
    const unsigned seed = std::random_device{}();
    std::cout << "seed " << seed << "\n";
    rng_.seed(seed);
  }
  void TearDown() override { simt::emu::set_default_options(simt::EmuOptions{}); }
  float uniform() { return std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng_); }

  // rope on [n, heads, width] rows (rope_begin 0, no cache) or rope_kv_write / kv_cache_write
  // on [n, width] rows into a cache of n_slots rows.
  void run(ElemType x_type, ElemType cache_type, int64_t n, int heads, int width, int rope_begin,
           int64_t head_pad, bool with_cache);

  std::mt19937 rng_;
};

void RopeKvEmu::run(ElemType x_type, ElemType cache_type, int64_t n, int heads, int width,
                    int rope_begin, int64_t head_pad, bool with_cache) {
  SCOPED_TRACE(testing::Message() << "n " << n << " heads " << heads << " width " << width
                                  << " rope_begin " << rope_begin << " pad " << head_pad << " x "
                                  << static_cast<int>(x_type) << " cache "
                                  << static_cast<int>(cache_type));
  const int64_t head_stride = width + head_pad, token_stride = heads * head_stride;
  const int half = (width - rope_begin) / 2;
  const int64_t max_pos = 50, n_slots = 2 * n + 3;
  Buf x(x_type, static_cast<size_t>(n * token_stride), kNaN);
  for (int64_t t = 0; t < n; ++t) {
    for (int h = 0; h < heads; ++h) {
      for (int c = 0; c < width; ++c) x.set(t * token_stride + h * head_stride + c, uniform());
    }
  }
  const Buf x0 = x;
  std::vector<float> cos_sin(static_cast<size_t>(max_pos * half * 2));
  for (float& v : cos_sin) v = uniform();
  std::vector<int32_t> pos(static_cast<size_t>(n)), slot(static_cast<size_t>(n));
  std::vector<int32_t> free_slots(static_cast<size_t>(n_slots));
  for (int64_t i = 0; i < n_slots; ++i) free_slots[i] = static_cast<int32_t>(i);
  std::shuffle(free_slots.begin(), free_slots.end(), rng_);
  for (int64_t t = 0; t < n; ++t) {
    pos[t] = static_cast<int32_t>(rng_() % max_pos);
    slot[t] = free_slots[t];
  }
  pos[n / 2] = static_cast<int32_t>(max_pos);  // outside the table: NaN rope columns
  if (n > 2) slot[1] = -1;                     // a padding token: not written
  Buf cache(cache_type, static_cast<size_t>(n_slots * width), kNaN);

  RopeKvParams p{};
  p.x = x.ptr();
  p.x_type = x_type;
  p.token_stride = token_stride;
  p.head_stride = head_stride;
  p.n_tokens = n;
  p.n_heads = heads;
  p.width = width;
  p.rope_begin = rope_begin;
  p.positions = pos.data();
  p.cos_sin = cos_sin.data();
  p.max_pos = max_pos;
  if (with_cache) {
    p.cache = cache.ptr();
    p.cache_type = cache_type;
    p.slot_mapping = slot.data();
    p.n_slots = n_slots;
  }
  ASSERT_EQ(launch_rope_kv(p, nullptr), cudaSuccess) << simt::emu::peek_last_error().message;

  // One float multiply-add pair per value as the CPU backend computes it; the kernel may
  // contract it into an FMA on the GPU (a few ulp), so compare within 1e-6, or one BF16
  // rounding step when the row is BF16.
  const float tol = x_type == ElemType::kBF16 ? 1.0f / 128 : 1e-6f;
  std::vector<bool> written(static_cast<size_t>(n_slots), false);
  for (int64_t t = 0; t < n; ++t) {
    for (int h = 0; h < heads; ++h) {
      const int64_t base = t * token_stride + h * head_stride;
      std::vector<float> want(static_cast<size_t>(width));
      for (int c = 0; c < width; ++c) want[c] = x0.get(base + c);
      const bool in_table = pos[t] < max_pos;
      for (int i = 0; i < half; ++i) {
        const int c = rope_begin + 2 * i;
        const float a = want[c], b = want[c + 1];
        if (!in_table) {
          want[c] = want[c + 1] = kNaN;
          continue;
        }
        const float cs = cos_sin[(pos[t] * half + i) * 2],
                    sn = cos_sin[(pos[t] * half + i) * 2 + 1];
        want[c] = x.round(a * cs - b * sn);
        want[c + 1] = x.round(a * sn + b * cs);
      }
      for (int c = 0; c < width; ++c) {
        const float got = x.get(base + c);
        if (std::isnan(want[c])) {
          ASSERT_TRUE(std::isnan(got)) << "token " << t << " col " << c;
        } else {
          ASSERT_NEAR(got, want[c], tol) << "token " << t << " head " << h << " col " << c;
        }
      }
      for (int64_t c = width; c < head_stride; ++c) ASSERT_TRUE(std::isnan(x.get(base + c)));
      if (!with_cache || slot[t] < 0) continue;
      written[slot[t]] = true;
      // The cache holds the row as stored in x, rounded once more to the cache's type.
      for (int c = 0; c < width; ++c) {
        const float got = cache.get(slot[t] * width + c), stored = x.get(base + c);
        if (std::isnan(stored)) {
          ASSERT_TRUE(std::isnan(got));
        } else {
          ASSERT_EQ(got, cache.round(stored)) << "slot " << slot[t] << " col " << c;
        }
      }
    }
  }
  for (int64_t s = 0; s < n_slots; ++s) {
    if (written[s]) continue;
    for (int c = 0; c < width; ++c) ASSERT_TRUE(std::isnan(cache.get(s * width + c))) << s;
  }
}

constexpr ElemType kF = ElemType::kF32, kB = ElemType::kBF16;

TEST_P(RopeKvEmu, Rope) {
  for (ElemType t : {kF, kB}) {
    run(t, kF, 5, 16, 64, 0, 0, false);   // V2-Lite query heads, 128-bit path
    run(t, kF, 3, 128, 64, 0, 8, false);  // V3's 128 heads, strided
    run(t, kF, 4, 3, 6, 0, 1, false);     // per-pair path
  }
}

TEST_P(RopeKvEmu, KvCacheWrite) {
  for (ElemType x : {kF, kB}) {
    for (ElemType c : {kF, kB}) {
      run(x, c, 7, 1, 576, 576, 0, true);  // nothing rotated
      run(x, c, 3, 1, 13, 13, 1, true);    // per-element path
    }
  }
}

TEST_P(RopeKvEmu, RopeKvWrite) {
  for (ElemType x : {kF, kB}) {
    for (ElemType c : {kF, kB}) {
      run(x, c, 9, 1, 576, 512, 0, true);  // DeepSeek's [latent 512 | rope 64] row
      run(x, c, 5, 1, 13, 5, 3, true);     // per-pair path, odd plain part
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Schedules, RopeKvEmu, ::testing::Values(0, 1, 2));

}  // namespace
}  // namespace moeserve::kernels
