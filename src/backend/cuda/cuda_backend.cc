#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_internal.h"
#include "common/dtype.h"
#include "common/logging.h"
#include "common/process_memory.h"
#include "common/range_allocator.h"
#include "kernels/gemm_bf16.cuh"  // kGemmFp8BlockColsMultiple

namespace moeserve {

using namespace cuda_detail;

// One cudaMalloc of the whole pool, carved by a RangeAllocator.
class DevicePool {
 public:
  DevicePool(int device, char* base, int64_t bytes)
      : device_(device), base_(base), ranges_(bytes) {}
  ~DevicePool() {
    // At process exit the runtime may already be unloading; nothing to free then.
    if (cudaSetDevice(device_) == cudaSuccess) (void)cudaFree(base_);
  }
  DevicePool(const DevicePool&) = delete;
  DevicePool& operator=(const DevicePool&) = delete;

  RangeAllocator& ranges() { return ranges_; }
  char* base() const { return base_; }

 private:
  int device_;
  char* base_;
  RangeAllocator ranges_;
};

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

bool cuda_is_emulated() { return MOESERVE_CUDA_EMULATED != 0; }

StatusOr<std::unique_ptr<Backend>> create_cuda_backend(double memory_fraction) {
  ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> backend,
                   CudaBackend::create(0, {.memory_fraction = memory_fraction}));
  return std::unique_ptr<Backend>(std::move(backend));
}

StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::create(int device, const CudaOptions& options) {
  const int n_devices = cuda_device_count();
  if (device < 0 || device >= n_devices) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", device, " not found (", n_devices, " visible)"));
  }
  if (!(options.memory_fraction > 0.0 && options.memory_fraction <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu_memory_fraction = ", options.memory_fraction, ": must be in (0, 1]"));
  }
  RETURN_IF_ERROR(cuda_status(cudaSetDevice(device), "cudaSetDevice"));
  size_t free_bytes = 0, total_bytes = 0;
  RETURN_IF_ERROR(cuda_status(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo"));
  const auto want =
      static_cast<int64_t>(options.memory_fraction * static_cast<double>(total_bytes));
  if (want > static_cast<int64_t>(free_bytes)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "gpu_memory_fraction = ", options.memory_fraction, " asks for ", format_bytes(want),
        " of CUDA device ", device, ", but only ", format_bytes(static_cast<int64_t>(free_bytes)),
        " of its ", format_bytes(static_cast<int64_t>(total_bytes)),
        " are free (another process holds the rest); lower it"));
  }
  void* base = nullptr;
  RETURN_IF_ERROR(cuda_status(cudaMalloc(&base, static_cast<size_t>(want)), "cudaMalloc (pool)"));
  auto pool = std::make_shared<DevicePool>(device, static_cast<char*>(base), want);
  cudaStream_t stream = nullptr;
  RETURN_IF_ERROR(cuda_status(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                              "cudaStreamCreateWithFlags"));
  return std::unique_ptr<CudaBackend>(
      new CudaBackend(device, std::make_shared<CudaStream>(device, stream), std::move(pool)));
}

CudaBackend::CudaBackend(int device, std::shared_ptr<CudaStream> stream,
                         std::shared_ptr<DevicePool> pool)
    : device_(device), stream_(std::move(stream)), pool_(std::move(pool)) {}

CudaBackend::~CudaBackend() {
  // Let queued work finish before buffers (and finally the stream) go away.
  if (cudaSetDevice(device_) == cudaSuccess) (void)cudaStreamSynchronize(stream_->get());
}

// ---- memory -------------------------------------------------------------------------

Tensor CudaBackend::alloc(DType dtype, std::vector<int64_t> shape) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const int64_t n_bytes = dtype_bytes(dtype, numel);
  // An empty tensor still takes one unit, so data() stays non-null and unique.
  const std::optional<int64_t> offset = pool_->ranges().allocate(n_bytes);
  MS_CHECK(offset.has_value(), "CUDA memory pool exhausted: ", format_bytes(n_bytes), " for a ",
           dtype_name(dtype), " tensor, with ", format_bytes(pool_->ranges().used()), " of ",
           format_bytes(pool_->ranges().capacity()), " in use (largest free range ",
           format_bytes(pool_->ranges().largest_free()), "); raise gpu_memory_fraction");
  auto buffer = std::make_shared<Buffer>(
      pool_->base() + *offset, n_bytes, Device::kCuda,
      [pool = pool_, offset = *offset](void*) { pool->ranges().free(offset); });
  return Tensor(std::move(buffer), dtype, std::move(shape));
}

namespace {

// FP8 weights the GEMMs read as they are: F32 block scales in blocks of whole k tiles (the
// checkpoints' 128 × 128). Others are dequantized to BF16 at load.
bool gemm_takes_fp8(const Tensor& host) {
  return host.dtype() == DType::kFP8E4M3 && host.ndim() >= 2 && host.block_scales() != nullptr &&
         host.block_scales()->dtype() == DType::kF32 &&
         host.block_cols() % kernels::kGemmFp8BlockColsMultiple == 0;
}

bool stored_as_bf16(const Tensor& host) {
  return (host.dtype() == DType::kFP8E4M3 && !gemm_takes_fp8(host)) ||
         (host.dtype() == DType::kF32 && host.ndim() >= 2);
}

}  // namespace

Tensor CudaBackend::prepare_weight(const Tensor& host) {
  if (!stored_as_bf16(host)) return Backend::prepare_weight(host);
  const std::vector<float> values = to_f32_vector(host);  // FP8: its block scales applied
  Tensor narrow = alloc_staging(DType::kBF16, host.shape());
  auto* bits = narrow.data<uint16_t>();
  for (size_t i = 0; i < values.size(); ++i) bits[i] = f32_to_bf16(values[i]);
  Tensor dev = alloc(DType::kBF16, host.shape());
  copy(narrow, dev);
  synchronize();  // the staging buffer goes when this returns
  return dev;
}

int64_t CudaBackend::prepared_bytes(const Tensor& host) const {
  return stored_as_bf16(host) ? dtype_bytes(DType::kBF16, host.numel())
                              : Backend::prepared_bytes(host);
}

int64_t CudaBackend::device_memory_capacity() const { return pool_->ranges().capacity(); }

int64_t CudaBackend::device_memory_used() const { return pool_->ranges().used(); }

Tensor CudaBackend::alloc_staging(DType dtype, std::vector<int64_t> shape) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const int64_t n_bytes = dtype_bytes(dtype, numel);
  void* ptr = nullptr;
  MS_CUDA_CHECK(cudaMallocHost(&ptr, static_cast<size_t>(std::max<int64_t>(n_bytes, 1))));
  auto buffer = std::make_shared<Buffer>(ptr, n_bytes, Device::kCpu, [](void* p) {
    const cudaError_t err = cudaFreeHost(p);
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
    case Op::kSiluMul: return dtype == DType::kF32;
    // Gating and sampling (cuda_gate.cc, cuda_sampling.cc).
    case Op::kMoeGate:
    case Op::kLogSoftmaxTopk:
    case Op::kSample: return dtype == DType::kF32;
    case Op::kLinear:
    case Op::kHeadLinear:
    case Op::kGateUpSilu:
    case Op::kMoeFfn:
      return dtype == DType::kBF16 || dtype == DType::kF16 || dtype == DType::kFP8E4M3;  // W8A16
    default: return false;
  }
}

}  // namespace moeserve
