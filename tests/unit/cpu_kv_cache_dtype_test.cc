// A BF16 KV cache: kv_cache_write rounds each row to BF16 (round to nearest
// even, as f32_to_bf16), and mla_attention over it equals, bit for bit,
// attention over an F32 cache holding those rounded values (the CPU op widens
// BF16 exactly and then runs the same F32 arithmetic).
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "common/dtype.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

Tensor i32(const std::vector<int32_t>& v, std::vector<int64_t> shape) {
  Tensor t = Tensor::empty_host(DType::kI32, std::move(shape));
  std::copy(v.begin(), v.end(), t.data<int32_t>());
  return t;
}

TEST(CpuKvCacheDtypeTest, Bf16CacheRoundsOnWriteAndAttendsLikeF32OfTheRoundedRows) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  CpuBackend be(2);
  const int64_t latent = 48, rope = 16, width = latent + rope, block = 4, n_blocks = 8;
  const int64_t n_ctx = 13, heads = 3;
  // Rows for positions 0..n_ctx-1 of one sequence, scattered over blocks 5, 2, 7, 0.
  const std::vector<int32_t> table = {5, 2, 7, 0};
  Tensor kv = Tensor::empty_host(DType::kF32, {n_ctx, width});
  for (int64_t i = 0; i < kv.numel(); ++i) kv.data<float>()[i] = u(rng);
  std::vector<int32_t> slots(static_cast<size_t>(n_ctx));
  for (int64_t p = 0; p < n_ctx; ++p) {
    slots[static_cast<size_t>(p)] = table[static_cast<size_t>(p / block)] * block + p % block;
  }
  Tensor bf16_cache = Tensor::empty_host(DType::kBF16, {n_blocks, block, width});
  be.kv_cache_write(kv, i32(slots, {n_ctx}), bf16_cache);
  Tensor f32_cache = Tensor::empty_host(DType::kF32, {n_blocks, block, width});
  for (int64_t p = 0; p < n_ctx; ++p) {
    for (int64_t i = 0; i < width; ++i) {
      const uint16_t want = f32_to_bf16(kv.data<float>()[p * width + i]);
      const int64_t at = slots[static_cast<size_t>(p)] * width + i;
      ASSERT_EQ(bf16_cache.data<uint16_t>()[at], want) << p << " " << i;
      f32_cache.data<float>()[at] = bf16_to_f32(want);
    }
  }
  // Queries at positions 12, 5 and 0 attend to the rows up to their own.
  const std::vector<int32_t> pos = {12, 5, 0};
  const int64_t n = static_cast<int64_t>(pos.size());
  Tensor ql = Tensor::empty_host(DType::kF32, {n, heads, latent});
  Tensor qr = Tensor::empty_host(DType::kF32, {n, heads, rope});
  for (int64_t i = 0; i < ql.numel(); ++i) ql.data<float>()[i] = u(rng);
  for (int64_t i = 0; i < qr.numel(); ++i) qr.data<float>()[i] = u(rng);
  AttentionBatch batch;
  batch.token_seq = i32({0, 0, 0}, {n});
  batch.token_pos = i32(pos, {n});
  batch.block_tables = i32(table, {1, static_cast<int64_t>(table.size())});
  batch.block_size = static_cast<int>(block);
  Tensor out_bf16 = Tensor::empty_host(DType::kF32, {n, heads, latent});
  Tensor out_f32 = Tensor::empty_host(DType::kF32, {n, heads, latent});
  be.mla_attention(ql, qr, bf16_cache, batch, 0.125f, out_bf16);
  be.mla_attention(ql, qr, f32_cache, batch, 0.125f, out_f32);
  for (int64_t i = 0; i < out_f32.numel(); ++i) {
    ASSERT_EQ(out_bf16.data<float>()[i], out_f32.data<float>()[i]) << i;
  }
  // Position 0 sees only its own row: its output is that row's latent.
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < latent; ++i) {
      EXPECT_FLOAT_EQ(out_bf16.data<float>()[(2 * heads + h) * latent + i],
                      f32_cache.data<float>()[slots[0] * width + i]);
    }
  }
}

TEST(CpuKvCacheDtypeTest, OtherCacheDtypesAreRefused) {
  CpuBackend be(1);
  Tensor kv = Tensor::empty_host(DType::kF32, {1, 8});
  Tensor cache = Tensor::empty_host(DType::kF16, {1, 4, 8});
  EXPECT_DEATH(be.kv_cache_write(kv, i32({0}, {1}), cache), "expected F32 or BF16");
}

}  // namespace
}  // namespace moeserve
