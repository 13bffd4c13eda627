// DeepSeekMoE: the router, the routed experts and the shared experts of one
// layer. The gate picks top-k experts per token (GateParams: softmax or
// sigmoid scores, group-limited selection, bias for selection only,
// normalisation and scaling); the experts run as one grouped op (moe_ffn);
// the shared experts, a dense SwiGLU, add to every token.
#pragma once

#include "model/layers/linear.h"
#include "model/layers/mlp.h"
#include "model/step_context.h"

namespace moeserve {

class FusedMoE {
 public:
  struct Weights {
    Linear router;           // [E, d] F32
    Tensor router_bias;      // [E] F32 or undefined (noaux_tc only)
    Tensor experts_gate_up;  // [E, 2f, d]: this rank's experts (expert parallelism)
    Tensor experts_down;     // [E, d, f]
    DenseMlp shared;         // undefined when the model has no shared experts
  };
  FusedMoE() = default;
  FusedMoE(Weights w, GateParams gate) : w_(std::move(w)), gate_(gate) {}

  static void workspace(ArenaSize& size, int64_t n, int64_t hidden, int64_t n_experts, int top_k,
                        int64_t shared_intermediate);
  // out = Σ_k weight_k · expert_k(x) + shared(x). x: [n, d]; out: [n, d].
  void forward(Backend& be, ActivationArena& arena, const Tensor& x, const Tensor& out) const;

 private:
  Weights w_;
  GateParams gate_;
};

}  // namespace moeserve
