#include "model/safetensors.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "safetensors_writer.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace moeserve {
namespace {

using test::bytes_of;
using test::raw_safetensors;
using test::safetensors_bytes;
using test::TempDir;
using test::TensorSpec;
using test::write_file;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Writes `bytes` as model.safetensors and returns the open() error message.
std::string open_error(const TempDir& dir, const std::string& bytes) {
  const std::string path = dir.file("model.safetensors");
  write_file(path, bytes);
  StatusOr<std::shared_ptr<SafetensorsFile>> st = SafetensorsFile::open(path);
  EXPECT_FALSE(st.ok()) << "opened a broken file";
  return st.ok() ? "" : std::string(st.status().message());
}

TEST(SafetensorsTest, ReadsTensorsAndMetadata) {
  TempDir dir;
  const std::vector<float> a = {1.5f, -2.0f, 3.25f, 4.0f, 5.5f, -6.75f};
  const std::vector<uint16_t> b = {0x3f80, 0x4000, 0xbf80, 0x4040};  // bf16 1, 2, -1, 3
  const std::vector<int32_t> c = {42};
  const std::string path = dir.file("model.safetensors");
  write_file(path, safetensors_bytes({{"layer.weight", "F32", {2, 3}, bytes_of(a)},
                                      {"b.bias", "BF16", {4}, bytes_of(b)},
                                      {"count", "I32", {}, bytes_of(c)}},
                                     {{"format", "pt"}}));
  StatusOr<std::shared_ptr<SafetensorsFile>> st = SafetensorsFile::open(path);
  ASSERT_TRUE(st.ok()) << st.status();
  const SafetensorsFile& f = **st;
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"b.bias", "count", "layer.weight"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_TRUE(f.has("count"));
  EXPECT_FALSE(f.has("__metadata__"));

  StatusOr<Tensor> ta = f.tensor("layer.weight");
  ASSERT_TRUE(ta.ok()) << ta.status();
  EXPECT_EQ(ta->dtype(), DType::kF32);
  EXPECT_EQ(ta->shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ta->device(), Device::kCpu);
  EXPECT_EQ(to_f32_vector(*ta), a);

  StatusOr<Tensor> tb = f.tensor("b.bias");
  ASSERT_TRUE(tb.ok()) << tb.status();
  EXPECT_EQ(tb->dtype(), DType::kBF16);
  EXPECT_EQ(to_f32_vector(*tb), (std::vector<float>{1.0f, 2.0f, -1.0f, 3.0f}));

  StatusOr<Tensor> tc = f.tensor("count");
  ASSERT_TRUE(tc.ok()) << tc.status();
  EXPECT_EQ(tc->ndim(), 0);
  EXPECT_EQ(*tc->data<int32_t>(), 42);
}

TEST(SafetensorsTest, TensorKeepsMappingAliveAfterFileIsDropped) {
  TempDir dir;
  const std::vector<float> v = {7.0f, 8.0f, 9.0f};
  const std::string path = dir.file("x.safetensors");
  write_file(path, safetensors_bytes({{"v", "F32", {3}, bytes_of(v)}}));
  Tensor t;
  {
    StatusOr<std::shared_ptr<SafetensorsFile>> st = SafetensorsFile::open(path);
    ASSERT_TRUE(st.ok()) << st.status();
    StatusOr<Tensor> got = (*st)->tensor("v");
    ASSERT_TRUE(got.ok()) << got.status();
    t = *got;
  }
  std::filesystem::remove(path);
  EXPECT_EQ(to_f32_vector(t), v);
}

TEST(SafetensorsTest, EmptyTensorsDoNotOverlapAnything) {
  TempDir dir;
  const std::string header = R"({"e":{"dtype":"F32","shape":[0, 5],"data_offsets":[0,0]},)"
                             R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string path = dir.file("m.safetensors");
  write_file(path, raw_safetensors(header, std::string(8, '\0')));
  StatusOr<std::shared_ptr<SafetensorsFile>> st = SafetensorsFile::open(path);
  ASSERT_TRUE(st.ok()) << st.status();
  StatusOr<Tensor> e = (*st)->tensor("e");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->numel(), 0);
}

TEST(SafetensorsTest, MissingTensorNamesFileAndTensor) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  write_file(path, safetensors_bytes({{"a", "F32", {1}, bytes_of(std::vector<float>{1})}}));
  StatusOr<std::shared_ptr<SafetensorsFile>> st = SafetensorsFile::open(path);
  ASSERT_TRUE(st.ok()) << st.status();
  StatusOr<Tensor> t = (*st)->tensor("model.missing");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), AllOf(HasSubstr(path), HasSubstr("'model.missing'")));
}

TEST(SafetensorsTest, MissingFile) {
  TempDir dir;
  StatusOr<std::shared_ptr<SafetensorsFile>> st =
      SafetensorsFile::open(dir.file("nope.safetensors"));
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.status().message(), HasSubstr("nope.safetensors"));
}

TEST(SafetensorsTest, RefusesFileShorterThan8Bytes) {
  TempDir dir;
  EXPECT_THAT(open_error(dir, "abcde"), AllOf(HasSubstr(dir.file("model.safetensors")),
                                              HasSubstr("is 5 bytes"), HasSubstr("too short")));
}

TEST(SafetensorsTest, RefusesHeaderLengthLargerThanFile) {
  TempDir dir;
  std::string bytes = raw_safetensors("{}", "");
  bytes[0] = 100;  // claims a 100-byte header; 8 bytes follow
  EXPECT_THAT(open_error(dir, bytes),
              AllOf(HasSubstr(dir.file("model.safetensors")),
                    HasSubstr("header length 100 is larger than the 8 bytes")));
}

TEST(SafetensorsTest, RefusesHeaderOver100MB) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  const uint64_t n_header = (uint64_t{100} << 20) + 1;
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n_header >> (8 * i)) & 0xff);
  write_file(path, len);
  std::filesystem::resize_file(path, 8 + n_header);  // sparse: no 100 MB written
  StatusOr<std::shared_ptr<SafetensorsFile>> st = SafetensorsFile::open(path);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.status().message(),
              AllOf(HasSubstr(path), HasSubstr("exceeds the limit of 104857600 bytes")));
}

TEST(SafetensorsTest, RefusesTruncatedData) {
  TempDir dir;
  std::string bytes =
      safetensors_bytes({{"first", "F32", {4}, bytes_of(std::vector<float>{1, 2, 3, 4})},
                         {"second", "F32", {4}, bytes_of(std::vector<float>{5, 6, 7, 8})}});
  bytes.resize(bytes.size() - 6);  // cut in the middle of "second"
  EXPECT_THAT(
      open_error(dir, bytes),
      AllOf(HasSubstr(dir.file("model.safetensors")), HasSubstr("tensor 'second'"),
            HasSubstr("data_offsets [16, 32] run past the end of the data section (26 bytes")));
}

TEST(SafetensorsTest, RefusesHeaderThatLiesAboutSize) {
  TempDir dir;
  const std::string header =
      R"({"model.norm.weight":{"dtype":"F32","shape":[64],"data_offsets":[0,100]}})";
  EXPECT_EQ(open_error(dir, raw_safetensors(header, std::string(256, '\0'))),
            dir.file("model.safetensors") +
                ": tensor 'model.norm.weight': data_offsets [0, 100] hold 100 bytes but F32[64] "
                "needs 256");
}

TEST(SafetensorsTest, RefusesOverlappingTensors) {
  TempDir dir;
  const std::string header = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                             R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})";
  EXPECT_THAT(open_error(dir, raw_safetensors(header, std::string(24, '\0'))),
              AllOf(HasSubstr(dir.file("model.safetensors")),
                    HasSubstr("tensor 'b': data_offsets [8, 24] overlap tensor 'a' at [0, 16]")));
}

TEST(SafetensorsTest, RefusesOffsetsOutOfRange) {
  TempDir dir;
  const std::string header = R"({"w":{"dtype":"BF16","shape":[8],"data_offsets":[64,80]}})";
  EXPECT_THAT(
      open_error(dir, raw_safetensors(header, std::string(32, '\0'))),
      AllOf(HasSubstr("tensor 'w'"),
            HasSubstr("data_offsets [64, 80] run past the end of the data section (32 bytes")));
}

TEST(SafetensorsTest, RefusesBeginAfterEnd) {
  TempDir dir;
  const std::string header = R"({"w":{"dtype":"I8","shape":[0],"data_offsets":[8,4]}})";
  EXPECT_THAT(open_error(dir, raw_safetensors(header, std::string(8, '\0'))),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("data_offsets [8, 4] has begin > end")));
}

TEST(SafetensorsTest, RefusesOverflowingShape) {
  TempDir dir;
  const std::string header =
      R"({"huge":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}})";
  EXPECT_THAT(open_error(dir, raw_safetensors(header, std::string(16, '\0'))),
              AllOf(HasSubstr("tensor 'huge'"), HasSubstr("overflows")));
}

TEST(SafetensorsTest, RefusesByteSizeOverflowEvenWhenElementCountFits) {
  TempDir dir;
  // 2^61 elements fit in int64 but 2^61 * 32 bits do not.
  const std::string header =
      R"({"huge":{"dtype":"F32","shape":[2305843009213693952],"data_offsets":[0,16]}})";
  EXPECT_THAT(open_error(dir, raw_safetensors(header, std::string(16, '\0'))),
              AllOf(HasSubstr("tensor 'huge'"), HasSubstr("overflows")));
}

TEST(SafetensorsTest, RefusesUnknownDtype) {
  TempDir dir;
  const std::string header = R"({"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})";
  EXPECT_THAT(open_error(dir, raw_safetensors(header, std::string(16, '\0'))),
              AllOf(HasSubstr(dir.file("model.safetensors")), HasSubstr("tensor 'w'"),
                    HasSubstr("unknown dtype 'F64'")));
}

TEST(SafetensorsTest, RefusesInvalidJson) {
  TempDir dir;
  EXPECT_THAT(open_error(dir, raw_safetensors(R"({"w": {"dtype": )", "")),
              AllOf(HasSubstr(dir.file("model.safetensors")), HasSubstr("not valid JSON")));
}

TEST(SafetensorsTest, RefusesNonObjectHeader) {
  TempDir dir;
  EXPECT_THAT(open_error(dir, raw_safetensors("[1, 2, 3]", "")),
              AllOf(HasSubstr(dir.file("model.safetensors")),
                    HasSubstr("header must be a JSON object, got array")));
}

TEST(SafetensorsTest, RefusesMoreThan4Dims) {
  TempDir dir;
  const std::string header = R"({"w":{"dtype":"I8","shape":[1,1,1,1,2],"data_offsets":[0,2]}})";
  EXPECT_THAT(open_error(dir, raw_safetensors(header, std::string(2, '\0'))),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("has 5 dims; at most 4 are supported")));
}

TEST(SafetensorsTest, RefusesNegativeOrFractionalDims) {
  for (const char* shape : {"[-1, 2]", "[1.5]", "[\"2\"]"}) {
    TempDir dir;
    const std::string header =
        std::string(R"({"w":{"dtype":"I8","shape":)") + shape + R"(,"data_offsets":[0,2]}})";
    EXPECT_THAT(open_error(dir, raw_safetensors(header, std::string(2, '\0'))),
                AllOf(HasSubstr("tensor 'w'"), HasSubstr("must hold non-negative integers")))
        << shape;
  }
}

TEST(SafetensorsTest, RefusesUnknownAndMissingKeys) {
  TempDir dir;
  EXPECT_THAT(open_error(dir, raw_safetensors(
                                  R"({"w":{"dtype":"I8","shape":[2],"data_offsets":[0,2],"x":1}})",
                                  std::string(2, '\0'))),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("unknown key 'x'")));
  EXPECT_THAT(
      open_error(dir, raw_safetensors(R"({"w":{"dtype":"I8","shape":[2]}})", std::string(2, '\0'))),
      AllOf(HasSubstr("tensor 'w'"), HasSubstr("missing 'data_offsets'")));
  EXPECT_THAT(open_error(dir, raw_safetensors(R"({"w":{"dtype":"I8","data_offsets":[0,2]}})",
                                              std::string(2, '\0'))),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("missing 'shape'")));
  EXPECT_THAT(open_error(dir, raw_safetensors(R"({"w":[1]})", "")),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("entry must be an object")));
}

TEST(SafetensorsTest, RefusesMalformedDataOffsets) {
  TempDir dir;
  EXPECT_THAT(
      open_error(dir, raw_safetensors(R"({"w":{"dtype":"I8","shape":[2],"data_offsets":[0,1,2]}})",
                                      std::string(2, '\0'))),
      AllOf(HasSubstr("tensor 'w'"), HasSubstr("must be [begin, end]")));
}

TEST(SafetensorsTest, RefusesNonStringMetadata) {
  TempDir dir;
  EXPECT_THAT(open_error(dir, raw_safetensors(R"({"__metadata__":{"format":1}})", "")),
              HasSubstr("__metadata__ entry 'format' must be a string"));
}

}  // namespace
}  // namespace moeserve
