#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "common/status.h"

namespace moeserve {
namespace {

double yarn_mscale(double factor, double m) {
  return factor <= 1.0 ? 1.0 : 0.1 * m * std::log(factor) + 1.0;
}

// The dimension index whose wavelength fits `n_rotations` times into the
// original context (DeepSeek's yarn_find_correction_dim).
double correction_dim(double n_rotations, int dim, double base, int original_max_pos) {
  return dim * std::log(original_max_pos / (n_rotations * 2.0 * std::numbers::pi)) /
         (2.0 * std::log(base));
}

}  // namespace

std::vector<double> rope_inv_freq(const ModelConfig& config) {
  const int dim = config.qk_rope_head_dim;
  const int n_pairs = dim / 2;
  const double base = config.rope_theta;
  std::vector<double> inv_freq(n_pairs);
  for (int i = 0; i < n_pairs; ++i) inv_freq[i] = 1.0 / std::pow(base, 2.0 * i / dim);
  if (!config.rope_scaling) return inv_freq;

  const YarnScaling& y = *config.rope_scaling;
  const int orig = y.original_max_position_embeddings;
  const double low = std::clamp(std::floor(correction_dim(y.beta_fast, dim, base, orig)), 0.0,
                                static_cast<double>(dim - 1));
  double high = std::clamp(std::ceil(correction_dim(y.beta_slow, dim, base, orig)), 0.0,
                           static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // avoid a zero-width ramp
  for (int i = 0; i < n_pairs; ++i) {
    const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
    const double extra_mask = 1.0 - ramp;  // 1: keep the original frequency
    const double freq_extra = inv_freq[i];
    const double freq_inter = freq_extra / y.factor;
    inv_freq[i] = freq_inter * (1.0 - extra_mask) + freq_extra * extra_mask;
  }
  return inv_freq;
}

std::vector<float> build_rope_table(const ModelConfig& config, int64_t max_positions) {
  MS_CHECK(max_positions >= 0, "negative max_positions ", max_positions);
  MS_CHECK(config.qk_rope_head_dim > 0 && config.qk_rope_head_dim % 2 == 0, "bad qk_rope_head_dim ",
           config.qk_rope_head_dim);
  const std::vector<double> inv_freq = rope_inv_freq(config);
  const int64_t n_pairs = static_cast<int64_t>(inv_freq.size());
  double scale = 1.0;
  if (config.rope_scaling) {
    const YarnScaling& y = *config.rope_scaling;
    scale = yarn_mscale(y.factor, y.mscale) / yarn_mscale(y.factor, y.mscale_all_dim);
  }
  std::vector<float> table(static_cast<size_t>(max_positions * n_pairs * 2));
  for (int64_t p = 0; p < max_positions; ++p) {
    for (int64_t i = 0; i < n_pairs; ++i) {
      const double angle = static_cast<double>(p) * inv_freq[i];
      table[(p * n_pairs + i) * 2] = static_cast<float>(std::cos(angle) * scale);
      table[(p * n_pairs + i) * 2 + 1] = static_cast<float>(std::sin(angle) * scale);
    }
  }
  return table;
}

}  // namespace moeserve
