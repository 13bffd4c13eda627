#include "model/model_config.h"

#include <string>

#include "safetensors_writer.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace moeserve {
namespace {

using nlohmann::json;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Modelled on deepseek-ai/DeepSeek-V3 config.json.
const char* const kV3Config = R"({
  "architectures": ["DeepseekV3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "aux_loss_alpha": 0.001,
  "bos_token_id": 0,
  "eos_token_id": 1,
  "ep_size": 1,
  "first_k_dense_replace": 3,
  "hidden_act": "silu",
  "hidden_size": 7168,
  "initializer_range": 0.02,
  "intermediate_size": 18432,
  "kv_lora_rank": 512,
  "max_position_embeddings": 163840,
  "model_type": "deepseek_v3",
  "moe_intermediate_size": 2048,
  "moe_layer_freq": 1,
  "n_group": 8,
  "n_routed_experts": 256,
  "n_shared_experts": 1,
  "norm_topk_prob": true,
  "num_attention_heads": 128,
  "num_experts_per_tok": 8,
  "num_hidden_layers": 61,
  "num_key_value_heads": 128,
  "num_nextn_predict_layers": 1,
  "q_lora_rank": 1536,
  "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64,
  "quantization_config": {
    "activation_scheme": "dynamic",
    "fmt": "e4m3",
    "quant_method": "fp8",
    "weight_block_size": [128, 128]
  },
  "rms_norm_eps": 1e-06,
  "rope_scaling": {
    "beta_fast": 32,
    "beta_slow": 1,
    "factor": 40,
    "mscale": 1.0,
    "mscale_all_dim": 1.0,
    "original_max_position_embeddings": 4096,
    "type": "yarn"
  },
  "rope_theta": 10000,
  "routed_scaling_factor": 2.5,
  "scoring_func": "sigmoid",
  "seq_aux": true,
  "tie_word_embeddings": false,
  "topk_group": 4,
  "topk_method": "noaux_tc",
  "torch_dtype": "bfloat16",
  "transformers_version": "4.33.1",
  "use_cache": true,
  "v_head_dim": 128,
  "vocab_size": 129280
})";

// Modelled on deepseek-ai/DeepSeek-V2-Lite config.json.
const char* const kV2LiteConfig = R"({
  "architectures": ["DeepseekV2ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "aux_loss_alpha": 0.001,
  "bos_token_id": 100000,
  "eos_token_id": 100001,
  "first_k_dense_replace": 1,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 10944,
  "kv_lora_rank": 512,
  "max_position_embeddings": 163840,
  "model_type": "deepseek_v2",
  "moe_intermediate_size": 1408,
  "moe_layer_freq": 1,
  "n_group": 1,
  "n_routed_experts": 64,
  "n_shared_experts": 2,
  "norm_topk_prob": false,
  "num_attention_heads": 16,
  "num_experts_per_tok": 6,
  "num_hidden_layers": 27,
  "num_key_value_heads": 16,
  "pretraining_tp": 1,
  "q_lora_rank": null,
  "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64,
  "rms_norm_eps": 1e-06,
  "rope_scaling": {
    "beta_fast": 32,
    "beta_slow": 1,
    "factor": 40,
    "mscale": 0.707,
    "mscale_all_dim": 0.707,
    "original_max_position_embeddings": 4096,
    "type": "yarn"
  },
  "rope_theta": 10000,
  "routed_scaling_factor": 1.0,
  "scoring_func": "softmax",
  "seq_aux": true,
  "tie_word_embeddings": false,
  "topk_group": 1,
  "topk_method": "greedy",
  "torch_dtype": "bfloat16",
  "transformers_version": "4.33.1",
  "use_cache": true,
  "v_head_dim": 128,
  "vocab_size": 102400
})";

json v3() { return json::parse(kV3Config); }
json v2_lite() { return json::parse(kV2LiteConfig); }

// Parses `j` as "config.json" and returns the error message (empty if it parsed).
std::string error_of(const json& j) {
  StatusOr<ModelConfig> c = parse_model_config(j, "config.json");
  EXPECT_FALSE(c.ok()) << "accepted a config that should be refused";
  if (c.ok()) return "";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(c.status().message());
}

TEST(ModelConfigTest, ParsesDeepseekV3) {
  StatusOr<ModelConfig> parsed = parse_model_config(v3(), "config.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ModelConfig& c = *parsed;
  EXPECT_EQ(c.architecture, Architecture::kDeepseekV3);
  EXPECT_EQ(c.vocab_size, 129280);
  EXPECT_EQ(c.hidden_size, 7168);
  EXPECT_EQ(c.intermediate_size, 18432);
  EXPECT_EQ(c.moe_intermediate_size, 2048);
  EXPECT_EQ(c.num_hidden_layers, 61);
  EXPECT_EQ(c.num_attention_heads, 128);
  EXPECT_EQ(c.q_lora_rank, 1536);
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.qk_nope_head_dim, 128);
  EXPECT_EQ(c.qk_rope_head_dim, 64);
  EXPECT_EQ(c.v_head_dim, 128);
  EXPECT_EQ(c.n_routed_experts, 256);
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.topk_group, 4);
  EXPECT_EQ(c.topk_method, TopkMethod::kNoauxTc);
  EXPECT_EQ(c.scoring_func, ScoringFunc::kSigmoid);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.first_k_dense_replace, 3);
  EXPECT_EQ(c.moe_layer_freq, 1);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 40.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rope_scaling->beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->beta_slow, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale_all_dim, 1.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.max_position_embeddings, 163840);
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_id, 1);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  ASSERT_TRUE(c.quantization.has_value());
  EXPECT_EQ(c.quantization->block_n, 128);
  EXPECT_EQ(c.quantization->block_k, 128);

  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_FALSE(c.is_moe_layer(2));
  EXPECT_TRUE(c.is_moe_layer(3));
  EXPECT_TRUE(c.is_moe_layer(60));

  const GateParams g = c.gate_params();
  EXPECT_EQ(g.scoring, ScoringFunc::kSigmoid);
  EXPECT_EQ(g.method, TopkMethod::kNoauxTc);
  EXPECT_EQ(g.n_group, 8);
  EXPECT_EQ(g.topk_group, 4);
  EXPECT_EQ(g.top_k, 8);
  EXPECT_TRUE(g.norm_topk_prob);
  EXPECT_FLOAT_EQ(g.routed_scaling_factor, 2.5f);

  // 192^-0.5 * (0.1 * 1.0 * ln 40 + 1)^2 = 0.0721687836 * 1.3688879454^2, by hand.
  EXPECT_NEAR(c.softmax_scale(), 0.1352337789, 1e-7);

  const std::string s = c.summary();
  EXPECT_THAT(s, AllOf(HasSubstr("DeepseekV3"), HasSubstr("layers=61"), HasSubstr("experts=256"),
                       HasSubstr("noaux_tc"), HasSubstr("fp8[128x128]")));
  EXPECT_EQ(s.find('\n'), std::string::npos);
}

TEST(ModelConfigTest, ParsesDeepseekV2Lite) {
  StatusOr<ModelConfig> parsed = parse_model_config(v2_lite(), "config.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ModelConfig& c = *parsed;
  EXPECT_EQ(c.architecture, Architecture::kDeepseekV2);
  EXPECT_EQ(c.vocab_size, 102400);
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.intermediate_size, 10944);
  EXPECT_EQ(c.moe_intermediate_size, 1408);
  EXPECT_EQ(c.num_hidden_layers, 27);
  EXPECT_EQ(c.num_attention_heads, 16);
  EXPECT_FALSE(c.q_lora_rank.has_value());
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.qk_nope_head_dim, 128);
  EXPECT_EQ(c.qk_rope_head_dim, 64);
  EXPECT_EQ(c.v_head_dim, 128);
  EXPECT_EQ(c.n_routed_experts, 64);
  EXPECT_EQ(c.n_shared_experts, 2);
  EXPECT_EQ(c.num_experts_per_tok, 6);
  EXPECT_EQ(c.n_group, 1);
  EXPECT_EQ(c.topk_group, 1);
  EXPECT_EQ(c.topk_method, TopkMethod::kGreedy);
  EXPECT_EQ(c.scoring_func, ScoringFunc::kSoftmax);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 1.0);
  EXPECT_EQ(c.first_k_dense_replace, 1);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale, 0.707);
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale_all_dim, 0.707);
  EXPECT_EQ(c.bos_token_id, 100000);
  EXPECT_EQ(c.eos_token_id, 100001);
  EXPECT_EQ(c.num_nextn_predict_layers, 0);
  EXPECT_FALSE(c.quantization.has_value());

  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_TRUE(c.is_moe_layer(1));
  EXPECT_TRUE(c.is_moe_layer(26));
  EXPECT_EQ(c.gate_params().top_k, 6);
  EXPECT_EQ(c.gate_params().method, TopkMethod::kGreedy);

  // 192^-0.5 * (0.1 * 0.707 * ln 40 + 1)^2 = 0.0721687836 * 1.2608037774^2, by hand.
  EXPECT_NEAR(c.softmax_scale(), 0.1147213868, 1e-7);
}

TEST(ModelConfigTest, DefaultsForAbsentOptionalFields) {
  json j = v2_lite();
  for (const char* key :
       {"q_lora_rank", "n_shared_experts", "n_group", "topk_group", "topk_method", "scoring_func",
        "norm_topk_prob", "routed_scaling_factor", "first_k_dense_replace", "moe_layer_freq",
        "rope_theta", "rope_scaling", "rms_norm_eps", "tie_word_embeddings", "bos_token_id",
        "eos_token_id", "hidden_act", "attention_bias"}) {
    j.erase(key);
  }
  StatusOr<ModelConfig> c = parse_model_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->q_lora_rank.has_value());
  EXPECT_EQ(c->n_shared_experts, 0);
  EXPECT_EQ(c->n_group, 1);
  EXPECT_EQ(c->topk_group, 1);
  EXPECT_EQ(c->topk_method, TopkMethod::kGreedy);
  EXPECT_EQ(c->scoring_func, ScoringFunc::kSoftmax);
  EXPECT_FALSE(c->norm_topk_prob);
  EXPECT_DOUBLE_EQ(c->routed_scaling_factor, 1.0);
  EXPECT_EQ(c->first_k_dense_replace, 0);
  EXPECT_EQ(c->moe_layer_freq, 1);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_FALSE(c->rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_FALSE(c->bos_token_id.has_value());
  EXPECT_TRUE(c->is_moe_layer(0));
  // No YaRN: plain 192^-0.5.
  EXPECT_NEAR(c->softmax_scale(), 0.0721687836, 1e-8);
}

TEST(ModelConfigTest, NullSharedExpertsMeansZero) {
  json j = v3();
  j["n_shared_experts"] = nullptr;
  StatusOr<ModelConfig> c = parse_model_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->n_shared_experts, 0);
}

TEST(ModelConfigTest, DenseModelWithoutRoutedExperts) {
  json j = v2_lite();
  j["n_routed_experts"] = nullptr;
  j["num_experts_per_tok"] = nullptr;
  j.erase("moe_intermediate_size");
  StatusOr<ModelConfig> c = parse_model_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->n_routed_experts.has_value());
  for (int i = 0; i < c->num_hidden_layers; ++i) EXPECT_FALSE(c->is_moe_layer(i)) << i;
  EXPECT_THAT(c->summary(), HasSubstr("dense"));
}

TEST(ModelConfigTest, MoeLayerFrequency) {
  json j = v2_lite();
  j["moe_layer_freq"] = 2;
  j["first_k_dense_replace"] = 1;
  StatusOr<ModelConfig> c = parse_model_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->is_moe_layer(0));  // dense prefix
  EXPECT_FALSE(c->is_moe_layer(1));  // odd
  EXPECT_TRUE(c->is_moe_layer(2));
  EXPECT_FALSE(c->is_moe_layer(3));
}

TEST(ModelConfigTest, SoftmaxScaleIgnoresYarnWithoutMscaleAllDim) {
  json j = v3();
  j["rope_scaling"].erase("mscale_all_dim");
  StatusOr<ModelConfig> c = parse_model_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->rope_scaling->mscale_all_dim, 0.0);
  EXPECT_NEAR(c->softmax_scale(), 0.0721687836, 1e-8);
}

TEST(ModelConfigTest, AcceptsRopeTypeSpelling) {
  json j = v3();
  j["rope_scaling"].erase("type");
  j["rope_scaling"]["rope_type"] = "yarn";
  StatusOr<ModelConfig> c = parse_model_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->rope_scaling.has_value());
}

TEST(ModelConfigTest, LoadsFromDirectory) {
  test::TempDir dir;
  test::write_file(dir.file("config.json"), kV2LiteConfig);
  StatusOr<ModelConfig> c = load_model_config(dir.path().string());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 2048);

  test::write_file(dir.file("config.json"), "{\"hidden_size\": ");
  c = load_model_config(dir.path().string());
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(),
              AllOf(HasSubstr(dir.file("config.json")), HasSubstr("not valid JSON")));

  test::TempDir empty;
  c = load_model_config(empty.path().string());
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr(empty.file("config.json")));
}

// ---- refusals ---------------------------------------------------------------

TEST(ModelConfigTest, RefusesUnknownArchitecture) {
  json j = v3();
  j["architectures"] = {"LlamaForCausalLM"};
  EXPECT_THAT(error_of(j), AllOf(HasSubstr("config.json"),
                                 HasSubstr("unknown architecture 'LlamaForCausalLM'")));
  j["architectures"] = json::array();
  EXPECT_THAT(error_of(j), HasSubstr("'architectures' must be a non-empty array"));
  j.erase("architectures");
  EXPECT_THAT(error_of(j), HasSubstr("missing required field 'architectures'"));
}

TEST(ModelConfigTest, RefusesUnknownScoringFunc) {
  json j = v3();
  j["scoring_func"] = "sparsemax";
  EXPECT_THAT(error_of(j),
              AllOf(HasSubstr("config.json"), HasSubstr("unknown scoring_func 'sparsemax'")));
}

TEST(ModelConfigTest, RefusesUnknownTopkMethod) {
  json j = v3();
  j["topk_method"] = "random";
  EXPECT_THAT(error_of(j),
              AllOf(HasSubstr("config.json"), HasSubstr("unknown topk_method 'random'")));
}

TEST(ModelConfigTest, RefusesNonSiluActivation) {
  json j = v3();
  j["hidden_act"] = "gelu";
  EXPECT_THAT(error_of(j), AllOf(HasSubstr("config.json"), HasSubstr("hidden_act 'gelu'")));
}

TEST(ModelConfigTest, RefusesAttentionBias) {
  json j = v3();
  j["attention_bias"] = true;
  EXPECT_THAT(error_of(j), AllOf(HasSubstr("config.json"), HasSubstr("attention_bias")));
}

TEST(ModelConfigTest, RefusesMissingRequiredFields) {
  for (const char* key :
       {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
        "max_position_embeddings", "moe_intermediate_size", "num_experts_per_tok"}) {
    json j = v3();
    j.erase(key);
    EXPECT_THAT(error_of(j), AllOf(HasSubstr("config.json"),
                                   HasSubstr(std::string("missing required field '") + key)))
        << key;
  }
}

TEST(ModelConfigTest, RefusesWrongJsonTypes) {
  json j = v3();
  j["hidden_size"] = "7168";
  EXPECT_THAT(error_of(j), AllOf(HasSubstr("config.json"),
                                 HasSubstr("field 'hidden_size' must be an integer, got string")));
  j = v3();
  j["num_hidden_layers"] = 61.5;
  EXPECT_THAT(error_of(j), HasSubstr("field 'num_hidden_layers' must be an integer"));
  j = v3();
  j["norm_topk_prob"] = 1;
  EXPECT_THAT(error_of(j), HasSubstr("field 'norm_topk_prob' must be a boolean"));
  j = v3();
  j["rope_theta"] = "10000";
  EXPECT_THAT(error_of(j), HasSubstr("field 'rope_theta' must be a number"));
  j = v3();
  j["scoring_func"] = 3;
  EXPECT_THAT(error_of(j), HasSubstr("field 'scoring_func' must be a string"));
  j = v3();
  j["rope_scaling"]["factor"] = "40";
  EXPECT_THAT(error_of(j), HasSubstr("field 'rope_scaling.factor' must be a number"));
  j = v3();
  j["vocab_size"] = 1e12;
  EXPECT_THAT(error_of(j), HasSubstr("field 'vocab_size' must be an integer"));
  j = v3();
  j["vocab_size"] = int64_t{1} << 40;
  EXPECT_THAT(error_of(j), HasSubstr("field 'vocab_size' = 1099511627776 is out of range"));
  EXPECT_THAT(error_of(json::array()), HasSubstr("must be a JSON object, got array"));
}

TEST(ModelConfigTest, RefusesNonPositiveSizes) {
  for (const char* key :
       {"vocab_size", "hidden_size", "num_hidden_layers", "kv_lora_rank", "qk_rope_head_dim",
        "n_routed_experts", "num_experts_per_tok", "n_group", "moe_layer_freq", "q_lora_rank"}) {
    json j = v3();
    j[key] = 0;
    EXPECT_THAT(error_of(j),
                AllOf(HasSubstr("config.json"),
                      HasSubstr(std::string("field '") + key + "' must be positive, got 0")))
        << key;
  }
  json j = v3();
  j["num_attention_heads"] = -4;
  EXPECT_THAT(error_of(j), HasSubstr("field 'num_attention_heads' must be positive, got -4"));
  j = v3();
  j["n_shared_experts"] = -1;
  EXPECT_THAT(error_of(j), HasSubstr("field 'n_shared_experts' must not be negative"));
  j = v3();
  j["qk_rope_head_dim"] = 63;
  EXPECT_THAT(error_of(j), HasSubstr("'qk_rope_head_dim' must be even"));
}

TEST(ModelConfigTest, RefusesExpertsNotDivisibleByGroups) {
  json j = v3();
  j["n_group"] = 7;
  j["topk_group"] = 4;
  EXPECT_THAT(error_of(j), AllOf(HasSubstr("config.json"),
                                 HasSubstr("n_routed_experts 256 is not divisible by n_group 7")));
}

TEST(ModelConfigTest, RefusesTopkGroupAboveNGroup) {
  json j = v3();
  j["topk_group"] = 9;
  EXPECT_THAT(error_of(j), HasSubstr("topk_group 9 is larger than n_group 8"));
}

TEST(ModelConfigTest, RefusesTopKAboveExpertCount) {
  json j = v2_lite();
  j["num_experts_per_tok"] = 65;
  EXPECT_THAT(error_of(j), HasSubstr("num_experts_per_tok 65 is larger than n_routed_experts 64"));
}

TEST(ModelConfigTest, RefusesTopKAboveKeptGroups) {
  json j = v3();
  j["topk_group"] = 1;  // 1 group of 32 experts kept
  j["num_experts_per_tok"] = 33;
  EXPECT_THAT(error_of(j), HasSubstr("num_experts_per_tok 33 is larger than the 32 experts"));
}

TEST(ModelConfigTest, RefusesNoauxTcWithSingleExpertGroups) {
  json j = v3();
  j["n_routed_experts"] = 8;  // 8 groups of 1 expert: no top-2 per group
  j["num_experts_per_tok"] = 4;
  EXPECT_THAT(error_of(j), AllOf(HasSubstr("noaux_tc"), HasSubstr("leaves 1 per group")));
  j["n_group"] = 1;
  j["topk_group"] = 1;
  EXPECT_TRUE(parse_model_config(j, "config.json").ok());  // one group: fine
}

TEST(ModelConfigTest, RefusesNonYarnRopeScaling) {
  json j = v3();
  j["rope_scaling"]["type"] = "linear";
  EXPECT_THAT(error_of(j), AllOf(HasSubstr("config.json"),
                                 HasSubstr("rope_scaling type 'linear' is not supported")));
  j = v3();
  j["rope_scaling"].erase("type");
  EXPECT_THAT(error_of(j), HasSubstr("no 'type' or 'rope_type'"));
  j = v3();
  j["rope_scaling"]["attention_factor"] = 1.2;
  EXPECT_THAT(error_of(j), HasSubstr("unsupported key 'attention_factor'"));
  j = v3();
  j["rope_scaling"].erase("original_max_position_embeddings");
  EXPECT_THAT(error_of(j),
              HasSubstr("missing required field 'rope_scaling.original_max_position_embeddings'"));
}

TEST(ModelConfigTest, RefusesOtherQuantMethods) {
  json j = v3();
  j["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}};
  EXPECT_THAT(error_of(j),
              AllOf(HasSubstr("config.json"), HasSubstr("quant_method 'gptq' is not supported")));
  j = v3();
  j["quantization_config"]["weight_block_size"] = {128};
  EXPECT_THAT(error_of(j), HasSubstr("weight_block_size' must be [block_n, block_k]"));
  j = v3();
  j["quantization_config"]["activation_scheme"] = "static";
  EXPECT_THAT(error_of(j), HasSubstr("activation_scheme 'static' is not supported"));
}

}  // namespace
}  // namespace moeserve
