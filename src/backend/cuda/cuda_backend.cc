#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "backend/cuda/cuda_internal.h"

namespace moeserve {

using namespace cuda_detail;

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

StatusOr<std::unique_ptr<Backend>> create_cuda_backend() {
  return absl::FailedPreconditionError(
      "the CUDA backend does not implement the GEMM and MoE ops yet; use --backend cpu");
}

StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::create(int device) {
  const int n_devices = cuda_device_count();
  if (device < 0 || device >= n_devices) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", device, " not found (", n_devices, " visible)"));
  }
  RETURN_IF_ERROR(cuda_status(cudaSetDevice(device), "cudaSetDevice"));
  cudaDeviceProp prop{};
  RETURN_IF_ERROR(cuda_status(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties"));
  cudaStream_t stream = nullptr;
  RETURN_IF_ERROR(cuda_status(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                              "cudaStreamCreateWithFlags"));
  return std::unique_ptr<CudaBackend>(new CudaBackend(
      device, prop.multiProcessorCount, std::make_shared<CudaStream>(device, stream)));
}

CudaBackend::CudaBackend(int device, int n_sms, std::shared_ptr<CudaStream> stream)
    : device_(device), n_sms_(n_sms), stream_(std::move(stream)) {}

CudaBackend::~CudaBackend() {
  // Let queued work finish before buffers (and finally the stream) go away.
  if (cudaSetDevice(device_) == cudaSuccess) (void)cudaStreamSynchronize(stream_->get());
}

// ---- memory -------------------------------------------------------------------------

Tensor CudaBackend::alloc(DType dtype, std::vector<int64_t> shape) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const int64_t n_bytes = dtype_bytes(dtype, numel);
  MS_CUDA_CHECK(cudaSetDevice(device_));
  void* ptr = nullptr;
  // One byte for empty tensors keeps data() non-null and unique.
  MS_CUDA_CHECK(
      cudaMallocAsync(&ptr, static_cast<size_t>(std::max<int64_t>(n_bytes, 1)), stream_->get()));
  auto buffer = std::make_shared<Buffer>(ptr, n_bytes, Device::kCuda, [stream = stream_](void* p) {
    const cudaError_t err = cudaFreeAsync(p, stream->get());
    // At process exit the runtime may be gone; the memory goes with it.
    if (err != cudaErrorCudartUnloading) MS_CUDA_CHECK(err);
  });
  return Tensor(std::move(buffer), dtype, std::move(shape));
}

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  MS_CHECK(src.dtype() == dst.dtype() && src.shape() == dst.shape(),
           "CudaBackend::copy: ", src.describe(), " to ", dst.describe());
  MS_CHECK(src.is_contiguous() && dst.is_contiguous(),
           "CudaBackend::copy: both tensors must be contiguous");
  const auto n_bytes = static_cast<size_t>(src.n_bytes());
  if (n_bytes == 0) return;
  const bool from_host = src.device() == Device::kCpu;
  const bool to_host = dst.device() == Device::kCpu;
  if (from_host && to_host) {
    std::memcpy(dst.raw(), src.raw(), n_bytes);
    return;
  }
  MS_CUDA_CHECK(cudaSetDevice(device_));
  const cudaMemcpyKind kind = from_host ? cudaMemcpyHostToDevice
                              : to_host ? cudaMemcpyDeviceToHost
                                        : cudaMemcpyDeviceToDevice;
  // From pageable host memory the call returns once the source has been staged,
  // so the host buffer may be reused at once; D2H must wait for the data.
  MS_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src.raw(), n_bytes, kind, stream_->get()));
  if (to_host) MS_CUDA_CHECK(cudaStreamSynchronize(stream_->get()));
}

void CudaBackend::synchronize() {
  MS_CUDA_CHECK(cudaSetDevice(device_));
  MS_CUDA_CHECK(cudaStreamSynchronize(stream_->get()));
}

// ---- ops without kernels yet --------------------------------------------------------

void CudaBackend::linear(const Tensor&, const Tensor&, const Tensor&) { not_implemented("linear"); }

void CudaBackend::head_linear(const Tensor&, const Tensor&, const Tensor&) {
  not_implemented("head_linear");
}

void CudaBackend::moe_gate(const Tensor&, const Tensor&, const GateParams&, const Tensor&,
                           const Tensor&) {
  not_implemented("moe_gate");
}

void CudaBackend::moe_ffn(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                          const Tensor&) {
  not_implemented("moe_ffn");
}

bool CudaBackend::supports(Op op, DType dtype) const {
  switch (op) {
    case Op::kGatherRows:
      return dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16;
    case Op::kRmsNorm:
    case Op::kAddRmsNorm: return dtype == DType::kF32 || dtype == DType::kBF16;
    // Attention, RoPE and the KV cache: the dtype is the cache's (F32 for rope).
    case Op::kRope: return dtype == DType::kF32;
    case Op::kKvCacheWrite:
    case Op::kRopeKvWrite:
    case Op::kMlaAttention: return dtype == DType::kF32 || dtype == DType::kBF16;
    case Op::kAdd:
    case Op::kSiluMul:
    case Op::kLogSoftmaxTopk:  // the default compositions, on a host copy of the logits
    case Op::kSample: return dtype == DType::kF32;
    default: return false;
  }
}

}  // namespace moeserve
