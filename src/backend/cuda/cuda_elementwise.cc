// CudaBackend's row-wise and elementwise ops: gather_rows, rms_norm, add_rms_norm, add,
// silu_mul (kernels/elementwise.cu). Activations are F32 or BF16, each tensor independently.
#include "backend/cuda/cuda_internal.h"

namespace moeserve {

using namespace cuda_detail;

namespace {

// A norm weight: [d] F32 or BF16, contiguous, on CUDA.
kernels::ElemType norm_weight_type(const Tensor& weight, int64_t d, const char* op) {
  MS_CHECK(weight.dtype() == DType::kF32 || weight.dtype() == DType::kBF16, "CudaBackend::", op,
           ": weight ", weight.describe(), " must be F32 or BF16");
  check_vector(weight, weight.dtype(), d, op, "weight");
  MS_CHECK(d <= (int64_t{1} << 30), "CudaBackend::", op, ": row width ", d, " too large");
  return elem_type(weight.dtype());
}

}  // namespace

void CudaBackend::gather_rows(const Tensor& src, const Tensor& indices, const Tensor& out) {
  const Rows s = rows_of(src, "gather_rows", "src");
  const Rows o = rows_of(out, "gather_rows", "out");
  MS_CHECK(src.ndim() == 2 && out.ndim() == 2 && indices.ndim() == 1,
           "CudaBackend::gather_rows: src ", src.describe(), ", indices ", indices.describe(),
           ", out ", out.describe());
  check_dtype(indices, DType::kI32, "gather_rows", "indices");
  MS_CHECK(indices.device() == Device::kCuda && indices.is_contiguous(),
           "CudaBackend::gather_rows: indices must be contiguous on CUDA");
  MS_CHECK(o.n_rows == indices.dim(0) && o.width == s.width, "CudaBackend::gather_rows: src ",
           src.describe(), ", indices ", indices.describe(), ", out ", out.describe());
  kernels::GatherRowsParams p{};
  p.src = src.raw();
  p.src_type = elem_type(src.dtype());
  p.src_row_stride = s.row_stride;
  p.n_src_rows = s.n_rows;
  p.indices = indices.data<int32_t>();
  p.out = out.raw();
  p.out_type = act_type(out, "gather_rows", "out");
  p.out_row_stride = o.row_stride;
  p.n_rows = o.n_rows;
  p.d = o.width;
  MS_CUDA_CHECK(cudaSetDevice(device_));
  MS_CUDA_CHECK(kernels::launch_gather_rows(p, stream_->get()));
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) {
  const Rows xr = rows_of(x, "rms_norm", "x");
  const Rows orows = rows_of(out, "rms_norm", "out");
  check_same_shape(x, out, "rms_norm");
  kernels::RmsNormParams p{};
  p.x = x.raw();
  p.x_type = act_type(x, "rms_norm", "x");
  p.x_row_stride = xr.row_stride;
  p.weight = weight.raw();
  p.weight_type = norm_weight_type(weight, xr.width, "rms_norm");
  p.out = out.raw();
  p.out_type = act_type(out, "rms_norm", "out");
  p.out_row_stride = orows.row_stride;
  p.n_rows = xr.n_rows;
  p.d = static_cast<int>(xr.width);
  p.eps = eps;
  MS_CUDA_CHECK(cudaSetDevice(device_));
  MS_CUDA_CHECK(kernels::launch_rms_norm(p, stream_->get()));
}

void CudaBackend::add_rms_norm(const Tensor& residual, const Tensor& x, const Tensor& weight,
                               float eps, const Tensor& out) {
  const Rows rr = rows_of(residual, "add_rms_norm", "residual");
  const Rows xr = rows_of(x, "add_rms_norm", "x");
  const Rows orows = rows_of(out, "add_rms_norm", "out");
  check_same_shape(residual, x, "add_rms_norm");
  check_same_shape(residual, out, "add_rms_norm");
  // out is written while other threads still read the residual's row.
  MS_CHECK(out.raw() != residual.raw(), "CudaBackend::add_rms_norm: out must not alias residual");
  kernels::AddRmsNormParams p{};
  p.residual = residual.raw();
  p.residual_type = act_type(residual, "add_rms_norm", "residual");
  p.residual_row_stride = rr.row_stride;
  p.x = x.raw();
  p.x_type = act_type(x, "add_rms_norm", "x");
  p.x_row_stride = xr.row_stride;
  p.weight = weight.raw();
  p.weight_type = norm_weight_type(weight, rr.width, "add_rms_norm");
  p.out = out.raw();
  p.out_type = act_type(out, "add_rms_norm", "out");
  p.out_row_stride = orows.row_stride;
  p.n_rows = rr.n_rows;
  p.d = static_cast<int>(rr.width);
  p.eps = eps;
  MS_CUDA_CHECK(cudaSetDevice(device_));
  MS_CUDA_CHECK(kernels::launch_add_rms_norm(p, stream_->get()));
}

void CudaBackend::add(const Tensor& a, const Tensor& b, const Tensor& out) {
  const Rows ar = rows_of(a, "add", "a");
  const Rows br = rows_of(b, "add", "b");
  const Rows orows = rows_of(out, "add", "out");
  check_same_shape(a, out, "add");
  check_same_shape(b, out, "add");
  kernels::AddParams p{};
  p.a = a.raw();
  p.a_type = act_type(a, "add", "a");
  p.a_row_stride = ar.row_stride;
  p.b = b.raw();
  p.b_type = act_type(b, "add", "b");
  p.b_row_stride = br.row_stride;
  p.out = out.raw();
  p.out_type = act_type(out, "add", "out");
  p.out_row_stride = orows.row_stride;
  p.n_rows = orows.n_rows;
  p.d = orows.width;
  MS_CUDA_CHECK(cudaSetDevice(device_));
  MS_CUDA_CHECK(kernels::launch_add(p, stream_->get()));
}

void CudaBackend::silu_mul(const Tensor& gate_up, const Tensor& out) {
  const Rows g = rows_of(gate_up, "silu_mul", "gate_up");
  const Rows o = rows_of(out, "silu_mul", "out");
  MS_CHECK(g.n_rows == o.n_rows && g.width == 2 * o.width, "CudaBackend::silu_mul: gate_up ",
           gate_up.describe(), ", out ", out.describe());
  kernels::SiluMulParams p{};
  p.gate_up = gate_up.raw();
  p.gate_up_type = act_type(gate_up, "silu_mul", "gate_up");
  p.gate_up_row_stride = g.row_stride;
  p.out = out.raw();
  p.out_type = act_type(out, "silu_mul", "out");
  p.out_row_stride = o.row_stride;
  p.n_rows = o.n_rows;
  p.f = o.width;
  MS_CUDA_CHECK(cudaSetDevice(device_));
  MS_CUDA_CHECK(kernels::launch_silu_mul(p, stream_->get()));
}

}  // namespace moeserve
