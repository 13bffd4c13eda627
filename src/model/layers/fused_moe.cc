#include "model/layers/fused_moe.h"

namespace moeserve {

void FusedMoE::workspace(ArenaSize& size, int64_t n, int64_t hidden, int64_t n_experts, int top_k,
                         int64_t shared_intermediate) {
  // Router logits and expert weights stay F32 whatever the activations are.
  size.add(DType::kF32, n * n_experts).add(DType::kI32, n * top_k).add(DType::kF32, n * top_k);
  if (shared_intermediate > 0) {
    size.add_act(n * hidden);
    DenseMlp::workspace(size, n, shared_intermediate);
  }
}

void FusedMoE::forward(Backend& be, ActivationArena& arena, const Tensor& x,
                       const Tensor& out) const {
  ActivationArena::Scope scope(arena);
  const int64_t n = x.dim(0);
  const Tensor logits = arena.take(DType::kF32, {n, w_.router.out_features()});
  const Tensor ids = arena.take(DType::kI32, {n, gate_.top_k});
  const Tensor weights = arena.take(DType::kF32, {n, gate_.top_k});
  w_.router.forward(be, x, logits);
  be.moe_gate(logits, w_.router_bias, gate_, ids, weights);
  be.moe_ffn(x, ids, weights, w_.experts_gate_up, w_.experts_down, out);
  if (w_.shared.defined()) {
    const Tensor shared = arena.take_act({n, x.dim(1)});
    w_.shared.forward(be, arena, x, shared);
    be.add(out, shared, out);
  }
}

}  // namespace moeserve
