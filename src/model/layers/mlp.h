// The SwiGLU feed-forward block: down(silu(gate(x)) * up(x)), with gate and up
// stacked into one weight so one fused op computes both.
#pragma once

#include "model/layers/linear.h"
#include "model/step_context.h"

namespace moeserve {

class DenseMlp {
 public:
  DenseMlp() = default;
  // gate_up: [2f, d] (gate rows, then up rows); down: [d, f].
  DenseMlp(ColumnParallelLinear gate_up, RowParallelLinear down)
      : gate_up_(std::move(gate_up)), down_(std::move(down)) {}

  bool defined() const { return down_.defined(); }
  int64_t intermediate() const { return down_.in_features(); }
  static void workspace(ArenaSize& size, int64_t n, int64_t intermediate) {
    size.add_act(n * 2 * intermediate).add_act(n * intermediate);
  }
  // out = down(silu(gate(x)) * up(x)). x: [n, d]; out: [n, d].
  void forward(Backend& be, ActivationArena& arena, const Tensor& x, const Tensor& out) const {
    ActivationArena::Scope scope(arena);
    const int64_t n = x.dim(0), f = intermediate();
    const Tensor scratch = arena.take_act({n, 2 * f});
    const Tensor act = arena.take_act({n, f});
    be.gate_up_silu(x, gate_up_.weight(), scratch, act);
    down_.forward(be, act, out);
  }

 private:
  ColumnParallelLinear gate_up_;
  RowParallelLinear down_;
};

}  // namespace moeserve
