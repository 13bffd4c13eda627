#include "model/step_context.h"

#include <algorithm>
#include <cstring>

#include "common/logging.h"

namespace moeserve {
namespace {

int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

}  // namespace

ArenaSize& ArenaSize::add(DType dtype, int64_t numel) {
  bytes_ += round_up(dtype_bytes(dtype, numel), kAlign);
  return *this;
}

ActivationArena::ActivationArena(Backend& backend, int64_t capacity_bytes, DType activations)
    : act_(activations), capacity_(round_up(capacity_bytes, ArenaSize::kAlign)) {
  storage_ = backend.alloc(DType::kF32, {std::max<int64_t>(capacity_ / 4, 1)});
}

Tensor ActivationArena::take(DType dtype, std::vector<int64_t> shape) {
  int64_t numel = 1;
  for (const int64_t d : shape) numel *= d;
  const int64_t bytes = round_up(dtype_bytes(dtype, numel), ArenaSize::kAlign);
  MS_CHECK(offset_ + bytes <= capacity_, "activation arena: taking ", bytes, " bytes at ", offset_,
           " overflows its ", capacity_, " bytes (a layer's workspace arithmetic is short)");
  // Views of the F32 storage reinterpreted; offsets are multiples of kAlign.
  const int64_t first = offset_ / 4;
  offset_ += bytes;
  high_water_ = std::max(high_water_, offset_);
  return storage_.slice(0, first, first + bytes / 4).view_as(dtype, std::move(shape));
}

StepContext::StepContext(Backend& backend, const StepLimits& limits, int64_t arena_bytes)
    : backend_(backend), limits_(limits), arena_(backend, arena_bytes, limits.activations) {
  const int64_t n = 4 * limits.max_tokens + limits.max_logits + limits.max_blocks;
  staging_ = backend.alloc_staging(DType::kI32, {n});
  meta_ = backend.alloc(DType::kI32, {n});
}

bool StepContext::fits(const ForwardBatch& b) const {
  return b.n_tokens() <= limits_.max_tokens && b.n_seqs <= limits_.max_seqs &&
         static_cast<int64_t>(b.logits_rows.size()) <= limits_.max_logits &&
         static_cast<int64_t>(b.block_tables.size()) <= limits_.max_blocks;
}

void StepContext::upload(const ForwardBatch& b, int block_size) {
  MS_CHECK(fits(b), "step context: the batch exceeds the reserved limits");
  n_tokens_ = b.n_tokens();
  n_logits_ = static_cast<int64_t>(b.logits_rows.size());
  // Regions sit at fixed offsets (capacity apart) so their addresses never
  // change; only the used prefix of each is copied.
  const int64_t cap = limits_.max_tokens;
  int64_t offset = 0;
  auto region = [&](const std::vector<int32_t>& v, int64_t capacity) {
    const int64_t len = static_cast<int64_t>(v.size());
    const Tensor host = staging_.slice(0, offset, offset + len);
    const Tensor dev = meta_.slice(0, offset, offset + len);
    if (len > 0) {
      std::memcpy(host.raw(), v.data(), v.size() * sizeof(int32_t));
      backend_.copy(host, dev);
    }
    offset += capacity;
    return dev;
  };
  tokens_ = region(b.tokens, cap);
  positions_ = region(b.positions, cap);
  attn_.token_seq = region(b.token_seq, cap);
  attn_.slot_mapping = region(b.slot_mapping, cap);
  logits_rows_ = region(b.logits_rows, limits_.max_logits);
  attn_.block_tables = region(b.block_tables, limits_.max_blocks).reshape({b.n_seqs, b.max_blocks});
  attn_.token_pos = positions_;
  attn_.block_size = block_size;
  arena_.reset();
}

}  // namespace moeserve
