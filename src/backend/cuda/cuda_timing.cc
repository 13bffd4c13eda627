// CudaBackend's measurement helper for the benchmarks: CUDA events around work on its stream.
#include "backend/cuda/cuda_internal.h"

namespace moeserve {

namespace {

// Owns one CUDA event.
class CudaEvent {
 public:
  CudaEvent() { MS_CUDA_CHECK(cudaEventCreate(&event_)); }
  ~CudaEvent() { (void)cudaEventDestroy(event_); }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace

double CudaBackend::time_on_stream(const std::function<void()>& queue) {
  MS_CUDA_CHECK(cudaSetDevice(device_));
  CudaEvent start, end;
  MS_CUDA_CHECK(cudaEventRecord(start.get(), stream_->get()));
  queue();
  MS_CUDA_CHECK(cudaSetDevice(device_));
  MS_CUDA_CHECK(cudaEventRecord(end.get(), stream_->get()));
  MS_CUDA_CHECK(cudaEventSynchronize(end.get()));
  float ms = 0;
  MS_CUDA_CHECK(cudaEventElapsedTime(&ms, start.get(), end.get()));
  return static_cast<double>(ms) / 1e3;
}

}  // namespace moeserve
