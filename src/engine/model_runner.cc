#include "engine/model_runner.h"

#include <algorithm>
#include <set>

#include "common/logging.h"

namespace moeserve {

StatusOr<Tensor> run_step(DeepseekV2Model& model, const KvCache& cache,
                          std::span<const RunSeq> seqs) {
  const int block_size = cache.block_size();
  ForwardBatch batch;
  batch.n_seqs = static_cast<int32_t>(seqs.size());
  for (const RunSeq& s : seqs) {
    const int end = s.n_computed + static_cast<int>(s.tokens.size());
    if (s.tokens.empty() || static_cast<int64_t>(s.block_table.size()) * block_size < end) {
      return absl::InternalError(absl::StrCat("run_step: a sequence of ", s.tokens.size(),
                                              " new tokens at ", s.n_computed, " has ",
                                              s.block_table.size(), " blocks"));
    }
    batch.max_blocks =
        std::max<int32_t>(batch.max_blocks, static_cast<int32_t>(s.block_table.size()));
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    const RunSeq& s = seqs[i];
    for (size_t j = 0; j < s.tokens.size(); ++j) {
      const int pos = s.n_computed + static_cast<int>(j);
      if (s.all_logits || j + 1 == s.tokens.size()) {
        batch.logits_rows.push_back(static_cast<int32_t>(batch.tokens.size()));
      }
      batch.tokens.push_back(s.tokens[j]);
      batch.positions.push_back(pos);
      batch.token_seq.push_back(static_cast<int32_t>(i));
      batch.slot_mapping.push_back(
          s.block_table[static_cast<size_t>(pos / block_size)] * block_size + pos % block_size);
    }
    // Unused columns repeat the first block: valid ids the kernels never read.
    std::vector<int32_t> table(static_cast<size_t>(batch.max_blocks), s.block_table[0]);
    std::copy(s.block_table.begin(), s.block_table.end(), table.begin());
    batch.block_tables.insert(batch.block_tables.end(), table.begin(), table.end());
  }
  return model.forward(batch, cache);
}

IsolatedStep run_step_isolated(const StepFn& step, DeepseekV2Model& model, const KvCache& cache,
                               std::span<const RunSeq> seqs) {
  IsolatedStep out;
  out.failure.resize(seqs.size());
  auto batch = step(model, cache, seqs);
  if (batch.ok()) {
    out.logits = *std::move(batch);
    return out;
  }
  MS_LOG_ERROR("model step of {} sequences failed: {}{}", seqs.size(), batch.status().ToString(),
               seqs.size() > 1 ? "; running them one by one" : "");
  const int64_t vocab = model.config().vocab_size;
  int64_t n_rows = 0;
  for (const RunSeq& s : seqs) n_rows += s.all_logits ? static_cast<int64_t>(s.tokens.size()) : 1;
  // Each solo run's logits live in the model's arena until the next run: copied out at once.
  Backend& be = model.backend();
  out.logits = be.alloc(DType::kF32, {n_rows, vocab});
  int64_t row = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int64_t n = seqs[i].all_logits ? static_cast<int64_t>(seqs[i].tokens.size()) : 1;
    StatusOr<Tensor> solo =
        seqs.size() == 1 ? std::move(batch) : step(model, cache, seqs.subspan(i, 1));
    if (solo.ok()) {
      be.copy(*solo, out.logits.slice(0, row, row + n));
    } else {
      out.failure[i] =
          absl::InternalError(absl::StrCat("model step failed: ", solo.status().message()));
    }
    row += n;
  }
  return out;
}

ModelRunner::ModelRunner(DeepseekV2Model& model, int n_blocks, int block_size, DType kv_dtype)
    : model_(model),
      cache_(model.backend(), model.config().num_hidden_layers, n_blocks, block_size,
             model.kv_row_width(), kv_dtype),
      blocks_(n_blocks, block_size, /*enable_prefix_caching=*/false) {}

int ModelRunner::create_sequence() {
  blocks_.allocate_for(next_id_, {}, "");
  return next_id_++;
}

void ModelRunner::release_sequence(int seq_id) {
  MS_CHECK(blocks_.has_sequence(seq_id), "unknown sequence ", seq_id);
  blocks_.free(seq_id);
}

int64_t ModelRunner::n_cached(int seq_id) const {
  MS_CHECK(blocks_.has_sequence(seq_id), "unknown sequence ", seq_id);
  return blocks_.n_slots(seq_id);
}

StatusOr<std::vector<std::vector<float>>> ModelRunner::step(
    const std::vector<SequenceChunk>& chunks) {
  // Everything is checked before any slot is taken, so a refused step changes nothing.
  std::set<int> seen;
  int n_new_blocks = 0;
  for (const SequenceChunk& c : chunks) {
    if (!seen.insert(c.seq_id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", c.seq_id, " appears twice in one step"));
    }
    if (!blocks_.has_sequence(c.seq_id)) {
      return absl::NotFoundError(absl::StrCat("unknown sequence ", c.seq_id));
    }
    const int n_slots = blocks_.n_slots(c.seq_id);
    n_new_blocks += blocks_.blocks_for(n_slots + static_cast<int>(c.tokens.size())) -
                    static_cast<int>(blocks_.block_table(c.seq_id).size());
  }
  if (!blocks_.can_allocate(n_new_blocks)) {
    return absl::ResourceExhaustedError(absl::StrCat("KV cache full: ", cache_.n_blocks(),
                                                     " blocks of ", cache_.block_size(),
                                                     " tokens are all in use"));
  }
  std::vector<int> n_before(chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    n_before[i] = blocks_.n_slots(chunks[i].seq_id);
    MS_CHECK(blocks_.append_slots(chunks[i].seq_id, static_cast<int>(chunks[i].tokens.size())),
             "append_slots after can_allocate");
  }
  std::vector<RunSeq> run(chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    run[i] = RunSeq{.n_computed = n_before[i],
                    .tokens = chunks[i].tokens,
                    .block_table = blocks_.block_table(chunks[i].seq_id),
                    .all_logits = chunks[i].all_logits};
  }
  auto logits = run_step(model_, cache_, run);
  if (!logits.ok()) {
    for (size_t i = 0; i < chunks.size(); ++i) blocks_.truncate(chunks[i].seq_id, n_before[i]);
    return logits.status();
  }
  Tensor host = Tensor::empty_host(DType::kF32, logits->shape());
  model_.backend().copy(*logits, host);
  model_.backend().synchronize();
  std::vector<std::vector<float>> rows(static_cast<size_t>(host.dim(0)));
  const int64_t vocab = host.dim(1);
  for (int64_t r = 0; r < host.dim(0); ++r) {
    rows[static_cast<size_t>(r)].assign(host.data<float>() + r * vocab,
                                        host.data<float>() + (r + 1) * vocab);
  }
  return rows;
}

}  // namespace moeserve
