#include "model/layers/mla_attention.h"

namespace moeserve {

void MlaAttention::workspace(ArenaSize& size, int64_t n, const Dims& d) {
  size.add_act(n * d.n_heads * (d.nope + d.rope));
  if (d.q_lora > 0) size.add_act(n * d.q_lora);
  size.add_act(n * (d.latent + d.rope))
      .add_act(n * d.n_heads * d.latent)
      .add_act(n * d.n_heads * d.latent)
      .add_act(n * d.n_heads * d.v);
}

void MlaAttention::forward(Backend& be, StepContext& ctx, const Tensor& x, const Tensor& cache,
                           const Tensor& out) const {
  ActivationArena& arena = ctx.arena();
  ActivationArena::Scope scope(arena);
  const Dims& d = dims_;
  const int64_t n = ctx.n_tokens();

  // Queries [n, H, nope + rope]; their rope part rotated.
  const Tensor q = arena.take_act({n, d.n_heads * (d.nope + d.rope)});
  if (d.q_lora > 0) {
    const Tensor q_a = arena.take_act({n, d.q_lora});
    w_.q_a.forward(be, x, q_a);
    w_.q_a_norm.forward(be, q_a, q_a);
    w_.q_b.forward(be, q_a, q);
  } else {
    w_.q_proj.forward(be, x, q);
  }
  const Tensor q3 = q.reshape({n, d.n_heads, d.nope + d.rope});
  const Tensor q_nope = q3.slice(2, 0, d.nope);
  const Tensor q_rope = q3.slice(2, d.nope, d.nope + d.rope);
  be.rope(q_rope, ctx.positions(), rope_table_);

  // The new cache rows: [normalised latent | rotated rope key].
  const Tensor kv = arena.take_act({n, d.latent + d.rope});
  w_.kv_a.forward(be, x, kv);
  const Tensor kv_latent = kv.slice(1, 0, d.latent);
  w_.kv_a_norm.forward(be, kv_latent, kv_latent);
  const AttentionBatch& batch = ctx.attention();
  be.rope_kv_write(kv, d.latent, ctx.positions(), rope_table_, batch.slot_mapping, cache);

  // Absorb W_UK into the queries, attend over the latents, then apply W_UV.
  const Tensor q_latent = arena.take_act({n, d.n_heads, d.latent});
  be.head_linear(q_nope, w_.w_uk_t, q_latent);
  const Tensor o_latent = arena.take_act({n, d.n_heads, d.latent});
  be.mla_attention(q_latent, q_rope, cache, batch, d.softmax_scale, o_latent);
  const Tensor o = arena.take_act({n, d.n_heads, d.v});
  be.head_linear(o_latent, w_.w_uv, o);
  w_.o_proj.forward(be, o.reshape({n, d.n_heads * d.v}), out);
}

}  // namespace moeserve
