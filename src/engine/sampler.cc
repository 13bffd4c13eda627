#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moeserve {
namespace {

double log_sum_exp(std::span<const float> logits) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - mx);
  return mx + std::log(sum);
}

}  // namespace

Sampler::Sampler(const SamplingParams& options) : options_(options), rng_(options.seed) {}

int32_t argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

float logprob_of(std::span<const float> logits, int32_t id) {
  return static_cast<float>(logits[static_cast<size_t>(id)] - log_sum_exp(logits));
}

std::vector<std::pair<int32_t, float>> top_logprobs(std::span<const float> logits, int k) {
  const double lse = log_sum_exp(logits);
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  k = std::min<int>(k, static_cast<int>(ids.size()));
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::vector<std::pair<int32_t, float>> out;
  for (int i = 0; i < k; ++i) out.push_back({ids[i], static_cast<float>(logits[ids[i]] - lse)});
  return out;
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (options_.temperature <= 1e-5f) return argmax(logits);
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  size_t n = ids.size();
  if (options_.top_k > 0) n = std::min(n, static_cast<size_t>(options_.top_k));
  std::vector<double> p(n);
  const double mx = logits[ids[0]];
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    p[i] = std::exp((logits[ids[i]] - mx) / options_.temperature);
    sum += p[i];
  }
  // Nucleus: keep the smallest prefix whose mass reaches top_p.
  double mass = 0.0;
  size_t keep = n;
  for (size_t i = 0; i < n; ++i) {
    mass += p[i] / sum;
    if (mass >= options_.top_p) {
      keep = i + 1;
      break;
    }
  }
  std::discrete_distribution<size_t> dist(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(keep));
  return ids[dist(rng_)];
}

}  // namespace moeserve
