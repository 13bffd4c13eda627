// Load-time weight quantization: the seam between a checkpoint's weights and
// the backend's quantized ops. The loader (a later step wires
// `--quantization int8`) calls
//   backend.prepare_weight(quantize_int8(host))
// for the weights a format covers, instead of backend.prepare_weight(host);
// ops take the quantized tensor like any other weight, so layers never see a
// dtype. Backend::supports(op, DType::kI8) says which ops run on it.
//
// INT8 (W8A8's weights): per-output-channel symmetric scales. A weight
// [.., m, k] becomes I8 values q in [-127, 127] with F32 scales [.., m, 1]
// carried as Tensor::block_scales of block 1 × k: s_j = max_i |w[j, i]| / 127,
// q[j, i] = rne(w[j, i] · 127 / max_i |w[j, i]|), w ≈ q · s_j. Block scales,
// not group scales, because they follow select() along stacked experts.
#pragma once

#include "common/tensor.h"

namespace moeserve {

// A host weight [m, k] or stacked [E, m, k] in any float dtype (F32, BF16,
// F16, FP8 E4M3 with its block scales) as a fresh host I8 tensor with per-row
// scales. Rows whose largest magnitude is below 1e-30 get scale 0.
Tensor quantize_int8(const Tensor& host);

// The F32 values an I8 weight with per-row scales stands for: q · s_j.
Tensor dequantize_int8(const Tensor& q);

}  // namespace moeserve
