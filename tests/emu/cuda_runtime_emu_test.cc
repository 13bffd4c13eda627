// The emulated CUDA runtime (kernels/simt/emu/cuda_runtime.cc): host code written against
// <cuda_runtime.h> allocates, copies, launches a real kernel (kernels/elementwise.cu) on a
// stream and reads errors back, as src/backend/cuda does, with no GPU and no cudart.
#include <cuda_runtime.h>

#include <vector>

#include "kernels/elementwise.cuh"
#include "kernels/simt/emu/grid.h"
#include "kernels/simt/tests/negative_kernels.cuh"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace {

using ::testing::HasSubstr;

TEST(CudaRuntimeEmu, DeviceMemoryStreamsAndALaunch) {
  int n_devices = 0;
  ASSERT_EQ(cudaGetDeviceCount(&n_devices), cudaSuccess);
  EXPECT_EQ(n_devices, 1);
  EXPECT_EQ(cudaSetDevice(0), cudaSuccess);
  EXPECT_EQ(cudaSetDevice(1), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);  // sticky until read
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  cudaDeviceProp prop;
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  EXPECT_EQ(prop.major, 9);
  EXPECT_EQ(prop.warpSize, 32);

  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  cudaEvent_t start, stop;
  ASSERT_EQ(cudaEventCreate(&start), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&stop), cudaSuccess);

  const int64_t n_rows = 3, d = 500;
  std::vector<float> a(n_rows * d), b(n_rows * d), out(n_rows * d, -1);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.5f * static_cast<float>(i), b[i] = -2.0f;
  const size_t bytes = a.size() * sizeof(float);
  void *da = nullptr, *db = nullptr, *dout = nullptr;
  ASSERT_EQ(cudaMallocAsync(&da, bytes, stream), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&db, bytes), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dout, bytes), cudaSuccess);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(da) % 256, 0u);
  ASSERT_EQ(cudaMemcpyAsync(da, a.data(), bytes, cudaMemcpyHostToDevice, stream), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(db, b.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemset(dout, 0xff, bytes), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(start, stream), cudaSuccess);
  ASSERT_EQ(moeserve::kernels::launch_add(
                {da, moeserve::kernels::ElemType::kF32, d, db, moeserve::kernels::ElemType::kF32, d,
                 dout, moeserve::kernels::ElemType::kF32, d, n_rows, d},
                stream),
            cudaSuccess);
  ASSERT_EQ(cudaEventRecord(stop, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  float ms = -1;
  ASSERT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaSuccess);
  EXPECT_GE(ms, 0.0f);
  ASSERT_EQ(cudaMemcpy(out.data(), dout, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], a[i] + b[i]);

  EXPECT_EQ(cudaFreeAsync(da, stream), cudaSuccess);
  EXPECT_EQ(cudaFree(db), cudaSuccess);
  EXPECT_EQ(cudaFree(dout), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(start), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(stop), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(CudaRuntimeEmu, AFailedLaunchIsTheLastErrorWithTheEmulatorsMessage) {
  std::vector<int> out(64);
  const simt::LaunchResult r =
      simt::test::launch_barrier_bug({simt::test::BarrierBug::kHalfBlock, out.data()});
  ASSERT_EQ(r.code, cudaErrorLaunchFailure);
  EXPECT_THAT(simt::emu::peek_last_error().message, HasSubstr("barrier_bug_kernel"));
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_TRUE(simt::emu::peek_last_error().message.empty());
}

}  // namespace
