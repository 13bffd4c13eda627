// Internal to src/backend/cuda: what every file implementing CudaBackend ops
// shares (error checks, the stream owner, tensor-to-kernel argument helpers).
// Includes the CUDA runtime; never include it outside src/backend/cuda.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <string>

#include "backend/cuda/cuda_backend.h"
#include "kernels/elementwise.cuh"

// Aborts with the failing call, file, line and CUDA's message. For internal
// errors only; conditions a caller can cause are returned as a Status.
#define MS_CUDA_CHECK(expr)                                                                        \
  do {                                                                                             \
    const cudaError_t ms_cuda_err_ = (expr);                                                       \
    if (ms_cuda_err_ != cudaSuccess) {                                                             \
      ::moeserve::check_failed(#expr, __FILE__, __LINE__,                                          \
                               ::absl::StrCat("CUDA error ", cudaGetErrorName(ms_cuda_err_), ": ", \
                                              cudaGetErrorString(ms_cuda_err_)));                  \
    }                                                                                              \
  } while (0)

namespace moeserve {

// Owns one non-blocking stream on one device.
class CudaStream {
 public:
  CudaStream(int device, cudaStream_t stream) : device_(device), stream_(stream) {}
  ~CudaStream() {
    // At process exit the runtime may already be unloading; nothing to free then.
    if (cudaSetDevice(device_) == cudaSuccess) (void)cudaStreamDestroy(stream_);
  }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  cudaStream_t get() const { return stream_; }
  int device() const { return device_; }

 private:
  int device_;
  cudaStream_t stream_;
};

namespace cuda_detail {

inline Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  (void)cudaGetLastError();  // reset the last-error state so later calls start clean
  return absl::FailedPreconditionError(
      absl::StrCat(what, ": ", cudaGetErrorName(err), ": ", cudaGetErrorString(err)));
}

inline kernels::ElemType elem_type(DType t) {
  switch (t) {
    case DType::kF32: return kernels::ElemType::kF32;
    case DType::kBF16: return kernels::ElemType::kBF16;
    case DType::kF16: return kernels::ElemType::kF16;
    default: break;
  }
  MS_CHECK(false, "no kernel element type for ", std::string(dtype_name(t)));
  return kernels::ElemType::kF32;
}

// A tensor seen as rows: the innermost dim is contiguous and the outer dims
// collapse into one row index with a single stride.
struct Rows {
  int64_t n_rows = 0;      // product of the outer dims
  int64_t width = 0;       // innermost dim
  int64_t row_stride = 0;  // elements between consecutive rows
};

inline Rows rows_of(const Tensor& t, const char* op, const char* arg) {
  MS_CHECK(t.defined() && t.ndim() >= 1, "CudaBackend::", op, ": ", arg,
           " is undefined or a scalar");
  MS_CHECK(t.device() == Device::kCuda, "CudaBackend::", op, ": ", arg, " ", t.describe(),
           " is not on CUDA");
  const int nd = t.ndim();
  MS_CHECK(t.dim(-1) <= 1 || t.stride(-1) == 1, "CudaBackend::", op, ": ", arg, " ", t.describe(),
           " has a strided innermost dim");
  Rows r;
  r.width = t.dim(-1);
  r.n_rows = 1;
  for (int i = 0; i + 1 < nd; ++i) r.n_rows *= t.dim(i);
  r.row_stride = nd >= 2 ? t.stride(nd - 2) : r.width;
  for (int i = 0; i + 2 < nd; ++i) {
    MS_CHECK(t.dim(i) <= 1 || t.stride(i) == t.stride(i + 1) * t.dim(i + 1), "CudaBackend::", op,
             ": ", arg, " ", t.describe(), " has outer dims that do not collapse into rows");
  }
  return r;
}

inline void check_same_shape(const Tensor& a, const Tensor& b, const char* op) {
  MS_CHECK(a.shape() == b.shape(), "CudaBackend::", op, ": shapes differ: ", a.describe(), " vs ",
           b.describe());
}

inline void check_dtype(const Tensor& t, DType want, const char* op, const char* arg) {
  MS_CHECK(t.dtype() == want, "CudaBackend::", op, ": ", arg, " is ", t.describe(), ", expected ",
           std::string(dtype_name(want)));
}

// Activations (inputs and outputs that are not weights, caches, indices or logits) may be F32
// or BF16, each tensor independently.
inline kernels::ElemType act_type(const Tensor& t, const char* op, const char* arg) {
  MS_CHECK(t.dtype() == DType::kF32 || t.dtype() == DType::kBF16, "CudaBackend::", op, ": ", arg,
           " is ", t.describe(), ", expected F32 or BF16");
  return elem_type(t.dtype());
}

// A 1-D contiguous CUDA tensor of `n` elements of `want`.
inline void check_vector(const Tensor& t, DType want, int64_t n, const char* op, const char* arg) {
  MS_CHECK(t.defined() && t.device() == Device::kCuda && t.ndim() == 1 && t.dim(0) == n &&
               t.is_contiguous() && t.dtype() == want,
           "CudaBackend::", op, ": ", arg, " is ", t.describe(), ", expected contiguous ",
           std::string(dtype_name(want)), "[", n, "] on CUDA");
}

}  // namespace cuda_detail
}  // namespace moeserve
