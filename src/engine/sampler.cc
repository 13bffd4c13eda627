#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/status.h"

namespace moeserve {
namespace {

double log_sum_exp(std::span<const float> logits) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - mx);
  return mx + std::log(sum);
}

// Checks the two rows; InvalidArgument names the first bad entry.
Status check_logits(std::span<const float> raw, std::span<const float> processed) {
  if (raw.empty() || raw.size() != processed.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("logits rows must be non-empty and of equal size, got ", raw.size(),
                     " raw and ", processed.size(), " processed"));
  }
  for (size_t i = 0; i < raw.size(); ++i) {
    if (!std::isfinite(raw[i])) {
      return absl::InternalError(
          absl::StrCat("model produced a non-finite logit ", raw[i], " for token ", i));
    }
  }
  bool any_unmasked = false;
  for (size_t i = 0; i < processed.size(); ++i) {
    const float l = processed[i];
    if (std::isnan(l) || l == std::numeric_limits<float>::infinity()) {
      return absl::InvalidArgumentError(
          absl::StrCat("logits processing produced ", l, " for token ", i));
    }
    any_unmasked |= l != -std::numeric_limits<float>::infinity();
  }
  if (!any_unmasked)
    return absl::InvalidArgumentError("every token is masked (all logits are -inf)");
  return absl::OkStatus();
}

// Uniform in [0, 1) from the top 53 bits: unlike std::uniform_real_distribution, the same on
// every standard library, so a seed reproduces across builds.
// top_p ranks this many tokens first, then twice as many at each step.
constexpr size_t kFirstRankedBlock = 256;

double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

}  // namespace

Sampler::Sampler(const SamplingParams& params, int sequence_index)
    : temperature_(params.temperature),
      top_k_(params.top_k),
      top_p_(params.top_p),
      min_p_(params.min_p),
      n_top_logprobs_(params.logprobs ? params.top_logprobs : 0) {
  if (params.seed) {
    seed_ = *params.seed + static_cast<uint64_t>(sequence_index);
  } else {
    std::random_device rd;
    seed_ = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  rng_.seed(seed_);
}

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
  out.reserve(static_cast<size_t>(k));
  for (int i = 0; i < k; ++i) out.emplace_back(ids[i], static_cast<float>(logits[ids[i]] - lse));
  return out;
}

StatusOr<SampledToken> Sampler::sample(std::span<const float> raw_logits,
                                       std::span<const float> processed_logits) {
  RETURN_IF_ERROR(check_logits(raw_logits, processed_logits));
  const std::span<const float> l = processed_logits;
  SampledToken out;
  if (temperature_ <= kGreedyTemperature) {
    out.token = argmax(l);
  } else {
    // Candidates: unmasked ids. `by_rank` orders them most likely first, ties by lower id.
    std::vector<int32_t> ids;
    ids.reserve(l.size());
    for (size_t i = 0; i < l.size(); ++i) {
      if (l[i] != -std::numeric_limits<float>::infinity()) ids.push_back(static_cast<int32_t>(i));
    }
    auto by_rank = [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); };
    const bool top_k_cuts = top_k_ > 0 && static_cast<size_t>(top_k_) < ids.size();
    if (top_k_cuts) {
      std::nth_element(ids.begin(), ids.begin() + top_k_, ids.end(), by_rank);
      ids.resize(static_cast<size_t>(top_k_));
      std::sort(ids.begin(), ids.end(), by_rank);  // few: ranked, as top_p wants them
    }

    // Unnormalised probabilities at this temperature, relative to the best: w ∈ (0, 1].
    double best = -std::numeric_limits<double>::infinity();
    for (int32_t id : ids) best = std::max(best, static_cast<double>(l[id]));
    auto weight = [&](int32_t id) { return std::exp((l[id] - best) / temperature_); };
    std::vector<double> w(ids.size());
    double total = 0.0;
    for (size_t i = 0; i < ids.size(); ++i) total += w[i] = weight(ids[i]);
    // top_p over the top_k survivors: the shortest most-likely prefix whose mass reaches top_p.
    // Ranking the whole vocabulary is the slow part, so rank blocks of doubling size only as
    // far as the prefix reaches (each block is exactly what a full sort would put there).
    if (top_p_ < 1.0f) {
      const double target = top_p_ * total;
      double mass = 0.0;
      size_t n_ranked = top_k_cuts ? ids.size() : 0;
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i == n_ranked) {
          n_ranked = std::min(ids.size(), std::max<size_t>(kFirstRankedBlock, 2 * n_ranked));
          const auto first = ids.begin() + static_cast<std::ptrdiff_t>(i);
          const auto last = ids.begin() + static_cast<std::ptrdiff_t>(n_ranked);
          std::nth_element(first, last, ids.end(), by_rank);
          std::sort(first, last, by_rank);
        }
        mass += w[i] = weight(ids[i]);
        if (mass >= target || i + 1 == ids.size()) {
          ids.resize(i + 1);
          w.resize(i + 1);
          total = mass;
          break;
        }
      }
    }
    // min_p: p ≥ min_p · p_max ⇔ w ≥ min_p, since w is p / p_max. The best token always stays.
    if (min_p_ > 0.0f) {
      size_t kept = 0;
      total = 0.0;
      for (size_t i = 0; i < ids.size(); ++i) {
        if (w[i] >= min_p_) {
          ids[kept] = ids[i];
          total += w[kept] = w[i];
          ++kept;
        }
      }
      ids.resize(kept);
      w.resize(kept);
    }
    // Inverse CDF; the last candidate catches rounding at the top end.
    const double target = uniform01(rng_) * total;
    double mass = 0.0;
    out.token = ids.back();
    for (size_t i = 0; i < ids.size(); ++i) {
      mass += w[i];
      if (target < mass) {
        out.token = ids[i];
        break;
      }
    }
  }
  // Log-probabilities come from the raw row (see SampledToken::logprob).
  const double lse = log_sum_exp(raw_logits);
  out.logprob = static_cast<float>(raw_logits[static_cast<size_t>(out.token)] - lse);
  if (n_top_logprobs_ > 0) {
    for (auto [id, lp] : top_logprobs(raw_logits, n_top_logprobs_)) {
      out.top_logprobs.push_back({.token = id, .logprob = lp});
    }
  }
  return out;
}

// Defined here, beside the sampler that reads most of these fields.
Status validate(const SamplingParams& p, int vocab_size, int max_n) {
  auto invalid = [](auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (vocab_size < 1) return invalid("vocab_size must be at least 1, got ", vocab_size);
  if (max_n < 1) return invalid("max_n must be at least 1, got ", max_n);

  // NaN slips through every range comparison below, so finiteness comes first.
  const std::pair<const char*, float> floats[] = {
      {"temperature", p.temperature},
      {"top_p", p.top_p},
      {"min_p", p.min_p},
      {"presence_penalty", p.presence_penalty},
      {"frequency_penalty", p.frequency_penalty},
      {"repetition_penalty", p.repetition_penalty},
  };
  for (const auto& [name, value] : floats) {
    if (!std::isfinite(value)) return invalid(name, " must be a finite number, got ", value);
  }
  if (p.temperature < 0.0f) return invalid("temperature must be non-negative, got ", p.temperature);
  if (p.top_k < -1) {
    return invalid("top_k must be 0 or -1 (disabled), or at least 1, got ", p.top_k);
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
    return invalid("top_p must be in (0, 1], got ", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
    return invalid("min_p must be in [0, 1], got ", p.min_p);

  for (const auto& [id, bias] : p.logit_bias) {
    if (id < 0 || id >= vocab_size) {
      return invalid("logit_bias token id ", id, " is out of vocabulary (size ", vocab_size, ")");
    }
    if (!std::isfinite(bias)) {
      return invalid("logit_bias[", id, "] must be a finite number, got ", bias);
    }
    if (std::fabs(bias) > kMaxLogitBias) {
      return invalid("logit_bias[", id, "] must be in [-100, 100], got ", bias);
    }
  }
  if (std::fabs(p.presence_penalty) > kMaxPresenceFrequencyPenalty) {
    return invalid("presence_penalty must be in [-2, 2], got ", p.presence_penalty);
  }
  if (std::fabs(p.frequency_penalty) > kMaxPresenceFrequencyPenalty) {
    return invalid("frequency_penalty must be in [-2, 2], got ", p.frequency_penalty);
  }
  if (!(p.repetition_penalty > 0.0f)) {
    return invalid("repetition_penalty must be greater than zero, got ", p.repetition_penalty);
  }

  if (p.max_tokens < 1) return invalid("max_tokens must be at least 1, got ", p.max_tokens);
  if (p.min_tokens < 0) {
    return invalid("min_tokens must be greater than or equal to 0, got ", p.min_tokens);
  }
  if (p.min_tokens > p.max_tokens) {
    return invalid("min_tokens must be less than or equal to max_tokens=", p.max_tokens, ", got ",
                   p.min_tokens);
  }
  if (p.stop.size() > static_cast<size_t>(kMaxStopStrings)) {
    return invalid("stop must have at most ", kMaxStopStrings, " strings, got ", p.stop.size());
  }
  for (size_t i = 0; i < p.stop.size(); ++i) {
    if (p.stop[i].empty()) return invalid("stop[", i, "] must not be empty");
    if (p.stop[i].size() > kMaxStopStringBytes) {
      return invalid("stop[", i, "] must be at most ", kMaxStopStringBytes, " bytes, got ",
                     p.stop[i].size());
    }
  }
  for (int32_t id : p.stop_token_ids) {
    if (id < 0 || id >= vocab_size) {
      return invalid("stop_token_ids token id ", id, " is out of vocabulary (size ", vocab_size,
                     ")");
    }
  }

  if (p.top_logprobs < 0 || p.top_logprobs > kMaxTopLogprobs) {
    return invalid("top_logprobs must be in [0, 20], got ", p.top_logprobs);
  }
  if (p.top_logprobs > 0 && !p.logprobs) {
    return invalid("top_logprobs must be 0 when logprobs is false, got ", p.top_logprobs);
  }
  if (p.n < 1) return invalid("n must be at least 1, got ", p.n);
  if (p.n > max_n) return invalid("n must be at most ", max_n, ", got ", p.n);
  return absl::OkStatus();
}

std::vector<StatusOr<SampledToken>> sample_rows(const Tensor& logits,
                                                std::span<const RowToSample> rows) {
  MS_CHECK(logits.dtype() == DType::kF32 && logits.ndim() == 2, "sample_rows: logits of ",
           dtype_name(logits.dtype()), " with ", logits.ndim(), " dims");
  const int64_t vocab = logits.dim(1);
  std::vector<StatusOr<SampledToken>> out;
  out.reserve(rows.size());
  std::vector<float> processed;
  for (const RowToSample& r : rows) {
    MS_CHECK(r.row >= 0 && r.row < logits.dim(0), "sample_rows: row ", r.row, " of ",
             logits.dim(0));
    const std::span<const float> raw(logits.data<float>() + r.row * vocab,
                                     static_cast<size_t>(vocab));
    std::span<const float> shaped = raw;
    if (r.processor->active(*r.counts)) {
      processed.assign(raw.begin(), raw.end());
      const Status st = r.processor->apply(*r.counts, processed);
      if (!st.ok()) {
        out.emplace_back(st);
        continue;
      }
      shaped = processed;
    }
    out.push_back(r.sampler->sample(raw, shaped));
  }
  return out;
}

}  // namespace moeserve
