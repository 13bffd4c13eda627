// The CUDA backend's memory: one pool reserved at create() (gpu_memory_fraction
// of the device), tensors carved from it and given back when their last view
// goes, an exhausted pool refused by name, pinned staging that round-trips.
// On a GPU (label gpu) or the emulated runtime (label emu); skipped with neither.
#include <cstdint>
#include <cstring>
#include <vector>

#include "backend/cuda/cuda_backend.h"
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

}  // namespace
}  // namespace moeserve
