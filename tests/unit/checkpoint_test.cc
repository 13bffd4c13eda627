#include "model/checkpoint.h"

#include <filesystem>
#include <string>
#include <vector>

#include "safetensors_writer.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace moeserve {
namespace {

using test::bytes_of;
using test::safetensors_bytes;
using test::TempDir;
using test::write_file;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string f32_bytes(std::vector<float> v) { return bytes_of(v); }

// Two shards and an index mapping each tensor to its shard.
void write_sharded(const TempDir& dir, const std::string& index_json) {
  write_file(dir.file("model-00001-of-00002.safetensors"),
             safetensors_bytes({{"embed.weight", "F32", {2, 2}, f32_bytes({1, 2, 3, 4})},
                                {"norm.weight", "F32", {2}, f32_bytes({5, 6})}}));
  write_file(dir.file("model-00002-of-00002.safetensors"),
             safetensors_bytes({{"lm_head.weight", "F32", {2, 2}, f32_bytes({7, 8, 9, 10})}}));
  write_file(dir.file(Checkpoint::kIndexFileName), index_json);
}

constexpr const char* kGoodIndex = R"({
  "metadata": {"total_size": 40},
  "weight_map": {
    "embed.weight": "model-00001-of-00002.safetensors",
    "norm.weight": "model-00001-of-00002.safetensors",
    "lm_head.weight": "model-00002-of-00002.safetensors"
  }
})";

std::string open_error(const TempDir& dir) {
  StatusOr<Checkpoint> ckpt = Checkpoint::open(dir.path().string());
  EXPECT_FALSE(ckpt.ok()) << "opened a broken checkpoint";
  return ckpt.ok() ? "" : std::string(ckpt.status().message());
}

TEST(CheckpointTest, OpensShardedCheckpointThroughIndex) {
  TempDir dir;
  write_sharded(dir, kGoodIndex);
  StatusOr<Checkpoint> ckpt = Checkpoint::open(dir.path().string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(ckpt->names(),
            (std::vector<std::string>{"embed.weight", "lm_head.weight", "norm.weight"}));
  EXPECT_TRUE(ckpt->has("norm.weight"));
  EXPECT_FALSE(ckpt->has("missing"));
  StatusOr<Tensor> head = ckpt->get("lm_head.weight", {2, 2});
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(to_f32_vector(*head), (std::vector<float>{7, 8, 9, 10}));
  StatusOr<Tensor> norm = ckpt->get("norm.weight");
  ASSERT_TRUE(norm.ok()) << norm.status();
  EXPECT_EQ(to_f32_vector(*norm), (std::vector<float>{5, 6}));
}

TEST(CheckpointTest, IndexDecidesWhichTensorsAreVisible) {
  TempDir dir;
  write_sharded(dir, R"({"weight_map": {"norm.weight": "model-00001-of-00002.safetensors"}})");
  StatusOr<Checkpoint> ckpt = Checkpoint::open(dir.path().string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(ckpt->names(), (std::vector<std::string>{"norm.weight"}));
  EXPECT_FALSE(ckpt->has("embed.weight"));
}

TEST(CheckpointTest, OpensModelSafetensorsWithoutIndex) {
  TempDir dir;
  write_file(dir.file("model.safetensors"), safetensors_bytes({{"x", "F32", {1}, f32_bytes({1})},
                                                               {"y", "F32", {1}, f32_bytes({2})}}));
  // Other safetensors files (goldens, consolidated copies) are not weights.
  write_file(dir.file("other.safetensors"), safetensors_bytes({{"z", "F32", {1}, f32_bytes({3})}}));
  StatusOr<Checkpoint> ckpt = Checkpoint::open(dir.path().string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(ckpt->names(), (std::vector<std::string>{"x", "y"}));
  StatusOr<Tensor> y = ckpt->get("y");
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_EQ(to_f32_vector(*y), (std::vector<float>{2}));
}

TEST(CheckpointTest, RefusesDirectoryWithoutWeights) {
  TempDir dir;
  write_file(dir.file("a.safetensors"), safetensors_bytes({{"x", "F32", {1}, f32_bytes({1})}}));
  EXPECT_THAT(open_error(dir),
              AllOf(HasSubstr(dir.path().string()), HasSubstr("model.safetensors.index.json"),
                    HasSubstr("model.safetensors is there")));
}

TEST(CheckpointTest, RefusesMissingDirectory) {
  TempDir dir;
  StatusOr<Checkpoint> ckpt = Checkpoint::open(dir.file("absent"));
  ASSERT_FALSE(ckpt.ok());
  EXPECT_THAT(ckpt.status().message(),
              AllOf(HasSubstr(dir.file("absent")), HasSubstr("not a directory")));
}

TEST(CheckpointTest, RefusesIndexNamingMissingShard) {
  TempDir dir;
  write_sharded(dir, R"({"weight_map": {"norm.weight": "model-00003-of-00003.safetensors"}})");
  EXPECT_THAT(open_error(dir),
              AllOf(HasSubstr(dir.file(Checkpoint::kIndexFileName)), HasSubstr("'norm.weight'"),
                    HasSubstr("shard 'model-00003-of-00003.safetensors' cannot be opened")));
}

TEST(CheckpointTest, RefusesIndexTensorNotInItsShard) {
  TempDir dir;
  write_sharded(dir, R"({"weight_map": {"norm.weight": "model-00002-of-00002.safetensors"}})");
  EXPECT_THAT(open_error(dir), AllOf(HasSubstr(dir.file(Checkpoint::kIndexFileName)),
                                     HasSubstr("tensor 'norm.weight' is not in its shard "
                                               "'model-00002-of-00002.safetensors'")));
}

TEST(CheckpointTest, RefusesPathTraversalInIndex) {
  for (const char* shard : {"../model-00001-of-00002.safetensors",
                            "sub/model-00001-of-00002.safetensors", "/etc/passwd", "..", ""}) {
    TempDir dir;
    write_sharded(dir, std::string(R"({"weight_map": {"norm.weight": ")") + shard + "\"}}");
    EXPECT_THAT(open_error(dir),
                AllOf(HasSubstr("tensor 'norm.weight'"), HasSubstr(std::string("shard '") + shard),
                      HasSubstr("is not a plain file name")))
        << shard;
  }
}

TEST(CheckpointTest, RefusesMalformedIndex) {
  TempDir dir;
  write_sharded(dir, "{\"weight_map\": ");
  EXPECT_THAT(open_error(dir),
              AllOf(HasSubstr(dir.file(Checkpoint::kIndexFileName)), HasSubstr("not valid JSON")));
  write_sharded(dir, R"({"metadata": {}})");
  EXPECT_THAT(open_error(dir), HasSubstr("needs a 'weight_map' object"));
  write_sharded(dir, R"({"weight_map": {"norm.weight": 3}})");
  EXPECT_THAT(open_error(dir), HasSubstr("tensor 'norm.weight': shard must be a string"));
}

TEST(CheckpointTest, PropagatesBrokenShardErrors) {
  TempDir dir;
  write_sharded(dir, kGoodIndex);
  write_file(dir.file("model-00002-of-00002.safetensors"), "tiny");
  EXPECT_THAT(open_error(dir),
              AllOf(HasSubstr("model-00002-of-00002.safetensors"), HasSubstr("too short")));
}

TEST(CheckpointTest, GetMissingTensorNamesTensorAndDir) {
  TempDir dir;
  write_sharded(dir, kGoodIndex);
  StatusOr<Checkpoint> ckpt = Checkpoint::open(dir.path().string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  StatusOr<Tensor> t = ckpt->get("model.layers.0.mlp.gate.weight");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(),
              AllOf(HasSubstr(dir.path().string()), HasSubstr("'model.layers.0.mlp.gate.weight'")));
  EXPECT_FALSE(ckpt->get("absent", {2}).ok());
}

TEST(CheckpointTest, GetWithWrongShapeNamesBothShapes) {
  TempDir dir;
  write_sharded(dir, kGoodIndex);
  StatusOr<Checkpoint> ckpt = Checkpoint::open(dir.path().string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  StatusOr<Tensor> t = ckpt->get("embed.weight", {4, 1});
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(),
              AllOf(HasSubstr(dir.path().string()), HasSubstr("'embed.weight'"),
                    HasSubstr("has shape [2, 2]"), HasSubstr("but [4, 1] was expected")));
  EXPECT_FALSE(ckpt->get("norm.weight", {}).ok());
  EXPECT_TRUE(ckpt->get("norm.weight", {2}).ok());
}

}  // namespace
}  // namespace moeserve
