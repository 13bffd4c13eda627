#include "engine/model_runner.h"

#include <algorithm>
#include <set>

namespace moeserve {

ModelRunner::ModelRunner(DeepseekV2Model& model, int n_blocks, int block_size)
    : model_(model),
      cache_(model.backend(), model.config().num_hidden_layers, n_blocks, block_size,
             model.kv_row_width()),
      allocator_(n_blocks) {}

int ModelRunner::create_sequence() {
  seqs_[next_id_] = Sequence{};
  return next_id_++;
}

void ModelRunner::release_sequence(int seq_id) {
  auto it = seqs_.find(seq_id);
  MS_CHECK(it != seqs_.end(), "unknown sequence ", seq_id);
  for (int32_t b : it->second.blocks) allocator_.release(b);
  seqs_.erase(it);
}

int64_t ModelRunner::n_cached(int seq_id) const {
  const auto it = seqs_.find(seq_id);
  MS_CHECK(it != seqs_.end(), "unknown sequence ", seq_id);
  return it->second.n_cached;
}

StatusOr<std::vector<std::vector<float>>> ModelRunner::step(
    const std::vector<SequenceChunk>& chunks) {
  const int block_size = cache_.block_size();
  ForwardBatch batch;
  batch.n_seqs = static_cast<int32_t>(chunks.size());
  // Blocks taken for this step, returned if it fails.
  std::vector<std::pair<int, int32_t>> taken;
  auto roll_back = [&] {
    for (auto it = taken.rbegin(); it != taken.rend(); ++it) {
      seqs_[it->first].blocks.pop_back();
      allocator_.release(it->second);
    }
  };
  std::set<int> seen;
  for (const SequenceChunk& c : chunks) {
    if (!seen.insert(c.seq_id).second) {
      roll_back();
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", c.seq_id, " appears twice in one step"));
    }
    auto it = seqs_.find(c.seq_id);
    if (it == seqs_.end()) {
      roll_back();
      return absl::NotFoundError(absl::StrCat("unknown sequence ", c.seq_id));
    }
    Sequence& seq = it->second;
    const int64_t end = seq.n_cached + static_cast<int64_t>(c.tokens.size());
    while (static_cast<int64_t>(seq.blocks.size()) * block_size < end) {
      const auto block = allocator_.allocate();
      if (!block.has_value()) {
        roll_back();
        return absl::ResourceExhaustedError(absl::StrCat("KV cache full: ", cache_.n_blocks(),
                                                         " blocks of ", block_size,
                                                         " tokens are all in use"));
      }
      seq.blocks.push_back(*block);
      taken.push_back({c.seq_id, *block});
    }
    batch.max_blocks = std::max<int32_t>(batch.max_blocks, static_cast<int32_t>(seq.blocks.size()));
  }
  for (size_t i = 0; i < chunks.size(); ++i) {
    const SequenceChunk& c = chunks[i];
    const Sequence& seq = seqs_[c.seq_id];
    for (size_t j = 0; j < c.tokens.size(); ++j) {
      const int64_t pos = seq.n_cached + static_cast<int64_t>(j);
      if (c.all_logits || j + 1 == c.tokens.size()) {
        batch.logits_rows.push_back(static_cast<int32_t>(batch.tokens.size()));
      }
      batch.tokens.push_back(c.tokens[j]);
      batch.positions.push_back(static_cast<int32_t>(pos));
      batch.token_seq.push_back(static_cast<int32_t>(i));
      batch.slot_mapping.push_back(seq.blocks[static_cast<size_t>(pos / block_size)] * block_size +
                                   static_cast<int32_t>(pos % block_size));
    }
    std::vector<int32_t> table(static_cast<size_t>(batch.max_blocks),
                               seq.blocks.empty() ? 0 : seq.blocks[0]);
    std::copy(seq.blocks.begin(), seq.blocks.end(), table.begin());
    batch.block_tables.insert(batch.block_tables.end(), table.begin(), table.end());
  }
  auto logits = model_.forward(batch, cache_);
  if (!logits.ok()) {
    roll_back();
    return logits.status();
  }
  Backend& be = model_.backend();
  Tensor host = Tensor::empty_host(DType::kF32, logits->shape());
  be.copy(*logits, host);
  be.synchronize();
  for (const SequenceChunk& c : chunks)
    seqs_[c.seq_id].n_cached += static_cast<int64_t>(c.tokens.size());
  std::vector<std::vector<float>> rows(static_cast<size_t>(host.dim(0)));
  const int64_t vocab = host.dim(1);
  for (int64_t r = 0; r < host.dim(0); ++r) {
    rows[static_cast<size_t>(r)].assign(host.data<float>() + r * vocab,
                                        host.data<float>() + (r + 1) * vocab);
  }
  return rows;
}

}  // namespace moeserve
