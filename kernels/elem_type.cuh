// The element types a kernel reads or writes through an untyped pointer, shared by every
// kernel header (activations may be F32 or BF16 independently per tensor; tables and weights
// may be narrower).
#pragma once

#include <cstdint>

namespace moeserve::kernels {

// kFP8E4M3: block-scaled GEMM weights only (gemm_bf16.cuh); no other kernel takes it.
enum class ElemType : uint8_t { kF32, kBF16, kF16, kFP8E4M3 };

}  // namespace moeserve::kernels
