// Rotary position embedding tables (plain RoPE or DeepSeek's YaRN).
#pragma once

#include <cstdint>
#include <vector>

#include "model/model_config.h"

namespace moeserve {

// The (cos, sin) table the backend's rope op reads: [max_positions,
// qk_rope_head_dim / 2, 2]. Entry [p, i] rotates the interleaved pair
// (x[2i], x[2i+1]) at position p by angle p * inv_freq[i]. With YaRN,
// inv_freq blends interpolated and original frequencies and both cos and sin
// carry the mscale(mscale) / mscale(mscale_all_dim) factor. Computed in double,
// stored as float.
std::vector<float> build_rope_table(const ModelConfig& config, int64_t max_positions);

// The per-pair inverse frequencies behind the table: [qk_rope_head_dim / 2].
std::vector<double> rope_inv_freq(const ModelConfig& config);

}  // namespace moeserve
