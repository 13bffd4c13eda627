// The bundled default model (models/tiny, trained by training/tiny/train.py):
// it has the DeepSeek-V3 architecture features issue #6 asks for, fits the size
// budget, and the serving tokenizer encodes text exactly as training did.
// Its logits against the float64 reference are checked in golden_logits_test.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/checkpoint.h"
#include "model/model_config.h"
#include "model/safetensors.h"
#include "tokenizer/tokenizer.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

namespace fs = std::filesystem;

const std::string kModelDir = std::string(MOESERVE_SOURCE_DIR) + "/models/tiny";
const std::string kGolden =
    std::string(MOESERVE_SOURCE_DIR) + "/tests/data/models_tiny_golden.safetensors";

TEST(BundledModel, HasTheDeepseekV3Architecture) {
  auto c = load_model_config(kModelDir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kDeepseekV3);
  EXPECT_TRUE(c->q_lora_rank.has_value()) << "MLA with a query low-rank projection";
  ASSERT_TRUE(c->rope_scaling.has_value()) << "YaRN RoPE";
  EXPECT_GT(c->rope_scaling->factor, 1.0);
  EXPECT_GE(c->first_k_dense_replace, 1) << "a first dense layer";
  EXPECT_GT(c->num_hidden_layers, c->first_k_dense_replace) << "MoE layers after it";
  ASSERT_TRUE(c->n_routed_experts.has_value());
  EXPECT_GE(c->n_shared_experts, 1);
  EXPECT_EQ(c->scoring_func, ScoringFunc::kSigmoid);
  EXPECT_EQ(c->topk_method, TopkMethod::kNoauxTc);
  EXPECT_GT(c->n_group, 1);
  EXPECT_EQ(c->num_nextn_predict_layers, 1) << "one multi-token-prediction module";

  auto ckpt = Checkpoint::open(kModelDir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  // The MTP module is stored as layer num_hidden_layers, in DeepSeek-V3's layout.
  const std::string mtp = "model.layers." + std::to_string(c->num_hidden_layers) + ".";
  for (const char* name :
       {"enorm.weight", "hnorm.weight", "eh_proj.weight", "embed_tokens.weight",
        "shared_head.norm.weight", "shared_head.head.weight", "self_attn.q_a_proj.weight",
        "mlp.gate.e_score_correction_bias", "mlp.shared_experts.down_proj.weight"})
    EXPECT_TRUE(ckpt->has(mtp + name)) << mtp << name;
  // The balancing bias was trained: not all zero in any MoE layer.
  for (int i = c->first_k_dense_replace; i < c->num_hidden_layers; ++i) {
    const std::string name =
        "model.layers." + std::to_string(i) + ".mlp.gate.e_score_correction_bias";
    auto bias = ckpt->get(name);
    ASSERT_TRUE(bias.ok()) << bias.status();
    const std::vector<float> v = to_f32_vector(*bias);
    bool nonzero = false;
    for (float x : v) nonzero = nonzero || x != 0.0f;
    EXPECT_TRUE(nonzero) << name;
  }
  // Every tensor is BF16.
  for (const std::string& name : ckpt->names()) {
    auto t = ckpt->get(name);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->dtype(), DType::kBF16) << name;
  }
}

TEST(BundledModel, IsHuggingFaceLayoutUnder30MB) {
  uintmax_t total = 0;
  for (const char* f :
       {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json", "README.md", "LICENSE-PSF.txt"}) {
    const fs::path p = fs::path(kModelDir) / f;
    ASSERT_TRUE(fs::exists(p)) << p;
  }
  for (const auto& e : fs::recursive_directory_iterator(kModelDir))
    if (e.is_regular_file()) total += e.file_size();
  EXPECT_LT(total, 30u * 1000 * 1000);
}

TEST(BundledModel, ServingTokenizerEncodesLikeTraining) {
  auto golden = SafetensorsFile::open(kGolden);
  ASSERT_TRUE(golden.ok()) << golden.status();
  const auto& meta = (*golden)->metadata();
  ASSERT_TRUE(meta.count("prompt_text"));
  auto ids = (*golden)->tensor("prompt_ids");
  ASSERT_TRUE(ids.ok()) << ids.status();
  const std::vector<int32_t> want(ids->data<int32_t>(), ids->data<int32_t>() + ids->numel());

  auto tok = Tokenizer::load(kModelDir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  // BOS (add_bos_token) + the training encoder's ids.
  EXPECT_EQ((*tok)->encode(meta.at("prompt_text")), want);
  EXPECT_EQ((*tok)->vocab_size(), 4096);
  EXPECT_EQ((*tok)->token_to_id("<think>"), 4093);
}

}  // namespace
}  // namespace moeserve
