#include "backend/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/logging.h"
#include "common/philox.h"
#include "kernels/sampling_math.h"
#include "moeserve/sampling_params.h"

namespace moeserve {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// top_p ranks this many tokens first, then twice as many at each step.
constexpr size_t kFirstRankedBlock = 256;

double log_sum_exp(std::span<const float> logits) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - mx);
  return mx + std::log(sum);
}

Status check_raw(std::span<const float> raw, std::span<const float> shaped) {
  if (raw.empty() || raw.size() != shaped.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("logits rows must be non-empty and of equal size, got ", raw.size(),
                     " raw and ", shaped.size(), " processed"));
  }
  for (size_t i = 0; i < raw.size(); ++i) {
    if (!std::isfinite(raw[i])) {
      return absl::InternalError(
          absl::StrCat("model produced a non-finite logit ", raw[i], " for token ", i));
    }
  }
  return absl::OkStatus();
}

// Bias, then penalties (vLLM's order: bias is a logits processor, penalties are the
// sampler's), then the mask, which the penalties would leave −inf anyway.
void shape_unchecked(const SamplingRow& row, std::span<float> logits) {
  for (const auto& [id, bias] : row.logit_bias) logits[static_cast<size_t>(id)] += bias;
  for (const PenaltyEntry& e : row.penalties) {
    float& l = logits[static_cast<size_t>(e.token)];
    // Repetition: prompt and output. Dividing a positive / multiplying a non-positive logit
    // moves it down for a penalty above 1, whatever its sign (vLLM's `logits > 0` split).
    if (row.repetition_penalty != 1.0f) {
      l = l > 0 ? l / row.repetition_penalty : l * row.repetition_penalty;
    }
    if (e.n_output > 0) {
      l -= row.frequency_penalty * static_cast<float>(e.n_output);
      l -= row.presence_penalty;
    }
  }
  for (int32_t id : row.masked) logits[static_cast<size_t>(id)] = -kInf;
}

Status check_shaped(std::span<const float> l) {
  bool any_unmasked = false;
  for (size_t i = 0; i < l.size(); ++i) {
    if (std::isnan(l[i]) || l[i] == kInf) {
      return absl::InvalidArgumentError(
          absl::StrCat("logits processing produced ", l[i], " for token ", i));
    }
    any_unmasked |= l[i] != -kInf;
  }
  if (!any_unmasked) {
    return absl::InvalidArgumentError("every token is masked (all logits are -inf)");
  }
  return absl::OkStatus();
}

// temperature, top_k, top_p and min_p choose a set of tokens; the inverse CDF at draw
// `counter` then walks that set in id order (any fixed order draws the same distribution; id
// order needs no sort, on the GPU either). Weights, masses and ranks are those of
// kernels/sampling_math.h, which the sampling kernel computes the same way, bit for bit.
int32_t draw(std::span<const float> l, const SamplingRow& row) {
  namespace sm = sampling_math;
  MS_CHECK(static_cast<int64_t>(l.size()) <= sm::kMaxVocab, "sample: a vocabulary of ", l.size(),
           " tokens is beyond the sampler's fixed-point masses (at most ", sm::kMaxVocab, ")");
  // Candidates: unmasked ids, in id order throughout.
  std::vector<int32_t> ids;
  ids.reserve(l.size());
  for (size_t i = 0; i < l.size(); ++i) {
    if (l[i] != -kInf) ids.push_back(static_cast<int32_t>(i));
  }
  auto key = [&](int32_t id) { return sm::rank_key(l[static_cast<size_t>(id)], id); };
  auto keep_if = [&](auto pred) {
    ids.erase(std::remove_if(ids.begin(), ids.end(), [&](int32_t id) { return !pred(id); }),
              ids.end());
  };
  if (row.top_k > 0 && static_cast<size_t>(row.top_k) < ids.size()) {
    std::vector<uint64_t> keys(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) keys[i] = key(ids[i]);
    const auto kth = keys.begin() + (row.top_k - 1);
    std::nth_element(keys.begin(), kth, keys.end(), std::greater<>());
    const uint64_t min_key = *kth;
    keep_if([&](int32_t id) { return key(id) >= min_key; });
  }
  float best = -kInf;
  for (int32_t id : ids) best = std::max(best, l[static_cast<size_t>(id)]);
  const double inv_temperature = sm::inverse_temperature(row.temperature);
  auto weight = [&](int32_t id) {
    return sm::weight(l[static_cast<size_t>(id)], best, inv_temperature);
  };
  auto mass_of = [&] {
    uint64_t m = 0;
    for (int32_t id : ids) m += sm::fixed_weight(weight(id));
    return m;
  };
  // top_p over the top_k survivors: the shortest most-likely prefix whose mass reaches top_p.
  // Ranking the whole vocabulary is the slow part, so rank blocks of doubling size only as far
  // as the prefix reaches (each block is exactly what a full sort would put there).
  if (row.top_p < 1.0f) {
    const uint64_t target = sm::top_p_target(row.top_p, mass_of());
    std::vector<uint64_t> ranked(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) ranked[i] = key(ids[i]);
    uint64_t mass = 0, min_key = 0;
    size_t n_ranked = 0;
    for (size_t i = 0; i < ranked.size(); ++i) {
      if (i == n_ranked) {
        n_ranked = std::min(ranked.size(), std::max<size_t>(kFirstRankedBlock, 2 * n_ranked));
        const auto first = ranked.begin() + static_cast<std::ptrdiff_t>(i);
        const auto last = ranked.begin() + static_cast<std::ptrdiff_t>(n_ranked);
        std::nth_element(first, last - 1, ranked.end(), std::greater<>());
        std::sort(first, last, std::greater<>());
      }
      mass += sm::fixed_weight(weight(sm::key_id(ranked[i])));
      min_key = ranked[i];
      if (mass >= target) break;
    }
    keep_if([&](int32_t id) { return key(id) >= min_key; });
  }
  // min_p: p ≥ min_p · p_max ⇔ w ≥ min_p, since w is p / p_max. The best token always stays.
  if (row.min_p > 0.0f) {
    keep_if([&](int32_t id) { return weight(id) >= static_cast<double>(row.min_p); });
  }
  const uint64_t target = sm::draw_target(philox_uniform01(row.seed, row.counter), mass_of());
  uint64_t mass = 0;
  for (int32_t id : ids) {
    mass += sm::fixed_weight(weight(id));
    if (mass > target) return id;
  }
  return ids.back();  // the target rounded up to the total
}

}  // namespace

Status check_token_ids(const SamplingRow& row, int64_t n_vocab) {
  auto check = [&](int32_t id, const char* what) -> Status {
    if (id < 0 || id >= n_vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " token id ", id, " is outside the vocabulary of ", n_vocab));
    }
    return absl::OkStatus();
  };
  for (const auto& [id, bias] : row.logit_bias) RETURN_IF_ERROR(check(id, "logit_bias"));
  for (const PenaltyEntry& e : row.penalties) RETURN_IF_ERROR(check(e.token, "counted"));
  for (int32_t id : row.masked) RETURN_IF_ERROR(check(id, "stop"));
  return absl::OkStatus();
}

bool shapes_logits(const SamplingRow& row) {
  const bool penalties = row.presence_penalty != 0.0f || row.frequency_penalty != 0.0f ||
                         row.repetition_penalty != 1.0f;
  return !row.logit_bias.empty() || (penalties && !row.penalties.empty()) || !row.masked.empty();
}

void log_softmax_topk_row(std::span<const float> logits, std::span<int32_t> ids,
                          std::span<float> logprobs) {
  const size_t k = ids.size();
  MS_CHECK(k == logprobs.size() && k <= logits.size(), "log_softmax_topk of ", k, " from ",
           logits.size());
  const double lse = log_sum_exp(logits);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    [&](int32_t a, int32_t b) {
                      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
                    });
  for (size_t i = 0; i < k; ++i) {
    ids[i] = order[i];
    logprobs[i] = static_cast<float>(logits[static_cast<size_t>(order[i])] - lse);
  }
}

int32_t argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

float logprob_of(std::span<const float> logits, int32_t id) {
  return static_cast<float>(logits[static_cast<size_t>(id)] - log_sum_exp(logits));
}

Status shape_logits(const SamplingRow& row, std::span<float> logits) {
  RETURN_IF_ERROR(check_token_ids(row, static_cast<int64_t>(logits.size())));
  shape_unchecked(row, logits);
  return absl::OkStatus();
}

StatusOr<SampledToken> sample_shaped(std::span<const float> raw, std::span<const float> l,
                                     const SamplingRow& row) {
  RETURN_IF_ERROR(check_raw(raw, l));
  RETURN_IF_ERROR(check_shaped(l));
  SampledToken out;
  out.token = row.temperature <= kGreedyTemperature ? argmax(l) : draw(l, row);
  // Log-probabilities come from the raw row (see SampledToken::logprob).
  out.logprob = logprob_of(raw, out.token);
  if (row.n_top_logprobs > 0) {
    const size_t k = std::min(static_cast<size_t>(row.n_top_logprobs), raw.size());
    std::vector<int32_t> ids(k);
    std::vector<float> lps(k);
    log_softmax_topk_row(raw, ids, lps);
    for (size_t i = 0; i < k; ++i) out.top_logprobs.push_back({ids[i], lps[i]});
  }
  return out;
}

StatusOr<SampledToken> sample_row(std::span<const float> raw, const SamplingRow& row,
                                  std::vector<float>& scratch) {
  if (!shapes_logits(row)) return sample_shaped(raw, raw, row);
  scratch.assign(raw.begin(), raw.end());
  RETURN_IF_ERROR(shape_logits(row, scratch));
  return sample_shaped(raw, scratch, row);
}

}  // namespace moeserve
