// CudaBackend's graphs (cuda_graph.cc): ops captured once replay with whatever their input
// tensors hold at replay, bit-equal to running them eagerly; a capture that would need a larger
// workspace fails by name; host reads during a capture break it. On a GPU (label gpu) or the
// emulated runtime (label emu, tests/emu/cuda_graph_emu_test covers the runtime calls).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "common/dtype.h"
#include "common/tensor.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace moeserve {
namespace {

using ::testing::HasSubstr;

Tensor host_random(DType dtype, const std::vector<int64_t>& shape, std::mt19937& rng) {
  Tensor t = Tensor::empty_host(dtype, shape);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (dtype == DType::kBF16) {
      t.data<uint16_t>()[i] = f32_to_bf16(dist(rng));
    } else {
      t.data<float>()[i] = dist(rng);
    }
  }
  return t;
}

std::vector<uint8_t> bytes_of(Backend& be, const Tensor& dev) {
  Tensor h = Tensor::empty_host(dev.dtype(), dev.shape());
  be.copy(dev, h);
  const auto* p = static_cast<const uint8_t*>(h.raw());
  return {p, p + h.n_bytes()};
}

class CudaGraphTest : public ::testing::Test {
 protected:
  // A decode-shaped pair of ops: out = (x · wᵀ) + bias. k = 1024 with 2 tokens splits k on
  // one SM, so the linear uses the workspace.
  static constexpr int64_t kTokens = 2, kK = 1024, kM = 64;

  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    auto be = CudaBackend::create(0, {.memory_fraction = 1.0 / 64});
    ASSERT_TRUE(be.ok()) << be.status();
    be_ = std::move(*be);
    std::mt19937 rng(7);
    w_ = be_->prepare_weight(host_random(DType::kBF16, {kM, kK}, rng));
    bias_ = be_->alloc(DType::kF32, {kTokens, kM});
    be_->copy(host_random(DType::kF32, {kTokens, kM}, rng), bias_);
    x_ = be_->alloc(DType::kF32, {kTokens, kK});
    mid_ = be_->alloc(DType::kF32, {kTokens, kM});
    out_ = be_->alloc(DType::kF32, {kTokens, kM});
  }

  void ops() {
    be_->linear(x_, w_, mid_);
    be_->add(mid_, bias_, out_);
  }
  void set_x(uint32_t seed) {
    std::mt19937 rng(seed);
    be_->copy(host_random(DType::kF32, {kTokens, kK}, rng), x_);
  }

  std::unique_ptr<CudaBackend> be_;
  Tensor w_, bias_, x_, mid_, out_;
};

TEST_F(CudaGraphTest, ReplaysFollowTheInputsAndEqualEagerRunsBitForBit) {
  ASSERT_TRUE(be_->supports_graphs());
  set_x(1);
  ops();  // eager warm-up: sizes the workspace
  ASSERT_TRUE(be_->begin_capture().ok());
  EXPECT_EQ(be_->begin_capture().code(), absl::StatusCode::kFailedPrecondition);
  ops();
  auto graph = be_->end_capture();
  ASSERT_TRUE(graph.ok()) << graph.status();
  for (uint32_t seed : {2u, 3u}) {
    set_x(seed);
    ops();
    const std::vector<uint8_t> eager = bytes_of(*be_, out_);
    std::vector<uint8_t> poison(eager.size(), 0xff);
    Tensor nan_host = Tensor::empty_host(DType::kF32, {kTokens, kM});
    std::memcpy(nan_host.raw(), poison.data(), poison.size());
    be_->copy(nan_host, out_);
    ASSERT_TRUE(be_->replay(**graph).ok());
    EXPECT_EQ(bytes_of(*be_, out_), eager) << "seed " << seed;
  }
  // Different inputs gave different outputs (so the comparison above could fail).
  set_x(2);
  ASSERT_TRUE(be_->replay(**graph).ok());
  const std::vector<uint8_t> two = bytes_of(*be_, out_);
  set_x(3);
  ASSERT_TRUE(be_->replay(**graph).ok());
  EXPECT_NE(bytes_of(*be_, out_), two);
}

TEST_F(CudaGraphTest, AWorkspaceThatWouldGrowDuringTheCaptureFailsItByName) {
  set_x(1);
  ASSERT_TRUE(be_->begin_capture().ok());
  ops();  // first use: the split-K workspace is allocated
  auto graph = be_->end_capture();
  ASSERT_FALSE(graph.ok());
  EXPECT_EQ(graph.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(graph.status().message(), HasSubstr("workspace would grow"));
  // Reserved beforehand, the same capture works, and a later growth leaves the graph's own.
  be_->reserve_workspace(1 << 20);
  ASSERT_TRUE(be_->begin_capture().ok());
  ops();
  graph = be_->end_capture();
  ASSERT_TRUE(graph.ok()) << graph.status();
  ops();
  const std::vector<uint8_t> eager = bytes_of(*be_, out_);
  be_->reserve_workspace(4 << 20);  // frees the old buffer unless the graph holds it
  // A tensor of the old size would take the freed range: the replay must not write into it.
  Tensor filler = be_->alloc(DType::kI8, {1 << 20});
  Tensor pattern = Tensor::empty_host(DType::kI8, {1 << 20});
  std::memset(pattern.raw(), 0x5a, 1 << 20);
  be_->copy(pattern, filler);
  ASSERT_TRUE(be_->replay(**graph).ok());
  EXPECT_EQ(bytes_of(*be_, out_), eager);
  const std::vector<uint8_t> after = bytes_of(*be_, filler);
  EXPECT_EQ(std::count(after.begin(), after.end(), 0x5a), 1 << 20);
}

using CudaGraphDeathTest = CudaGraphTest;

TEST_F(CudaGraphDeathTest, ReadingResultsDuringACaptureBreaksIt) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ops();
  EXPECT_DEATH(
      {
        (void)be_->begin_capture();
        ops();
        (void)bytes_of(*be_, out_);  // a D2H copy waits for the stream: refused
      },
      "cudaErrorStreamCaptureUnsupported");
}

TEST(CudaGraphCpuTest, TheCpuBackendHasNoGraphs) {
  auto cpu = create_backend("cpu", 1);
  ASSERT_TRUE(cpu.ok());
  EXPECT_FALSE((*cpu)->supports_graphs());
  EXPECT_EQ((*cpu)->begin_capture().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace moeserve
