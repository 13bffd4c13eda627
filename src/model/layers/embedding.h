// Token embedding and the language-model head.
#pragma once

#include "backend/backend.h"
#include "model/layers/linear.h"
#include "model/layers/norm.h"
#include "model/step_context.h"

namespace moeserve {

class Embedding {
 public:
  Embedding() = default;
  explicit Embedding(Tensor table) : table_(std::move(table)) {}

  int64_t dim() const { return table_.dim(1); }
  // out[t] = table[ids[t]]. ids: [n] I32; out: [n, dim] activation.
  void forward(Backend& be, const Tensor& ids, const Tensor& out) const {
    be.gather_rows(table_, ids, out);
  }

 private:
  Tensor table_;  // [vocab, dim]
};

// The final norm and the vocabulary projection, on the rows whose logits the
// step returns.
class LmHead {
 public:
  LmHead() = default;
  LmHead(RmsNorm norm, ColumnParallelLinear head)
      : norm_(std::move(norm)), head_(std::move(head)) {}

  int64_t vocab_size() const { return head_.out_features(); }
  // The arena bytes forward() takes for n_logits rows (the logits excluded).
  static void workspace(ArenaSize& size, int64_t n_logits, int64_t hidden) {
    size.add_act(n_logits * hidden);
  }
  // logits[i] = head(norm(hidden[ctx.logits_rows()[i]])). hidden: [n, d];
  // logits: [n_logits, vocab] F32.
  void forward(Backend& be, StepContext& ctx, const Tensor& hidden, const Tensor& logits) const {
    ActivationArena::Scope scope(ctx.arena());
    const Tensor rows = ctx.arena().take_act({ctx.n_logits(), hidden.dim(1)});
    be.gather_rows(hidden, ctx.logits_rows(), rows);
    norm_.forward(be, rows, rows);
    head_.forward(be, rows, logits);
  }

 private:
  RmsNorm norm_;
  ColumnParallelLinear head_;
};

}  // namespace moeserve
