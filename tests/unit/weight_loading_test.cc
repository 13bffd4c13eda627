// Loading keeps weights in their stored dtype and plans exactly what it
// loads: on every tiny checkpoint the plan from headers alone equals the
// bytes loading prepared, progress reaches the checkpoint bytes it planned,
// FP8 matrices stay FP8 with their scales, and a NaN code in an FP8 weight is
// refused naming the tensor.
#include <filesystem>
#include <fstream>

#include "backend/cpu/cpu_backend.h"
#include "model/checkpoint.h"
#include "model/deepseek_weights.h"
#include "safetensors_writer.h"  // tests/unit: TempDir
#include "tests/support/random_checkpoint.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

const std::string kTiny = std::string(MOESERVE_SOURCE_DIR) + "/tests/data/tiny/";

class WeightLoadingTest : public ::testing::TestWithParam<std::string> {};

TEST_P(WeightLoadingTest, PlanEqualsLoadAndProgressReachesTheTotal) {
  const std::string dir = kTiny + GetParam();
  auto config = load_model_config(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  auto ckpt = Checkpoint::open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto plan = plan_deepseek_weights(*config, *ckpt);
  ASSERT_TRUE(plan.ok()) << plan.status();
  CpuBackend be(2);
  int64_t last_done = 0, last_total = 0, calls = 0;
  auto w = load_deepseek_weights(*config, *ckpt, be, [&](int64_t done, int64_t total) {
    EXPECT_GE(done, last_done);
    last_done = done;
    last_total = total;
    ++calls;
  });
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->bytes.by_dtype, plan->by_dtype);
  EXPECT_EQ(w->bytes.mapped, plan->mapped);
  EXPECT_EQ(w->bytes.repacked, plan->repacked);
  EXPECT_EQ(w->bytes.checkpoint, plan->checkpoint);
  EXPECT_GT(calls, 0);
  EXPECT_EQ(last_total, plan->checkpoint);
  // Every tensor read was reported once, either populated in place or released after a copy
  // (scale tensors in place are populated too; converted ones are not re-counted).
  EXPECT_GE(last_done, plan->checkpoint * 9 / 10);
  EXPECT_LE(last_done, plan->checkpoint);
  EXPECT_GT(w->bytes.mapped, 0);

  const DeepseekLayerWeights& l = w->layers[0];
  const Tensor& kv_a = l.kv_a;
  auto stored = ckpt->get("model.layers.0.self_attn.kv_a_proj_with_mqa.weight");
  ASSERT_TRUE(stored.ok());
  const DType want = stored->dtype();
  EXPECT_EQ(kv_a.dtype(), want) << "weights keep their stored dtype";
  if (want == DType::kFP8E4M3) {
    ASSERT_NE(kv_a.block_scales(), nullptr);
    EXPECT_EQ(kv_a.block_rows(), 128);
    const Tensor& experts = w->layers.back().experts_gate_up;
    EXPECT_EQ(experts.dtype(), DType::kFP8E4M3);
    ASSERT_NE(experts.block_scales(), nullptr);
  } else {
    // Used in place: the weight is the file's own bytes, not a copy.
    EXPECT_EQ(kv_a.raw(), stored->raw());
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, WeightLoadingTest,
                         ::testing::Values("v2_tiny", "v2_lite_tiny", "v2_yarn_mscale_tiny",
                                           "v3_tiny", "v3_bf16_tiny", "v3_fp8_tiny"));

// A weight used in place, an expert stacked into its own buffer, and kv_b_proj
// (split into its absorbed halves): each path checks its FP8 codes.
class WeightLoadingNanTest : public ::testing::TestWithParam<std::string> {};

TEST_P(WeightLoadingNanTest, Fp8NanCodeIsRefusedNamingTheTensor) {
  test::TempDir dir;
  RandomCheckpointSpec spec;
  spec.vocab_size = 512;
  spec.hidden_size = 128;
  spec.intermediate_size = 128;
  spec.moe_intermediate_size = 64;
  spec.kv_lora_rank = 64;
  spec.fp8 = true;
  ASSERT_TRUE(write_random_checkpoint(dir.path().string(), spec).ok());
  const std::string path = dir.file("model.safetensors");
  const std::string victim = GetParam();
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    uint64_t n_header = 0;
    f.read(reinterpret_cast<char*>(&n_header), 8);
    std::string header(n_header, '\0');
    f.read(header.data(), static_cast<std::streamsize>(n_header));
    const int64_t begin = nlohmann::json::parse(header)[victim]["data_offsets"][0];
    f.seekp(static_cast<std::streamoff>(8 + n_header + begin + 77));
    const char nan_code = static_cast<char>(0xFF);
    f.write(&nan_code, 1);
  }
  auto config = load_model_config(dir.path().string());
  ASSERT_TRUE(config.ok()) << config.status();
  auto ckpt = Checkpoint::open(dir.path().string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  CpuBackend be(2);
  auto w = load_deepseek_weights(*config, *ckpt, be);
  ASSERT_FALSE(w.ok());
  const bool in_kv_b = victim.find("kv_b_proj") != std::string::npos;
  const std::string want =
      "tensor '" + victim +
      (in_kv_b ? "' holds a NaN at element 77" : "' holds the E4M3 NaN code at element 77");
  EXPECT_NE(w.status().message().find(want), std::string::npos) << w.status();
}

INSTANTIATE_TEST_SUITE_P(Paths, WeightLoadingNanTest,
                         ::testing::Values("model.layers.0.self_attn.o_proj.weight",
                                           "model.layers.1.mlp.experts.3.up_proj.weight",
                                           "model.layers.1.self_attn.kv_b_proj.weight"));

}  // namespace
}  // namespace moeserve
