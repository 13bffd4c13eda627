// SafetensorsWriter streams files that SafetensorsFile reads back exactly, and
// refuses to write more or fewer bytes than its header declares. Checkpoint
// page residency: populate() makes a tensor's bytes resident, release() drops
// them again while the data stays readable.
#include "model/safetensors_writer.h"

#include <filesystem>
#include <vector>

#include "common/process_memory.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "safetensors_writer.h"  // tests/unit: TempDir
#include <gtest/gtest.h>

namespace moeserve {
namespace {

using test::TempDir;

TEST(SafetensorsWriterTest, WritesWhatTheReaderReads) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -1.0f};
  std::vector<uint16_t> b = {f32_to_bf16(0.5f), f32_to_bf16(-4.0f), f32_to_bf16(9.0f)};
  std::vector<uint8_t> c = {0x38, 0xB8, 0x01};
  auto w = SafetensorsWriter::create(
      path,
      {{"a", DType::kF32, {2, 3}}, {"b.weight", DType::kBF16, {3}}, {"c", DType::kFP8E4M3, {1, 3}}},
      {{"format", "pt"}});
  ASSERT_TRUE(w.ok()) << w.status();
  // Bytes may arrive in any chunking.
  ASSERT_TRUE((*w)->write(a.data(), 10).ok());
  ASSERT_TRUE((*w)->write(reinterpret_cast<char*>(a.data()) + 10, 14).ok());
  ASSERT_TRUE((*w)->write(b.data(), 6).ok());
  ASSERT_TRUE((*w)->write(c.data(), 3).ok());
  ASSERT_TRUE((*w)->close().ok());

  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  EXPECT_EQ((*f)->names(), (std::vector<std::string>{"a", "b.weight", "c"}));
  auto ta = (*f)->tensor("a");
  ASSERT_TRUE(ta.ok());
  EXPECT_EQ(ta->shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(to_f32_vector(*ta), a);
  auto tb = (*f)->tensor("b.weight");
  ASSERT_TRUE(tb.ok());
  EXPECT_EQ(to_f32_vector(*tb), (std::vector<float>{0.5f, -4.0f, 9.0f}));
  auto tc = (*f)->tensor("c");
  ASSERT_TRUE(tc.ok());
  EXPECT_EQ(tc->dtype(), DType::kFP8E4M3);
  EXPECT_EQ(to_f32_vector(*tc),
            (std::vector<float>{fp8e4m3_to_f32(0x38), fp8e4m3_to_f32(0xB8), fp8e4m3_to_f32(0x01)}));
}

TEST(SafetensorsWriterTest, RefusesWrongByteCountsAndNames) {
  TempDir dir;
  auto w = SafetensorsWriter::create(dir.file("x.safetensors"), {{"a", DType::kF32, {2}}});
  ASSERT_TRUE(w.ok());
  const float v[3] = {1, 2, 3};
  EXPECT_EQ((*w)->write(v, 12).code(), absl::StatusCode::kOutOfRange);
  ASSERT_TRUE((*w)->write(v, 4).ok());
  const Status closed = (*w)->close();
  EXPECT_FALSE(closed.ok());
  EXPECT_NE(closed.message().find("4 of 8 data bytes"), std::string::npos) << closed;
  EXPECT_FALSE(SafetensorsWriter::create(dir.file("y.safetensors"),
                                         {{"a", DType::kF32, {1}}, {"a", DType::kF32, {1}}})
                   .ok());
  EXPECT_FALSE(
      SafetensorsWriter::create(dir.file("z.safetensors"), {{"__metadata__", DType::kF32, {1}}})
          .ok());
}

TEST(CheckpointResidencyTest, PopulateAndReleaseMoveResidentMemory) {
  TempDir dir;
  constexpr int64_t kN = int64_t{16} << 20;  // 64 MiB of F32
  {
    auto w = SafetensorsWriter::create(dir.file("model.safetensors"),
                                       {{"big", DType::kF32, {kN}}, {"small", DType::kF32, {4}}});
    ASSERT_TRUE(w.ok());
    std::vector<float> chunk(1 << 16);
    for (int64_t i = 0; i < kN; i += static_cast<int64_t>(chunk.size())) {
      for (size_t j = 0; j < chunk.size(); ++j) chunk[j] = static_cast<float>((i + j) % 1000);
      ASSERT_TRUE((*w)->write(chunk.data(), static_cast<int64_t>(chunk.size() * 4)).ok());
    }
    const float s[4] = {1, 2, 3, 4};
    ASSERT_TRUE((*w)->write(s, 16).ok());
    ASSERT_TRUE((*w)->close().ok());
  }
  auto ckpt = Checkpoint::open(dir.path().string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const int64_t before = resident_bytes();
  ckpt->populate("big");
  const int64_t populated = resident_bytes();
  EXPECT_GE(populated - before, int64_t{56} << 20) << before << " -> " << populated;
  ckpt->release("big");
  const int64_t released = resident_bytes();
  EXPECT_GE(populated - released, int64_t{56} << 20) << populated << " -> " << released;
  // Released pages come back from the file on the next read.
  auto big = ckpt->get("big");
  ASSERT_TRUE(big.ok());
  for (int64_t i : {int64_t{0}, int64_t{12345}, kN - 1}) {
    EXPECT_EQ(big->data<float>()[i], static_cast<float>(i % 1000)) << i;
  }
}

}  // namespace
}  // namespace moeserve
