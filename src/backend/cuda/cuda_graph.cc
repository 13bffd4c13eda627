// CUDA graphs on the backend's stream: capture in global mode (so any allocation, synchronous
// copy or synchronisation during it fails, on a GPU and on the emulator), instantiate, replay.
#include <memory>
#include <utility>

#include "backend/cuda/cuda_internal.h"

namespace moeserve {
namespace {

using cuda_detail::cuda_status;

class CudaGraph final : public GraphHandle {
 public:
  CudaGraph(int device, cudaGraphExec_t exec, Tensor workspace, std::shared_ptr<CudaStream> stream)
      : device_(device),
        exec_(exec),
        workspace_(std::move(workspace)),
        stream_(std::move(stream)) {}
  ~CudaGraph() override {
    if (cudaSetDevice(device_) == cudaSuccess) (void)cudaGraphExecDestroy(exec_);
  }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  cudaGraphExec_t exec() const { return exec_; }
  const CudaStream* stream() const { return stream_.get(); }

 private:
  int device_;
  cudaGraphExec_t exec_;
  Tensor workspace_;  // [bytes] I8: the buffer the captured kernels use, kept while they may run
  std::shared_ptr<CudaStream> stream_;  // the graph's work is queued on it
};

}  // namespace

Status CudaBackend::begin_capture() {
  if (capturing_) return absl::FailedPreconditionError("CUDA graph capture: already capturing");
  MS_CUDA_CHECK(cudaSetDevice(device_));
  RETURN_IF_ERROR(cuda_status(cudaStreamBeginCapture(stream_->get(), cudaStreamCaptureModeGlobal),
                              "cudaStreamBeginCapture"));
  capturing_ = true;
  capture_error_.clear();
  return absl::OkStatus();
}

StatusOr<std::unique_ptr<GraphHandle>> CudaBackend::end_capture() {
  if (!capturing_) return absl::FailedPreconditionError("CUDA graph capture: not capturing");
  capturing_ = false;
  MS_CUDA_CHECK(cudaSetDevice(device_));
  cudaGraph_t graph = nullptr;
  RETURN_IF_ERROR(cuda_status(cudaStreamEndCapture(stream_->get(), &graph),
                              "cudaStreamEndCapture (a call during the capture broke it)"));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t instantiated =
      capture_error_.empty() ? cudaGraphInstantiate(&exec, graph, 0) : cudaSuccess;
  MS_CUDA_CHECK(cudaGraphDestroy(graph));
  if (!capture_error_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("CUDA graph capture: ", capture_error_));
  }
  RETURN_IF_ERROR(cuda_status(instantiated, "cudaGraphInstantiate"));
  return std::unique_ptr<GraphHandle>(new CudaGraph(device_, exec, workspace_, stream_));
}

Status CudaBackend::replay(const GraphHandle& handle) {
  const auto* graph = dynamic_cast<const CudaGraph*>(&handle);
  if (graph == nullptr || graph->stream() != stream_.get()) {
    return absl::InvalidArgumentError("CudaBackend::replay: a graph of another backend");
  }
  if (capturing_) return absl::FailedPreconditionError("CudaBackend::replay: while capturing");
  MS_CUDA_CHECK(cudaSetDevice(device_));
  return cuda_status(cudaGraphLaunch(graph->exec(), stream_->get()), "cudaGraphLaunch");
}

}  // namespace moeserve
