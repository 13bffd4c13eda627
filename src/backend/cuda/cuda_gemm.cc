// CudaBackend's GEMM-shaped ops: linear, head_linear, gate_up_silu (kernels/gemm_bf16.cuh)
// and moe_ffn (kernels/moe_ffn.cuh around the grouped GEMMs). Weights BF16, F16, or FP8 e4m3
// with F32 block scales (W8A16). Large BF16 prefill products may go to cuBLASLt instead (real
// CUDA builds only; the emulator has no cuBLASLt).
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "backend/cuda/cuda_internal.h"
#include "kernels/gemm_bf16.cuh"
#include "kernels/moe_ffn.cuh"

#if !MOESERVE_CUDA_EMULATED
#include <cublasLt.h>
#endif

namespace moeserve {

using namespace cuda_detail;

namespace {

// The emulated runtime reports one SM; plan for the GPU the code is written for (H100/H200),
// so the emulated tests run the same plans (split-K included) as the GPU.
constexpr int kEmulatedSms = 132;
// From this many tokens a BF16 product is compute-bound enough for cuBLASLt's kernels.
constexpr int64_t kCublasLtMinRows = 512;

bool is_gemm_weight(DType t) {
  return t == DType::kBF16 || t == DType::kF16 || t == DType::kFP8E4M3;
}

void check_activation(const Tensor& t, const char* op, const char* arg) {
  MS_CHECK(t.dtype() == DType::kF32 || t.dtype() == DType::kBF16, "CudaBackend::", op, ": ", arg,
           " is ", t.describe(), ", expected F32 or BF16");
}

void check_weight(const Tensor& w, const char* op, const char* arg) {
  MS_CHECK(w.defined() && w.device() == Device::kCuda, "CudaBackend::", op, ": ", arg,
           " must be a CUDA tensor");
  MS_CHECK(is_gemm_weight(w.dtype()), "CudaBackend::", op, ": ", arg, " is ", w.describe(),
           "; CUDA GEMMs take BF16, F16 or block-scaled FP8 weights (INT8/INT4 are not "
           "implemented)");
  MS_CHECK(w.stride(-1) == 1, "CudaBackend::", op, ": ", arg, " ", w.describe(),
           " has a strided innermost dim");
  if (w.dtype() != DType::kFP8E4M3) return;
  MS_CHECK(w.block_scales() != nullptr && w.block_scales()->dtype() == DType::kF32 &&
               w.block_scales()->device() == Device::kCuda && w.block_scales()->stride(-1) == 1 &&
               w.block_cols() % kernels::kGemmFp8BlockColsMultiple == 0 &&
               w.block_rows() < (int64_t{1} << 31) && w.block_cols() < (int64_t{1} << 31),
           "CudaBackend::", op, ": FP8 ", arg, " ", w.describe(),
           " needs F32 CUDA block scales in blocks of a multiple of ",
           kernels::kGemmFp8BlockColsMultiple, " columns (prepare_weight makes them)");
}

kernels::ElemType weight_elem_type(DType t) {
  return t == DType::kFP8E4M3 ? kernels::ElemType::kFP8E4M3 : elem_type(t);
}

// FP8 weights: the kernels' view of the block scales of w ([m, k], or [heads or experts, m, k]
// with scales [.., ceil(m / block_rows), ceil(k / block_cols)]); the caller sets the batch or
// group stride (the scales' stride(0)).
void set_weight_scales(kernels::GemmParams& p, const Tensor& w) {
  if (w.dtype() != DType::kFP8E4M3) return;
  const Tensor& s = *w.block_scales();
  p.w_scales = s.data<float>();
  p.w_scale_row_stride = s.stride(-2);
  p.w_block_rows = static_cast<int>(w.block_rows());
  p.w_block_cols = static_cast<int>(w.block_cols());
}

}  // namespace

#if !MOESERVE_CUDA_EMULATED
// cuBLASLt for large BF16 products: one handle, one workspace, and per shape the matmul
// descriptors and the heuristic's first algorithm, found once. Row-major out[n, m] =
// x[n, k] · w[m, k]ᵀ is column-major outᵀ[m, n] = op(w)ᵀ · x with w transposed.
class CublasLtGemm {
 public:
  CublasLtGemm() {
    MS_CHECK(cublasLtCreate(&handle_) == CUBLAS_STATUS_SUCCESS, "cublasLtCreate failed");
    MS_CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
  }
  ~CublasLtGemm() {
    for (auto& [key, plan] : plans_) plan.destroy();
    (void)cudaFree(workspace_);
    (void)cublasLtDestroy(handle_);
  }
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // False when cuBLASLt has no algorithm for the shape (the caller uses its own kernel).
  bool run(const Tensor& x, const Tensor& w, const Tensor& out, cudaStream_t stream) {
    const int64_t n = x.dim(0), k = x.dim(1), m = w.dim(0);
    const cudaDataType out_type = out.dtype() == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
    const Key key{n, m, k, x.stride(0), w.stride(0), out.stride(0), out_type};
    auto it = plans_.find(key);
    if (it == plans_.end()) it = plans_.emplace(key, make_plan(key)).first;
    const Plan& plan = it->second;
    if (!plan.ok) return false;
    const float alpha = 1.0f, beta = 0.0f;
    return cublasLtMatmul(handle_, plan.op, &alpha, w.raw(), plan.a, x.raw(), plan.b, &beta,
                          out.raw(), plan.c, out.raw(), plan.c, &plan.algo, workspace_,
                          kWorkspaceBytes, stream) == CUBLAS_STATUS_SUCCESS;
  }

 private:
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, cudaDataType>;
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool ok = false;
    void destroy() {
      if (op) cublasLtMatmulDescDestroy(op);
      if (a) cublasLtMatrixLayoutDestroy(a);
      if (b) cublasLtMatrixLayoutDestroy(b);
      if (c) cublasLtMatrixLayoutDestroy(c);
    }
  };

  Plan make_plan(const Key& key) {
    const auto [n, m, k, ldx, ldw, ldo, out_type] = key;
    Plan p;
    const cublasOperation_t trans = CUBLAS_OP_T;
    bool ok =
        cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof(trans)) ==
            CUBLAS_STATUS_SUCCESS &&
        cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, k, m, ldw) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, k, n, ldx) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatrixLayoutCreate(&p.c, out_type, m, n, ldo) == CUBLAS_STATUS_SUCCESS;
    cublasLtMatmulPreference_t pref = nullptr;
    ok = ok && cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS;
    const size_t ws = kWorkspaceBytes;
    ok = ok && cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &ws, sizeof(ws)) == CUBLAS_STATUS_SUCCESS;
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    ok = ok &&
         cublasLtMatmulAlgoGetHeuristic(handle_, p.op, p.a, p.b, p.c, p.c, pref, 1, &result,
                                        &found) == CUBLAS_STATUS_SUCCESS &&
         found > 0;
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    p.algo = result.algo;
    p.ok = ok;
    return p;
  }

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::map<Key, Plan> plans_;
};
#else
class CublasLtGemm {};  // the emulated build has no cuBLASLt
#endif

void* CudaBackend::workspace(size_t n_bytes) {
  if (workspace_.defined() && static_cast<size_t>(workspace_.n_bytes()) >= n_bytes) {
    return workspace_.raw();
  }
  // Captured kernels would point at a buffer the replay must keep: the capture fails instead.
  if (capturing_ && capture_error_.empty()) {
    capture_error_ = absl::StrCat("the workspace would grow from ",
                                  workspace_.defined() ? workspace_.n_bytes() : 0, " to ", n_bytes,
                                  " bytes during a graph capture; run the step eagerly once first "
                                  "or call reserve_workspace");
  }
  // The old buffer is freed on the stream, after the work queued on it.
  workspace_ = alloc(DType::kI8, {static_cast<int64_t>(n_bytes)});
  return workspace_.raw();
}

int CudaBackend::n_sms() {
  if (n_sms_ == 0) {
#if MOESERVE_CUDA_EMULATED
    n_sms_ = kEmulatedSms;
#else
    MS_CUDA_CHECK(cudaDeviceGetAttribute(&n_sms_, cudaDevAttrMultiProcessorCount, device_));
#endif
  }
  return n_sms_;
}

void CudaBackend::run_gemm(const kernels::GemmParams& p, const kernels::GemmPlan& plan) {
  kernels::GemmParams q = p;
  const size_t ws = kernels::gemm_workspace_bytes(p, plan);
  if (ws > 0) q.partials = static_cast<float*>(workspace(ws));
  MS_CUDA_CHECK(cudaSetDevice(device_));
  MS_CUDA_CHECK(kernels::launch_gemm(q, plan, stream_->get()));
}

namespace {

// x [n, k] times w [m, k] into out [n, m] (the caller fills batch and gating).
kernels::GemmParams gemm_params(const Tensor& x, int64_t x_rs, const Tensor& w, int64_t w_rs,
                                const Tensor& out, int64_t out_rs, int64_t n, int64_t m,
                                int64_t k) {
  kernels::GemmParams p{};
  p.x = x.raw();
  p.x_type = elem_type(x.dtype());
  p.x_row_stride = x_rs;
  p.w = w.raw();
  p.w_type = weight_elem_type(w.dtype());
  p.w_row_stride = w_rs;
  set_weight_scales(p, w);
  p.out = out.raw();
  p.out_type = elem_type(out.dtype());
  p.out_row_stride = out_rs;
  p.n = static_cast<int>(n);
  p.m = static_cast<int>(m);
  p.k = static_cast<int>(k);
  return p;
}

void check_int_dims(const char* op, std::initializer_list<int64_t> dims) {
  for (int64_t d : dims) {
    MS_CHECK(d >= 0 && d < (int64_t{1} << 31), "CudaBackend::", op, ": dimension ", d,
             " does not fit the kernels' 32-bit indices");
  }
}

}  // namespace

void CudaBackend::linear(const Tensor& x, const Tensor& w, const Tensor& out) {
  const Rows xr = rows_of(x, "linear", "x");
  const Rows orows = rows_of(out, "linear", "out");
  check_activation(x, "linear", "x");
  check_activation(out, "linear", "out");
  check_weight(w, "linear", "w");
  MS_CHECK(x.ndim() == 2 && w.ndim() == 2 && out.ndim() == 2 && w.dim(1) == xr.width &&
               orows.n_rows == xr.n_rows && orows.width == w.dim(0),
           "CudaBackend::linear: x ", x.describe(), ", w ", w.describe(), ", out ", out.describe());
  const int64_t n = xr.n_rows, k = xr.width, m = w.dim(0);
  check_int_dims("linear", {n, m, k});
  const kernels::GemmParams p =
      gemm_params(x, xr.row_stride, w, w.stride(0), out, orows.row_stride, n, m, k);
#if !MOESERVE_CUDA_EMULATED
  // cuBLASLt for aligned shapes only (its heuristic's algorithms assume aligned operands).
  if (n >= kCublasLtMinRows && x.dtype() == DType::kBF16 && w.dtype() == DType::kBF16 &&
      kernels::gemm_aligned(p) && reinterpret_cast<uintptr_t>(out.raw()) % 16 == 0) {
    MS_CUDA_CHECK(cudaSetDevice(device_));
    if (!cublaslt_) cublaslt_ = std::make_shared<CublasLtGemm>();
    if (cublaslt_->run(x, w, out, stream_->get())) return;
  }
#endif
  run_gemm(p, kernels::plan_gemm(n, m, k, 1, n_sms()));
}

Status CudaBackend::cublaslt_linear(const Tensor& x, const Tensor& w, const Tensor& out) {
  MS_CHECK(x.ndim() == 2 && w.ndim() == 2 && out.ndim() == 2 && x.dtype() == DType::kBF16 &&
               w.dtype() == DType::kBF16 && x.dim(1) == w.dim(1) && out.dim(0) == x.dim(0) &&
               out.dim(1) == w.dim(0),
           "CudaBackend::cublaslt_linear: x ", x.describe(), ", w ", w.describe(), ", out ",
           out.describe());
#if MOESERVE_CUDA_EMULATED
  return absl::UnimplementedError("cuBLASLt is not in the emulated build");
#else
  MS_CUDA_CHECK(cudaSetDevice(device_));
  if (!cublaslt_) cublaslt_ = std::make_shared<CublasLtGemm>();
  if (!cublaslt_->run(x, w, out, stream_->get())) {
    return absl::InternalError(absl::StrCat("cuBLASLt has no algorithm for x ", x.describe(),
                                            ", w ", w.describe(), ", out ", out.describe()));
  }
  return absl::OkStatus();
#endif
}

void CudaBackend::head_linear(const Tensor& x, const Tensor& w, const Tensor& out) {
  check_activation(x, "head_linear", "x");
  check_activation(out, "head_linear", "out");
  check_weight(w, "head_linear", "w");
  MS_CHECK(x.ndim() == 3 && w.ndim() == 3 && out.ndim() == 3 && x.device() == Device::kCuda &&
               out.device() == Device::kCuda && x.stride(2) == 1 && out.stride(2) == 1,
           "CudaBackend::head_linear: x ", x.describe(), ", w ", w.describe(), ", out ",
           out.describe(), " must be 3-D CUDA tensors with a contiguous innermost dim");
  const int64_t n = x.dim(0), heads = x.dim(1), k = x.dim(2), m = w.dim(1);
  MS_CHECK(w.dim(0) == heads && w.dim(2) == k && out.dim(0) == n && out.dim(1) == heads &&
               out.dim(2) == m,
           "CudaBackend::head_linear: x ", x.describe(), ", w ", w.describe(), ", out ",
           out.describe());
  check_int_dims("head_linear", {n, heads, m, k});
  kernels::GemmParams p = gemm_params(x, x.stride(0), w, w.stride(1), out, out.stride(0), n, m, k);
  p.batch = static_cast<int>(heads);
  p.x_batch_stride = x.stride(1);
  p.w_batch_stride = w.stride(0);
  p.out_batch_stride = out.stride(1);
  if (p.w_scales != nullptr) p.w_scale_batch_stride = w.block_scales()->stride(0);
  run_gemm(p, kernels::plan_gemm(n, m, k, heads, n_sms()));
}

void CudaBackend::gate_up_silu(const Tensor& x, const Tensor& w_gate_up, const Tensor&,
                               const Tensor& out) {
  const Rows xr = rows_of(x, "gate_up_silu", "x");
  const Rows orows = rows_of(out, "gate_up_silu", "out");
  check_activation(x, "gate_up_silu", "x");
  check_activation(out, "gate_up_silu", "out");
  check_weight(w_gate_up, "gate_up_silu", "w_gate_up");
  const int64_t n = xr.n_rows, k = xr.width, f = orows.width;
  MS_CHECK(x.ndim() == 2 && out.ndim() == 2 && w_gate_up.ndim() == 2 && w_gate_up.dim(0) == 2 * f &&
               w_gate_up.dim(1) == k && orows.n_rows == n,
           "CudaBackend::gate_up_silu: x ", x.describe(), ", w_gate_up ", w_gate_up.describe(),
           ", out ", out.describe());
  check_int_dims("gate_up_silu", {n, 2 * f, k});
  // Fused: the scratch the composition needs is never written.
  kernels::GemmParams p = gemm_params(x, xr.row_stride, w_gate_up, w_gate_up.stride(0), out,
                                      orows.row_stride, n, 2 * f, k);
  p.gated = true;
  run_gemm(p, kernels::plan_gemm(n, 2 * f, k, 1, n_sms()));
}

void CudaBackend::moe_ffn(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights,
                          const Tensor& w_gate_up, const Tensor& w_down, const Tensor& out) {
  const Rows xr = rows_of(x, "moe_ffn", "x");
  const Rows orows = rows_of(out, "moe_ffn", "out");
  const Rows ir = rows_of(topk_ids, "moe_ffn", "topk_ids");
  const Rows wr = rows_of(topk_weights, "moe_ffn", "topk_weights");
  check_activation(x, "moe_ffn", "x");
  check_activation(out, "moe_ffn", "out");
  check_dtype(topk_ids, DType::kI32, "moe_ffn", "topk_ids");
  check_dtype(topk_weights, DType::kF32, "moe_ffn", "topk_weights");
  check_weight(w_gate_up, "moe_ffn", "w_gate_up");
  check_weight(w_down, "moe_ffn", "w_down");
  MS_CHECK(w_gate_up.dtype() == w_down.dtype(), "CudaBackend::moe_ffn: w_gate_up ",
           w_gate_up.describe(), " and w_down ", w_down.describe(), " differ in dtype");
  const int64_t n = xr.n_rows, d = xr.width, top_k = ir.width;
  MS_CHECK(w_gate_up.ndim() == 3 && w_down.ndim() == 3, "CudaBackend::moe_ffn: w_gate_up ",
           w_gate_up.describe(), " and w_down ", w_down.describe(), " must be [E, rows, cols]");
  const int64_t n_experts = w_gate_up.dim(0), f = w_down.dim(2);
  MS_CHECK(x.ndim() == 2 && out.ndim() == 2 && w_gate_up.dim(1) == 2 * f && w_gate_up.dim(2) == d &&
               w_down.dim(0) == n_experts && w_down.dim(1) == d && orows.n_rows == n &&
               orows.width == d && ir.n_rows == n && wr.n_rows == n && wr.width == top_k,
           "CudaBackend::moe_ffn: x ", x.describe(), ", topk_ids ", topk_ids.describe(),
           ", topk_weights ", topk_weights.describe(), ", w_gate_up ", w_gate_up.describe(),
           ", w_down ", w_down.describe(), ", out ", out.describe());
  MS_CHECK(n_experts > 0 && n_experts <= kernels::kMoeMaxExperts,
           "CudaBackend::moe_ffn: ", n_experts, " experts; the router kernel holds at most ",
           kernels::kMoeMaxExperts);
  check_int_dims("moe_ffn", {n * top_k, 2 * f, d});
  if (n == 0) return;

  // A few rows per expert (decode) take the 16-row tiles; prefill the 128-row ones.
  const int64_t n_rows = n * top_k;
  const kernels::GemmTile tile =
      n_rows <= 32 * n_experts ? kernels::GemmTile::kSkinny : kernels::GemmTile::kLarge;
  const int block_m = kernels::gemm_tile_shape(tile).block_m;
  const int max_tiles = kernels::moe_max_tiles(n_rows, static_cast<int>(n_experts), block_m);
  // Workspace: routing tables, act [n_rows, f] BF16, y [n_rows, d] F32 by slot.
  auto align = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t ints = align((static_cast<size_t>(n_experts) + 1 + 2 * n_rows + 2 * max_tiles + 1) *
                            sizeof(int32_t));
  const size_t act_bytes = align(static_cast<size_t>(n_rows * f) * 2);
  char* ws = static_cast<char*>(
      workspace(ints + act_bytes + static_cast<size_t>(n_rows * d) * sizeof(float)));
  int32_t* offsets = reinterpret_cast<int32_t*>(ws);
  int32_t* perm_token = offsets + n_experts + 1;
  int32_t* perm_slot = perm_token + n_rows;
  int32_t* tile_expert = perm_slot + n_rows;
  int32_t* tile_row0 = tile_expert + max_tiles;
  int32_t* n_tiles = tile_row0 + max_tiles;
  void* act = ws + ints;
  float* y = reinterpret_cast<float*>(ws + ints + act_bytes);

  MS_CUDA_CHECK(cudaSetDevice(device_));
  const cudaStream_t stream = stream_->get();
  kernels::MoeRouteParams route{};
  route.topk_ids = topk_ids.data<int32_t>();
  route.ids_row_stride = ir.row_stride;
  route.n_tokens = static_cast<int>(n);
  route.top_k = static_cast<int>(top_k);
  route.n_experts = static_cast<int>(n_experts);
  route.block_m = block_m;
  route.max_tiles = max_tiles;
  route.expert_offsets = offsets;
  route.perm_token = perm_token;
  route.perm_slot = perm_slot;
  route.tile_expert = tile_expert;
  route.tile_row0 = tile_row0;
  route.n_tiles = n_tiles;
  MS_CUDA_CHECK(kernels::launch_moe_route(route, stream));

  const kernels::GemmPlan plan{.tile = tile, .k_splits = 1, .k_tiles_per_split = 1 << 30};
  kernels::GemmGroups groups{};
  groups.tile_group = tile_expert;
  groups.tile_row0 = tile_row0;
  groups.group_offsets = offsets;
  groups.n_tiles = n_tiles;
  groups.max_tiles = max_tiles;

  kernels::GemmParams gu{};
  gu.x = x.raw();
  gu.x_type = elem_type(x.dtype());
  gu.x_row_stride = xr.row_stride;
  gu.x_rows = perm_token;
  gu.w = w_gate_up.raw();
  gu.w_type = weight_elem_type(w_gate_up.dtype());
  gu.w_row_stride = w_gate_up.stride(1);
  set_weight_scales(gu, w_gate_up);
  if (gu.w_scales != nullptr) gu.w_scale_group_stride = w_gate_up.block_scales()->stride(0);
  gu.out = act;
  gu.out_type = kernels::ElemType::kBF16;
  gu.out_row_stride = f;
  gu.n = static_cast<int>(n_rows);
  gu.m = static_cast<int>(2 * f);
  gu.k = static_cast<int>(d);
  gu.gated = true;
  gu.groups = groups;
  gu.groups.w_group_stride = w_gate_up.stride(0);
  MS_CUDA_CHECK(kernels::launch_gemm(gu, plan, stream));

  kernels::GemmParams dn{};
  dn.x = act;
  dn.x_type = kernels::ElemType::kBF16;
  dn.x_row_stride = f;
  dn.w = w_down.raw();
  dn.w_type = weight_elem_type(w_down.dtype());
  dn.w_row_stride = w_down.stride(1);
  set_weight_scales(dn, w_down);
  if (dn.w_scales != nullptr) dn.w_scale_group_stride = w_down.block_scales()->stride(0);
  dn.out = y;
  dn.out_type = kernels::ElemType::kF32;
  dn.out_row_stride = d;
  dn.out_rows = perm_slot;
  dn.n = static_cast<int>(n_rows);
  dn.m = static_cast<int>(d);
  dn.k = static_cast<int>(f);
  dn.groups = groups;
  dn.groups.w_group_stride = w_down.stride(0);
  MS_CUDA_CHECK(kernels::launch_gemm(dn, plan, stream));

  kernels::MoeCombineParams combine{};
  combine.y = y;
  combine.topk_ids = topk_ids.data<int32_t>();
  combine.ids_row_stride = ir.row_stride;
  combine.topk_weights = topk_weights.data<float>();
  combine.weights_row_stride = wr.row_stride;
  combine.out = out.raw();
  combine.out_type = elem_type(out.dtype());
  combine.out_row_stride = orows.row_stride;
  combine.n_tokens = static_cast<int>(n);
  combine.top_k = static_cast<int>(top_k);
  combine.n_experts = static_cast<int>(n_experts);
  combine.d = static_cast<int>(d);
  MS_CUDA_CHECK(kernels::launch_moe_combine(combine, stream));
}

}  // namespace moeserve
