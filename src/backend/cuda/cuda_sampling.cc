// CudaBackend::log_softmax_topk and CudaBackend::sample: argument checks, the host packing of
// sampling rows (one staging buffer, one upload and one download through pinned memory),
// and the launches of
// kernels/log_softmax_topk.cu and kernels/sampling.cu.
#include <algorithm>
#include <cstring>

#include "backend/cuda/cuda_internal.h"
#include "common/philox.h"
#include "kernels/log_softmax_topk.cuh"
#include "kernels/sampling.cuh"
#include "kernels/sampling_math.h"
#include "moeserve/sampling_params.h"

namespace moeserve {

using namespace cuda_detail;

namespace {

constexpr size_t kAlign = 16;

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Whether the tokens are distinct: one pass for sorted lists (the engine's are), else a sort.
template <typename T, typename TokenOf>
bool distinct_tokens(std::span<const T> v, TokenOf token_of) {
  bool increasing = true;
  for (size_t i = 1; i < v.size() && increasing; ++i) {
    increasing = token_of(v[i - 1]) < token_of(v[i]);
  }
  if (increasing) return true;
  std::vector<int32_t> ids(v.size());
  for (size_t i = 0; i < v.size(); ++i) ids[i] = token_of(v[i]);
  std::sort(ids.begin(), ids.end());
  return std::adjacent_find(ids.begin(), ids.end()) == ids.end();
}

// Appends `n` values to `buf` at a kAlign boundary; returns their byte offset.
template <typename T>
size_t append(std::vector<unsigned char>& buf, const T* values, size_t n) {
  const size_t offset = align_up(buf.size());
  buf.resize(offset + n * sizeof(T));
  if (n > 0) std::memcpy(buf.data() + offset, values, n * sizeof(T));
  return offset;
}

Status row_status(const kernels::SampleResult& r) {
  switch (r.status) {
    case kernels::SampleStatus::kOk: return absl::OkStatus();
    case kernels::SampleStatus::kNonFiniteRaw:
      return absl::InternalError(absl::StrCat("model produced a non-finite logit ", r.bad_value,
                                              " for token ", r.bad_index));
    case kernels::SampleStatus::kBadShaped:
      return absl::InvalidArgumentError(
          absl::StrCat("logits processing produced ", r.bad_value, " for token ", r.bad_index));
    case kernels::SampleStatus::kAllMasked:
      return absl::InvalidArgumentError("every token is masked (all logits are -inf)");
  }
  return absl::InternalError("sample kernel: unknown row status");
}

}  // namespace

unsigned char* CudaBackend::pinned(Tensor& buffer, size_t n_bytes) {
  // Every sample() call ends with a stream synchronize, so no copy still reads the old one.
  if (!buffer.defined() || static_cast<size_t>(buffer.n_bytes()) < n_bytes) {
    buffer = alloc_staging(DType::kI8, {static_cast<int64_t>(std::max<size_t>(n_bytes, 1))});
  }
  return static_cast<unsigned char*>(buffer.raw());
}

void CudaBackend::log_softmax_topk(const Tensor& logits, const Tensor& ids,
                                   const Tensor& logprobs) {
  const Rows l = rows_of(logits, "log_softmax_topk", "logits");
  const Rows i = rows_of(ids, "log_softmax_topk", "ids");
  const Rows lp = rows_of(logprobs, "log_softmax_topk", "logprobs");
  check_dtype(logits, DType::kF32, "log_softmax_topk", "logits");
  check_dtype(ids, DType::kI32, "log_softmax_topk", "ids");
  check_dtype(logprobs, DType::kF32, "log_softmax_topk", "logprobs");
  MS_CHECK(logits.ndim() == 2 && i.n_rows == l.n_rows && lp.n_rows == l.n_rows &&
               i.width == lp.width && i.width >= 1 && i.width <= l.width && l.width <= INT32_MAX,
           "CudaBackend::log_softmax_topk: logits ", logits.describe(), ", ids ", ids.describe(),
           ", logprobs ", logprobs.describe());
  // The kernel keeps up to 20 candidates per thread in registers; more is the host's job,
  // which copies whole tensors.
  if (i.width > kernels::kMaxLogprobTopK) {
    MS_CHECK(logits.is_contiguous() && ids.is_contiguous() && logprobs.is_contiguous(),
             "CudaBackend::log_softmax_topk: k = ", i.width, " > ", kernels::kMaxLogprobTopK,
             " needs contiguous logits, ids and logprobs");
    return Backend::log_softmax_topk(logits, ids, logprobs);
  }
  kernels::LogSoftmaxTopkParams p{};
  p.logits = logits.data<float>();
  p.logits_row_stride = l.row_stride;
  p.n_rows = l.n_rows;
  p.vocab = static_cast<int>(l.width);
  p.k = static_cast<int>(i.width);
  p.ids = ids.data<int32_t>();
  p.ids_row_stride = i.row_stride;
  p.logprobs = logprobs.data<float>();
  p.logprobs_row_stride = lp.row_stride;
  p.n_sms = n_sms();
  MS_CUDA_CHECK(cudaSetDevice(device_));
  const size_t bytes = kernels::log_softmax_topk_workspace_bytes(p.n_rows, p.vocab, p.k, p.n_sms);
  p.workspace = bytes > 0 ? workspace(bytes) : nullptr;
  MS_CUDA_CHECK(kernels::launch_log_softmax_topk(p, stream_->get()));
}

std::vector<StatusOr<SampledToken>> CudaBackend::sample(const Tensor& logits,
                                                        std::span<const SamplingRow> rows) {
  check_sample_rows(logits, rows);
  const Rows l = rows_of(logits, "sample", "logits");
  MS_CHECK(l.width >= 1 && l.width <= sampling_math::kMaxVocab, "CudaBackend::sample: logits ",
           logits.describe(), " (vocabularies of 1 to ", sampling_math::kMaxVocab, " tokens)");
  const int vocab = static_cast<int>(l.width);
  std::vector<StatusOr<SampledToken>> out(rows.size(), absl::UnknownError("not sampled"));

  // Pack the rows that pass the id check (the CPU's first check) for the device.
  std::vector<kernels::SampleRowDesc> descs;
  std::vector<size_t> desc_row;  // rows[] index of each desc
  std::vector<kernels::SampleBias> bias;
  std::vector<kernels::SamplePenalty> penalties;
  std::vector<int32_t> masks, logits_rows;
  int64_t n_shaped = 0;
  int top_k_logprobs = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    const SamplingRow& row = rows[r];
    MS_CHECK(row.n_top_logprobs <= kernels::kMaxLogprobTopK, "CudaBackend::sample: row ", r,
             " asks for ", row.n_top_logprobs, " top log-probs (at most ", kernels::kMaxLogprobTopK,
             ")");
    const bool shapes = shapes_logits(row);
    if (shapes) {
      if (Status st = check_token_ids(row, vocab); !st.ok()) {
        out[r] = st;
        continue;
      }
    }
    kernels::SampleRowDesc d{};
    d.logits_row = row.logits_row;
    d.shaped_row = shapes ? n_shaped++ : -1;
    d.u = row.temperature > kGreedyTemperature ? philox_uniform01(row.seed, row.counter) : 0.0;
    d.temperature = row.temperature;
    d.top_k = row.top_k;
    d.top_p = row.top_p;
    d.min_p = row.min_p;
    d.repetition_penalty = row.repetition_penalty;
    d.frequency_penalty = row.frequency_penalty;
    d.presence_penalty = row.presence_penalty;
    if (shapes) {
      d.bias_begin = static_cast<int32_t>(bias.size());
      d.n_bias = static_cast<int32_t>(row.logit_bias.size());
      for (const auto& [token, b] : row.logit_bias) bias.push_back({token, b});
      d.bias_distinct = distinct_tokens(row.logit_bias,
                                        [](const std::pair<int32_t, float>& e) { return e.first; });
      // Inactive penalties change nothing; the CPU's loop over them is a no-op.
      const bool penalize = row.presence_penalty != 0.0f || row.frequency_penalty != 0.0f ||
                            row.repetition_penalty != 1.0f;
      d.penalty_begin = static_cast<int32_t>(penalties.size());
      d.n_penalty = penalize ? static_cast<int32_t>(row.penalties.size()) : 0;
      if (penalize) {
        for (const PenaltyEntry& e : row.penalties) penalties.push_back({e.token, e.n_output});
      }
      d.penalty_distinct =
          distinct_tokens(row.penalties, [](const PenaltyEntry& e) { return e.token; });
      d.mask_begin = static_cast<int32_t>(masks.size());
      d.n_mask = static_cast<int32_t>(row.masked.size());
      masks.insert(masks.end(), row.masked.begin(), row.masked.end());
    }
    MS_CHECK(bias.size() + penalties.size() + masks.size() <= INT32_MAX,
             "CudaBackend::sample: too many bias, penalty and mask entries");
    descs.push_back(d);
    desc_row.push_back(r);
    logits_rows.push_back(static_cast<int32_t>(row.logits_row));
    top_k_logprobs = std::max(top_k_logprobs, std::min(row.n_top_logprobs, vocab));
  }
  if (descs.empty()) return out;
  const auto n = static_cast<int64_t>(descs.size());

  // One staging buffer and one upload; the device scratch mirrors it and adds the outputs
  // (results, then top log-probs: one download) and the workspaces.
  staging_.clear();
  const size_t off_descs = append(staging_, descs.data(), descs.size());
  const size_t off_bias = append(staging_, bias.data(), bias.size());
  const size_t off_pen = append(staging_, penalties.data(), penalties.size());
  const size_t off_masks = append(staging_, masks.data(), masks.size());
  const size_t off_rows = append(staging_, logits_rows.data(), logits_rows.size());
  const size_t off_results = align_up(staging_.size());
  const size_t off_top_ids = align_up(off_results + n * sizeof(kernels::SampleResult));
  const size_t off_top_lps = align_up(off_top_ids + n * top_k_logprobs * sizeof(int32_t));
  const size_t off_download_end = off_top_lps + n * top_k_logprobs * sizeof(float);
  const int sms = n_sms();
  const size_t lst_bytes =
      top_k_logprobs > 0 ? kernels::log_softmax_topk_workspace_bytes(n, vocab, top_k_logprobs, sms)
                         : 0;
  const size_t off_lst = align_up(off_download_end);
  const int64_t shaped_stride = (vocab + 3) / 4 * 4;
  const size_t off_shaped = align_up(off_lst + lst_bytes);
  const size_t total = off_shaped + n_shaped * shaped_stride * sizeof(float);
  MS_CUDA_CHECK(cudaSetDevice(device_));
  auto* dev = static_cast<unsigned char*>(workspace(total));
  unsigned char* upload = pinned(sample_upload_, staging_.size());
  std::memcpy(upload, staging_.data(), staging_.size());
  MS_CUDA_CHECK(
      cudaMemcpyAsync(dev, upload, staging_.size(), cudaMemcpyHostToDevice, stream_->get()));

  kernels::SampleParams sp{};
  sp.logits = logits.data<float>();
  sp.logits_row_stride = l.row_stride;
  sp.vocab = vocab;
  sp.shaped = reinterpret_cast<float*>(dev + off_shaped);
  sp.shaped_row_stride = shaped_stride;
  sp.rows = reinterpret_cast<const kernels::SampleRowDesc*>(dev + off_descs);
  sp.n_rows = n;
  sp.bias = reinterpret_cast<const kernels::SampleBias*>(dev + off_bias);
  sp.penalties = reinterpret_cast<const kernels::SamplePenalty*>(dev + off_pen);
  sp.masks = reinterpret_cast<const int32_t*>(dev + off_masks);
  sp.greedy_temperature = kGreedyTemperature;
  sp.results = reinterpret_cast<kernels::SampleResult*>(dev + off_results);
  MS_CUDA_CHECK(kernels::launch_sample(sp, stream_->get()));
  if (top_k_logprobs > 0) {
    kernels::LogSoftmaxTopkParams lp{};
    lp.logits = logits.data<float>();
    lp.logits_row_stride = l.row_stride;
    lp.rows = reinterpret_cast<const int32_t*>(dev + off_rows);
    lp.n_rows = n;
    lp.vocab = vocab;
    lp.k = top_k_logprobs;
    lp.ids = reinterpret_cast<int32_t*>(dev + off_top_ids);
    lp.ids_row_stride = top_k_logprobs;
    lp.logprobs = reinterpret_cast<float*>(dev + off_top_lps);
    lp.logprobs_row_stride = top_k_logprobs;
    lp.n_sms = sms;
    lp.workspace = lst_bytes > 0 ? dev + off_lst : nullptr;
    MS_CUDA_CHECK(kernels::launch_log_softmax_topk(lp, stream_->get()));
  }
  const size_t n_download = off_download_end - off_results;
  unsigned char* host = pinned(sample_download_, n_download);
  MS_CUDA_CHECK(
      cudaMemcpyAsync(host, dev + off_results, n_download, cudaMemcpyDeviceToHost, stream_->get()));
  MS_CUDA_CHECK(cudaStreamSynchronize(stream_->get()));

  for (int64_t j = 0; j < n; ++j) {
    kernels::SampleResult res;
    std::memcpy(&res, host + j * sizeof(res), sizeof(res));
    const size_t r = desc_row[static_cast<size_t>(j)];
    if (Status st = row_status(res); !st.ok()) {
      out[r] = st;
      continue;
    }
    SampledToken t;
    t.token = res.token;
    t.logprob = res.logprob;
    const int k = std::min(rows[r].n_top_logprobs, vocab);
    for (int c = 0; c < k; ++c) {
      TokenLogprob e;
      const size_t at = static_cast<size_t>(j * top_k_logprobs + c);
      std::memcpy(&e.token, host + (off_top_ids - off_results) + at * sizeof(int32_t),
                  sizeof(int32_t));
      std::memcpy(&e.logprob, host + (off_top_lps - off_results) + at * sizeof(float),
                  sizeof(float));
      t.top_logprobs.push_back(e);
    }
    out[r] = std::move(t);
  }
  return out;
}

}  // namespace moeserve
