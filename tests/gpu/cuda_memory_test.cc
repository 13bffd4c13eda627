// The CUDA backend's memory: one pool reserved at create() (gpu_memory_fraction
// of the device), tensors carved from it and given back when their last view
// goes, an exhausted pool refused by name, pinned staging that round-trips.
// On a GPU (label gpu) or the emulated runtime (label emu); skipped with neither.
#include <cstdint>
#include <cstring>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "common/dtype.h"
#include "common/tensor.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

constexpr double kFraction = 1.0 / 256;  // 16 MiB of the emulator's 4 GiB device

TEST(CudaMemoryTest, PoolIsTheConfiguredShareAndTensorsReturnToIt) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  auto be = CudaBackend::create(0, {.memory_fraction = kFraction});
  ASSERT_TRUE(be.ok()) << be.status();
  const int64_t capacity = (*be)->device_memory_capacity();
  EXPECT_GT(capacity, 0);
  EXPECT_EQ((*be)->device_memory_used(), 0);
  {
    const Tensor a = (*be)->alloc(DType::kBF16, {1000});  // 2000 bytes: 8 units of 256
    const Tensor b = (*be)->alloc(DType::kF32, {0});      // one unit, its own address
    EXPECT_EQ((*be)->device_memory_used(), 9 * 256);
    EXPECT_NE(a.raw(), b.raw());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.raw()) % 256, 0u);
    const Tensor view = a.slice(0, 10, 20);  // keeps a's range alive
    (void)view;
  }
  EXPECT_EQ((*be)->device_memory_used(), 0);
  // Most of the pool in one tensor, then again once it is gone: nothing leaked or fragmented.
  for (int i = 0; i < 2; ++i) {
    const Tensor big = (*be)->alloc(DType::kI8, {capacity - 256});
    EXPECT_EQ((*be)->device_memory_used(), capacity - 256);
  }
}

TEST(CudaMemoryTest, BadFractionIsRefusedByName) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  for (const double f : {0.0, -0.5, 1.5}) {
    auto be = CudaBackend::create(0, {.memory_fraction = f});
    ASSERT_FALSE(be.ok());
    EXPECT_EQ(be.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(be.status().message().find("gpu_memory_fraction"), std::string::npos);
  }
}

TEST(CudaMemoryDeathTest, ExhaustedPoolAbortsNamingTheFigures) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  auto be = CudaBackend::create(0, {.memory_fraction = kFraction});
  ASSERT_TRUE(be.ok()) << be.status();
  const int64_t capacity = (*be)->device_memory_capacity();
  EXPECT_DEATH((*be)->alloc(DType::kI8, {capacity + 1}),
               "CUDA memory pool exhausted: .* in use .*raise gpu_memory_fraction");
}

TEST(CudaMemoryTest, PinnedStagingRoundTrips) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  auto be = CudaBackend::create(0, {.memory_fraction = kFraction});
  ASSERT_TRUE(be.ok()) << be.status();
  Tensor staging = (*be)->alloc_staging(DType::kI32, {1024});
  EXPECT_EQ(staging.device(), Device::kCpu);
  for (int i = 0; i < 1024; ++i) staging.data<int32_t>()[i] = i * 7 - 3;
  const Tensor dev = (*be)->alloc(DType::kI32, {1024});
  (*be)->copy(staging, dev);
  Tensor back = (*be)->alloc_staging(DType::kI32, {1024});
  std::memset(back.raw(), 0xff, 4096);
  (*be)->copy(dev, back);
  for (int i = 0; i < 1024; ++i) ASSERT_EQ(back.data<int32_t>()[i], i * 7 - 3) << i;
  EXPECT_EQ((*be)->device_memory_used(), 4096) << "staging is host memory, not the pool's";
}

// FP8 block-scaled weights stay FP8 on the device (bytes and F32 scales uploaded as they are,
// prepared_bytes counting both) when their scale blocks span whole GEMM k tiles; blocks of 32
// columns cannot, and are dequantized to BF16 (bf16(fp8 · scale)), as are F32 matrices.
TEST(CudaMemoryTest, PrepareWeightKeepsFp8BlockScaledWeightsAsFp8) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  auto be = CudaBackend::create(0, {.memory_fraction = kFraction});
  ASSERT_TRUE(be.ok()) << be.status();
  auto fp8_host = [](int64_t block_cols) {
    Tensor w = Tensor::empty_host(DType::kFP8E4M3, {300, 200});
    for (int64_t i = 0; i < w.numel(); ++i) w.data<uint8_t>()[i] = static_cast<uint8_t>(i % 126);
    const int64_t s_cols = (200 + block_cols - 1) / block_cols;
    Tensor s = Tensor::empty_host(DType::kF32, {3, s_cols});
    for (int64_t i = 0; i < s.numel(); ++i)
      s.data<float>()[i] = 0.5f + 0.25f * static_cast<float>(i);
    w.set_block_scales(s, 128, block_cols);
    return w;
  };
  const Tensor host = fp8_host(128);
  EXPECT_EQ((*be)->prepared_bytes(host), 300 * 200 + 3 * 2 * 4);
  {
    const Tensor dev = (*be)->prepare_weight(host);
    EXPECT_EQ(dev.dtype(), DType::kFP8E4M3);
    ASSERT_NE(dev.block_scales(), nullptr);
    EXPECT_EQ(dev.block_scales()->dtype(), DType::kF32);
    EXPECT_EQ(dev.block_scales()->device(), Device::kCuda);
    EXPECT_EQ(dev.block_rows(), 128);
    EXPECT_EQ(dev.block_cols(), 128);
    // 60000 bytes and 24 of scales, each rounded up to the pool's 256-byte units.
    EXPECT_EQ((*be)->device_memory_used(), (60000 + 255) / 256 * 256 + 256);
    Tensor back = Tensor::empty_host(DType::kFP8E4M3, dev.shape());
    (*be)->copy(dev, back);
    EXPECT_EQ(std::memcmp(back.raw(), host.raw(), 60000), 0);
    Tensor s_back = Tensor::empty_host(DType::kF32, {3, 2});
    (*be)->copy(*dev.block_scales(), s_back);
    EXPECT_EQ(std::memcmp(s_back.raw(), host.block_scales()->raw(), 24), 0);
  }
  EXPECT_EQ((*be)->device_memory_used(), 0);
  const Tensor narrow = fp8_host(32);
  EXPECT_EQ((*be)->prepared_bytes(narrow), 300 * 200 * 2);
  const Tensor dev = (*be)->prepare_weight(narrow);
  EXPECT_EQ(dev.dtype(), DType::kBF16);
  EXPECT_EQ(dev.block_scales(), nullptr);
  Tensor back = Tensor::empty_host(DType::kBF16, dev.shape());
  (*be)->copy(dev, back);
  const std::vector<float> want = to_f32_vector(narrow);  // fp8 · scale
  const std::vector<float> got = to_f32_vector(back);
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i], bf16_to_f32(f32_to_bf16(want[i]))) << i;
  }
}

}  // namespace
}  // namespace moeserve
