// Stream capture and graphs on the emulated CUDA runtime (kernels/simt/emu/capture.h): work
// issued on a capturing stream is recorded, not run; a graph replays it in order, reading the
// buffers' contents at launch; calls the real runtime refuses during a capture fail here too.
#include <cuda_runtime.h>

#include <cstring>
#include <vector>

#include "kernels/elementwise.cuh"
#include <gtest/gtest.h>

namespace {

using moeserve::kernels::ElemType;

class CudaGraphEmu : public ::testing::Test {
 protected:
  static constexpr int64_t kRows = 3, kCols = 200;
  static constexpr size_t kBytes = kRows * kCols * sizeof(float);

  void SetUp() override {
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&da_, kBytes), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&db_, kBytes), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dout_, kBytes), cudaSuccess);
    ASSERT_EQ(cudaMallocHost(&host_in_, kBytes), cudaSuccess);
    ASSERT_EQ(cudaMallocHost(&host_out_, kBytes), cudaSuccess);
    std::vector<float> b(kRows * kCols);
    for (size_t i = 0; i < b.size(); ++i) b[i] = 0.25f * static_cast<float>(i % 7) - 1.0f;
    ASSERT_EQ(cudaMemcpy(db_, b.data(), kBytes, cudaMemcpyHostToDevice), cudaSuccess);
    b_ = b;
  }
  void TearDown() override {
    EXPECT_EQ(cudaFree(da_), cudaSuccess);
    EXPECT_EQ(cudaFree(db_), cudaSuccess);
    EXPECT_EQ(cudaFree(dout_), cudaSuccess);
    EXPECT_EQ(cudaFreeHost(host_in_), cudaSuccess);
    EXPECT_EQ(cudaFreeHost(host_out_), cudaSuccess);
    EXPECT_EQ(cudaStreamDestroy(stream_), cudaSuccess);
    (void)cudaGetLastError();
  }

  // upload host_in → a; out = a + b; out → host_out; then poison a (a memset node).
  void issue_step() {
    ASSERT_EQ(cudaMemcpyAsync(da_, host_in_, kBytes, cudaMemcpyHostToDevice, stream_), cudaSuccess);
    ASSERT_EQ(moeserve::kernels::launch_add({da_, ElemType::kF32, kCols, db_, ElemType::kF32, kCols,
                                             dout_, ElemType::kF32, kCols, kRows, kCols},
                                            stream_),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpyAsync(host_out_, dout_, kBytes, cudaMemcpyDeviceToHost, stream_),
              cudaSuccess);
    ASSERT_EQ(cudaMemsetAsync(da_, 0xff, kBytes, stream_), cudaSuccess);
  }

  float* in() { return static_cast<float*>(host_in_); }
  float* out() { return static_cast<float*>(host_out_); }

  cudaStream_t stream_ = nullptr;
  void *da_ = nullptr, *db_ = nullptr, *dout_ = nullptr;
  void *host_in_ = nullptr, *host_out_ = nullptr;
  std::vector<float> b_;
};

TEST_F(CudaGraphEmu, CapturedWorkRunsOnlyWhenTheGraphLaunchesAndReadsTheDataOfThatLaunch) {
  std::memset(host_out_, 0, kBytes);
  for (int64_t i = 0; i < kRows * kCols; ++i) in()[i] = 1.0f;
  ASSERT_EQ(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeGlobal), cudaSuccess);
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  ASSERT_EQ(cudaStreamIsCapturing(stream_, &status), cudaSuccess);
  EXPECT_EQ(status, cudaStreamCaptureStatusActive);
  issue_step();
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream_, &graph), cudaSuccess);
  ASSERT_NE(graph, nullptr);
  ASSERT_EQ(cudaStreamIsCapturing(stream_, &status), cudaSuccess);
  EXPECT_EQ(status, cudaStreamCaptureStatusNone);
  for (int64_t i = 0; i < kRows * kCols; ++i) ASSERT_EQ(out()[i], 0.0f) << "ran during capture";

  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphDestroy(graph), cudaSuccess);  // the executable graph keeps its own copy
  // Two launches with new input in the same buffer: the outputs follow the input.
  for (int replay = 0; replay < 2; ++replay) {
    for (int64_t i = 0; i < kRows * kCols; ++i) {
      in()[i] = static_cast<float>(replay * 1000 + i);
    }
    ASSERT_EQ(cudaGraphLaunch(exec, stream_), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    for (int64_t i = 0; i < kRows * kCols; ++i) {
      ASSERT_EQ(out()[i], static_cast<float>(replay * 1000 + i) + b_[static_cast<size_t>(i)])
          << "replay " << replay << " element " << i;
    }
    // The memset node ran after the add.
    std::vector<unsigned char> a(kBytes);
    ASSERT_EQ(cudaMemcpy(a.data(), da_, kBytes, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(a[0], 0xff);
    EXPECT_EQ(a[kBytes - 1], 0xff);
  }
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// Waiting for the capturing stream would wait for work that has not run: the call fails, the
// capture is invalidated, later work on the stream and the end of the capture say so.
TEST_F(CudaGraphEmu, SynchronizingACapturingStreamInvalidatesTheCapture) {
  ASSERT_EQ(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeGlobal), cudaSuccess);
  issue_step();
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaErrorStreamCaptureUnsupported);
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  ASSERT_EQ(cudaStreamIsCapturing(stream_, &status), cudaSuccess);
  EXPECT_EQ(status, cudaStreamCaptureStatusInvalidated);
  EXPECT_EQ(cudaMemsetAsync(da_, 0, kBytes, stream_), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(moeserve::kernels::launch_add({da_, ElemType::kF32, kCols, db_, ElemType::kF32, kCols,
                                           dout_, ElemType::kF32, kCols, kRows, kCols},
                                          stream_),
            cudaErrorStreamCaptureInvalidated);
  cudaGraph_t graph = reinterpret_cast<cudaGraph_t>(&status);  // must be cleared
  EXPECT_EQ(cudaStreamEndCapture(stream_, &graph), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(graph, nullptr);
  // The stream works eagerly again.
  (void)cudaGetLastError();
  for (int64_t i = 0; i < kRows * kCols; ++i) in()[i] = 2.0f;
  issue_step();
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  EXPECT_EQ(out()[5], 2.0f + b_[5]);
}

// In global mode a synchronous copy, an allocation or a free anywhere in the process is
// refused and breaks the capture; in relaxed mode allocation is allowed.
TEST_F(CudaGraphEmu, UnsafeCallsDuringAGlobalCaptureFailAndBreakIt) {
  for (int call = 0; call < 4; ++call) {
    ASSERT_EQ(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeGlobal), cudaSuccess);
    void* p = nullptr;
    std::vector<float> host(4);
    switch (call) {
      case 0: EXPECT_EQ(cudaMalloc(&p, 64), cudaErrorStreamCaptureUnsupported); break;
      case 1:
        EXPECT_EQ(cudaMemcpy(host.data(), dout_, 16, cudaMemcpyDeviceToHost),
                  cudaErrorStreamCaptureUnsupported);
        break;
      case 2: EXPECT_EQ(cudaDeviceSynchronize(), cudaErrorStreamCaptureUnsupported); break;
      case 3: EXPECT_EQ(cudaMallocHost(&p, 64), cudaErrorStreamCaptureUnsupported); break;
    }
    cudaGraph_t graph = nullptr;
    EXPECT_EQ(cudaStreamEndCapture(stream_, &graph), cudaErrorStreamCaptureInvalidated)
        << "call " << call;
    EXPECT_EQ(graph, nullptr);
  }
  ASSERT_EQ(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed), cudaSuccess);
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, 64), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream_, &graph), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
}

TEST_F(CudaGraphEmu, TheLegacyStreamCannotCaptureNorJoinABlockingCapture) {
  EXPECT_EQ(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal),
            cudaErrorStreamCaptureUnsupported);
  cudaStream_t blocking = nullptr;
  ASSERT_EQ(cudaStreamCreate(&blocking), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(blocking, cudaStreamCaptureModeRelaxed), cudaSuccess);
  EXPECT_EQ(cudaStreamBeginCapture(blocking, cudaStreamCaptureModeRelaxed), cudaErrorIllegalState);
  EXPECT_EQ(cudaMemsetAsync(dout_, 0, kBytes, nullptr), cudaErrorStreamCaptureImplicit);
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(blocking, &graph), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(cudaStreamEndCapture(blocking, &graph), cudaErrorIllegalState);  // no capture
  EXPECT_EQ(cudaStreamDestroy(blocking), cudaSuccess);
}

}  // namespace
