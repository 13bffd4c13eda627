// DeepSeek-V2/V3 model hyper-parameters, parsed from a HuggingFace
// config.json into typed fields and validated once at start-up.
//
// Fields that do not change the computation (model_type, torch_dtype,
// use_cache, initializer_range, aux_loss_alpha, ep_size, …) are ignored.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "backend/backend.h"
#include "common/status.h"
#include <nlohmann/json.hpp>

namespace moeserve {

enum class Architecture : uint8_t {
  kDeepseekV2,  // "DeepseekV2ForCausalLM" (V2, V2-Lite)
  kDeepseekV3,  // "DeepseekV3ForCausalLM" (V3, R1)
};

// YaRN context extension (config.json `rope_scaling` with type "yarn").
struct YarnScaling {
  double factor = 1.0;                       // context extension ratio s
  int original_max_position_embeddings = 0;  // pre-extension context length
  double beta_fast = 32.0;                   // rotations above which dims are not interpolated
  double beta_slow = 1.0;                    // rotations below which dims are fully interpolated
  double mscale = 1.0;                       // attention temperature term applied to cos/sin
  double mscale_all_dim =
      0.0;  // temperature term divided out of cos/sin, squared into the softmax scale
};

// Block-wise FP8 weights (`quantization_config`, quant_method "fp8"): each
// block_n × block_k tile of a weight shares one F32 scale (`*_scale_inv`).
struct Fp8BlockQuant {
  int block_n = 128;  // rows (output features) per scale block
  int block_k = 128;  // columns (input features) per scale block
};

struct ModelConfig {
  Architecture architecture = Architecture::kDeepseekV3;  // from architectures[0]
  int vocab_size = 0;                                     // rows of the embedding and lm_head
  int hidden_size = 0;                                    // residual stream width d
  int intermediate_size = 0;                              // FFN width of dense layers
  int moe_intermediate_size = 0;        // FFN width of each routed/shared expert (MoE only)
  int num_hidden_layers = 0;            // decoder layers in the main forward pass
  int num_attention_heads = 0;          // query heads H (MLA: one shared latent KV)
  std::optional<int> q_lora_rank;       // query low-rank width; nullopt: plain q_proj (V2-Lite)
  int kv_lora_rank = 0;                 // latent KV width cached per token
  int qk_nope_head_dim = 0;             // per-head query/key width without rotary
  int qk_rope_head_dim = 0;             // per-head rotary width (even; shared rotary key)
  int v_head_dim = 0;                   // per-head value width
  std::optional<int> n_routed_experts;  // routed experts per MoE layer; nullopt: dense model
  int n_shared_experts = 0;             // always-on experts per MoE layer
  int num_experts_per_tok = 0;          // routed experts chosen per token (top-k); 0 if dense
  int n_group = 1;                      // expert groups for group-limited routing
  int topk_group = 1;                   // groups kept per token before the top-k
  TopkMethod topk_method = TopkMethod::kGreedy;      // expert selection method
  ScoringFunc scoring_func = ScoringFunc::kSoftmax;  // router logits → scores
  bool norm_topk_prob = false;                       // renormalise the top-k weights to sum to 1
  double routed_scaling_factor = 1.0;  // multiplies the routed experts' output weights
  int first_k_dense_replace = 0;       // the first k layers use a dense FFN
  int moe_layer_freq = 1;              // layers i with i % freq == 0 (past the dense ones) are MoE
  double rope_theta = 10000.0;         // rotary base
  std::optional<YarnScaling> rope_scaling;    // YaRN; nullopt: plain rotary
  double rms_norm_eps = 1e-6;                 // RMSNorm epsilon
  bool tie_word_embeddings = false;           // lm_head shares the embedding matrix
  int max_position_embeddings = 0;            // longest supported context
  std::optional<int> bos_token_id;            // beginning-of-sequence token, if declared
  std::optional<int> eos_token_id;            // end-of-sequence token, if declared
  int num_nextn_predict_layers = 0;           // MTP layers stored after the main ones (not run)
  std::optional<Fp8BlockQuant> quantization;  // FP8 block-quantized weights, if any

  // Whether layer `i` uses routed experts rather than a dense FFN.
  bool is_moe_layer(int i) const;
  // Router settings for the backend's moe_gate.
  GateParams gate_params() const;
  // Attention softmax scale: (nope + rope)^-0.5, times the squared YaRN
  // mscale_all_dim term when YaRN is on.
  float softmax_scale() const;
  // One line for start-up logging.
  std::string summary() const;
};

std::string_view architecture_name(Architecture a);

// `source_name` (usually the file path) prefixes every error message.
StatusOr<ModelConfig> parse_model_config(const nlohmann::json& json, std::string_view source_name);
// Reads and parses `model_dir`/config.json.
StatusOr<ModelConfig> load_model_config(const std::string& model_dir);

}  // namespace moeserve
