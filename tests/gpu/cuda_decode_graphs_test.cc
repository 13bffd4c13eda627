// Decode steps as CUDA graphs (model/decode_graphs.h) on the CUDA backend: a model decoding
// several sequences with graphs gives bit-for-bit the logits of the same model run eagerly
// (the same kernels on the same rows), each batch-size bucket is captured once (after one eager
// warm-up), prefill and mixed steps and batches beyond the largest bucket stay eager. On a GPU
// (label gpu) or the SIMT emulator's runtime (label emu); skipped with neither.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "engine/model_runner.h"
#include "model/deepseek_v2.h"
#include "model/kv_cache.h"
#include "tests/support/golden_data.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

constexpr double kPoolFraction = 1.0 / 32;  // 128 MiB of the emulator's 4 GiB device
constexpr int kBlockSize = 4, kBlocksPerSeq = 8, kMaxSeqs = 8;

// One model on its own cache, with sequences whose blocks are fixed: seq i owns blocks
// [i * kBlocksPerSeq, (i + 1) * kBlocksPerSeq).
struct Decoder {
  std::unique_ptr<DeepseekV2Model> model;
  std::unique_ptr<KvCache> cache;
  std::vector<std::vector<int32_t>> tables;
  std::vector<int> n_cached;

  Decoder(Backend& be, bool graphs, int max_graph_batch = 256) {
    auto m = DeepseekV2Model::load(golden_model_dir("v3_tiny"), be);
    MS_CHECK(m.ok(), m.status().ToString());
    model = *std::move(m);
    if (graphs) model->enable_decode_graphs(max_graph_batch);
    model->reserve({.max_tokens = 64,
                    .max_seqs = kMaxSeqs,
                    .max_logits = 64,
                    .max_blocks = kMaxSeqs * kBlocksPerSeq,
                    .activations = be.default_activation_dtype()});
    cache = std::make_unique<KvCache>(be, model->config().num_hidden_layers,
                                      kMaxSeqs * kBlocksPerSeq, kBlockSize, model->kv_row_width(),
                                      DType::kBF16, /*scratch_block=*/graphs);
    for (int s = 0; s < kMaxSeqs; ++s) {
      std::vector<int32_t> t(kBlocksPerSeq);
      for (int b = 0; b < kBlocksPerSeq; ++b) t[static_cast<size_t>(b)] = s * kBlocksPerSeq + b;
      tables.push_back(t);
      n_cached.push_back(0);
    }
  }

  // Appends tokens[i] to sequence i for each i; the host logits (the last token's per sequence).
  std::vector<std::vector<float>> step(const std::vector<std::vector<int32_t>>& tokens) {
    std::vector<RunSeq> seqs;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const int blocks =
          (n_cached[i] + static_cast<int>(tokens[i].size()) + kBlockSize - 1) / kBlockSize;
      seqs.push_back({.n_computed = n_cached[i],
                      .tokens = tokens[i],
                      .block_table = std::span(tables[i]).first(static_cast<size_t>(blocks))});
    }
    auto logits = run_step(*model, *cache, seqs);
    MS_CHECK(logits.ok(), logits.status().ToString());
    EXPECT_EQ(logits->dim(0), static_cast<int64_t>(tokens.size()));
    Tensor host = Tensor::empty_host(DType::kF32, logits->shape());
    model->backend().copy(*logits, host);
    for (size_t i = 0; i < tokens.size(); ++i) n_cached[i] += static_cast<int>(tokens[i].size());
    const int64_t vocab = logits->dim(1);
    std::vector<std::vector<float>> rows;
    for (int64_t r = 0; r < logits->dim(0); ++r) {
      rows.emplace_back(host.data<float>() + r * vocab, host.data<float>() + (r + 1) * vocab);
    }
    return rows;
  }
};

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class CudaDecodeGraphsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    auto be = CudaBackend::create(0, {.memory_fraction = kPoolFraction});
    ASSERT_TRUE(be.ok()) << be.status();
    be_ = std::move(*be);
  }
  // Prompts of 3..(2 + n) random tokens.
  static std::vector<std::vector<int32_t>> prompts(int n, int64_t vocab) {
    std::mt19937 rng(11);
    std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab) - 1);
    std::vector<std::vector<int32_t>> p(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < 3 + i; ++j) p[static_cast<size_t>(i)].push_back(id(rng));
    }
    return p;
  }
  std::unique_ptr<CudaBackend> be_;
};

TEST_F(CudaDecodeGraphsTest, GraphDecodingIsBitEqualToEagerAndCapturesEachBucketOnce) {
  Decoder graphs(*be_, /*graphs=*/true), eager(*be_, /*graphs=*/false);
  ASSERT_TRUE(graphs.model->decode_graphs_active());
  ASSERT_FALSE(eager.model->decode_graphs_active());
  const auto prompt = prompts(5, graphs.model->config().vocab_size);
  const auto g0 = graphs.step(prompt), e0 = eager.step(prompt);  // prefill: eager on both
  EXPECT_EQ(graphs.model->n_graph_captures(), 0);
  std::vector<int32_t> next;
  for (size_t i = 0; i < g0.size(); ++i) {
    ASSERT_TRUE(bit_equal(g0[i], e0[i])) << "prefill row " << i;
    next.push_back(argmax(g0[i]));
  }
  // 5, 3, 2 and 1 sequences: buckets 8, 4, 2 and 1, three steps each (warm-up, capture and
  // replay, replay), every step's greedy tokens fed to both models.
  const int counts[] = {5, 5, 5, 3, 3, 3, 2, 2, 2, 1, 1, 1};
  const int captures_after[] = {0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4};
  std::vector<float> previous;
  for (size_t s = 0; s < std::size(counts); ++s) {
    std::vector<std::vector<int32_t>> tokens;
    for (int i = 0; i < counts[s]; ++i) tokens.push_back({next[static_cast<size_t>(i)]});
    const auto g = graphs.step(tokens), e = eager.step(tokens);
    ASSERT_EQ(g.size(), static_cast<size_t>(counts[s]));
    for (size_t i = 0; i < g.size(); ++i) {
      ASSERT_TRUE(bit_equal(g[i], e[i])) << "decode step " << s << " sequence " << i;
      next[i] = argmax(g[i]);
    }
    EXPECT_EQ(graphs.model->n_graph_captures(), captures_after[s]) << "after step " << s;
    // Replays compute new logits each step (not the captured step's).
    EXPECT_FALSE(bit_equal(g[0], previous)) << "step " << s;
    previous = g[0];
  }
  EXPECT_EQ(eager.model->n_graph_captures(), 0);
}

TEST_F(CudaDecodeGraphsTest, PrefillMixedAndOversizedStepsRunEagerly) {
  Decoder d(*be_, /*graphs=*/true, /*max_graph_batch=*/4);
  const auto prompt = prompts(5, d.model->config().vocab_size);
  d.step(prompt);
  for (int s = 0; s < 3; ++s) {  // 5 sequences: beyond the largest bucket (4)
    d.step({{1}, {2}, {3}, {4}, {5}});
  }
  EXPECT_EQ(d.model->n_graph_captures(), 0);
  for (int s = 0; s < 2; ++s) d.step({{1}, {2}, {3}, {4}});  // bucket 4: warm-up, capture
  EXPECT_EQ(d.model->n_graph_captures(), 1);
  d.step({{1}, {2, 3}});         // mixed: one sequence brings two tokens
  d.step({{1}, {2}, {3}, {4}});  // replays
  EXPECT_EQ(d.model->n_graph_captures(), 1);
}

}  // namespace
}  // namespace moeserve
