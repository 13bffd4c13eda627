// The planned step (model/step_context.h): after a warm-up, forward() and
// plan() allocate nothing on the backend over 100 decode steps; the arena
// arithmetic is exact (the largest step uses every byte reserved, and no
// more); plan() refuses a bad batch without touching the context; the arena
// and shard helpers behave as documented.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "model/deepseek_v2.h"
#include "model/layers/linear.h"
#include "model/step_context.h"
#include "tests/support/bf16_activation_backend.h"
#include "tests/support/forwarding_backend.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace moeserve {
namespace {

std::string tiny(const std::string& name) {
  return std::string(MOESERVE_SOURCE_DIR) + "/tests/data/tiny/" + name;
}

// Sequence s owns blocks [s * per_seq, (s + 1) * per_seq) of the cache.
struct Batcher {
  int block_size;
  int per_seq;  // blocks per sequence

  // One step: `lengths[s]` new tokens of sequence s starting at `start[s]`,
  // the last token of each sequence returning logits.
  ForwardBatch make(const std::vector<std::vector<int32_t>>& tokens,
                    const std::vector<int>& start) const {
    ForwardBatch b;
    b.n_seqs = static_cast<int32_t>(tokens.size());
    b.max_blocks = per_seq;
    for (int s = 0; s < b.n_seqs; ++s) {
      for (int j = 0; j < per_seq; ++j) b.block_tables.push_back(s * per_seq + j);
      for (size_t i = 0; i < tokens[static_cast<size_t>(s)].size(); ++i) {
        const int pos = start[static_cast<size_t>(s)] + static_cast<int>(i);
        b.tokens.push_back(tokens[static_cast<size_t>(s)][i]);
        b.positions.push_back(pos);
        b.token_seq.push_back(s);
        b.slot_mapping.push_back((s * per_seq + pos / block_size) * block_size + pos % block_size);
      }
      b.logits_rows.push_back(static_cast<int32_t>(b.tokens.size()) - 1);
    }
    return b;
  }
};

std::vector<float> to_host(const Tensor& t) { return to_f32_vector(t); }

TEST(PlannedStepTest, DecodeStepsAllocateNothingAfterWarmUp) {
  CpuBackend cpu(2);
  CountingBackend be(cpu);
  auto model = DeepseekV2Model::load(tiny("v3_tiny"), be);
  ASSERT_TRUE(model.ok()) << model.status();
  DeepseekV2Model& m = **model;
  const int n_seqs = 3, block_size = 4, per_seq = 40;
  const Batcher batcher{block_size, per_seq};
  KvCache cache(be, m.config().num_hidden_layers, n_seqs * per_seq, block_size, m.kv_row_width(),
                DType::kBF16);
  m.reserve({.max_tokens = 32, .max_seqs = 4, .max_logits = 4, .max_blocks = 4 * per_seq});

  std::vector<std::vector<int32_t>> prompts = {{5, 9, 2, 7, 1}, {3, 3, 8, 1, 4, 6, 2}, {11}};
  std::vector<int> len = {5, 7, 1};
  auto logits = m.forward(batcher.make(prompts, {0, 0, 0}), cache);
  ASSERT_TRUE(logits.ok()) << logits.status();
  auto next_tokens = [&](const Tensor& l) {
    const std::vector<float> v = to_host(l);
    const int64_t vocab = l.dim(1);
    std::vector<std::vector<int32_t>> next;
    for (int64_t r = 0; r < l.dim(0); ++r) {
      const auto row = v.begin() + r * vocab;
      for (int64_t i = 0; i < vocab; ++i) EXPECT_TRUE(std::isfinite(row[i]));
      next.push_back({static_cast<int32_t>(std::max_element(row, row + vocab) - row)});
    }
    return next;
  };
  std::vector<std::vector<int32_t>> next = next_tokens(*logits);
  auto decode = [&] {
    auto step = m.plan(batcher.make(next, len), cache);
    ASSERT_TRUE(step.ok()) << step.status();
    auto out = m.forward(**step, cache);
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_EQ(out->dim(0), n_seqs);
    next = next_tokens(*out);
    for (int& l : len) ++l;
  };
  decode();  // warm-up
  const int64_t before = be.n_allocs();
  for (int i = 0; i < 100; ++i) decode();
  EXPECT_EQ(be.n_allocs(), before) << "backend allocations during 100 decode steps";
  EXPECT_EQ(len[1], 7 + 101);  // crossed 25 block boundaries
}

// At the reserved limits a step takes exactly activation_bytes() from the
// arena: the layers' workspace arithmetic matches what forward() takes, in F32
// and in BF16 activations (on a backend with them: every activation an op
// receives is then BF16, and the arena is smaller).
TEST(PlannedStepTest, LargestStepUsesExactlyTheReservedArena) {
  for (const char* name : {"v2_lite_tiny", "v2_tiny", "v3_tiny", "v3_fp8_tiny"}) {
    int64_t f32_bytes = 0;
    for (const DType act : {DType::kF32, DType::kBF16}) {
      SCOPED_TRACE(std::string(name) + " " + dtype_name(act));
      CpuBackend cpu(2);
      Bf16ActivationBackend bf16(cpu);
      Backend& be = act == DType::kF32 ? static_cast<Backend&>(cpu) : bf16;
      auto model = DeepseekV2Model::load(tiny(name), be);
      ASSERT_TRUE(model.ok()) << model.status();
      DeepseekV2Model& m = **model;
      const int block_size = 8, per_seq = 8, n_seqs = 3, n_tokens = 45;
      KvCache cache(be, m.config().num_hidden_layers, n_seqs * per_seq, block_size,
                    m.kv_row_width(), DType::kF32);
      const StepLimits limits{.max_tokens = n_tokens,
                              .max_seqs = n_seqs,
                              .max_logits = n_seqs,
                              .max_blocks = n_seqs * per_seq,
                              .activations = act};
      m.reserve(limits);
      const int64_t want = DeepseekV2Model::activation_bytes(m.config(), n_tokens, n_seqs, act);
      EXPECT_EQ(m.arena_bytes(), want);
      std::vector<std::vector<int32_t>> tokens(n_seqs);
      for (int t = 0; t < n_tokens; ++t) tokens[static_cast<size_t>(t % n_seqs)].push_back(t % 50);
      auto step = m.plan(Batcher{block_size, per_seq}.make(tokens, {0, 0, 0}), cache);
      ASSERT_TRUE(step.ok()) << step.status();
      auto logits = m.forward(**step, cache);
      ASSERT_TRUE(logits.ok()) << logits.status();
      EXPECT_EQ(logits->dtype(), DType::kF32);
      EXPECT_EQ((*step)->arena().high_water(), want);
      EXPECT_EQ(m.arena_bytes(), want) << "the context grew for a step within its limits";
      if (act == DType::kF32) {
        f32_bytes = want;
      } else {
        EXPECT_LT(want, f32_bytes);
        EXPECT_THAT(bf16.f32_activations(), ::testing::IsEmpty());
      }
    }
  }
}

TEST(PlannedStepDeathTest, ActivationDtypeTheBackendLacksAborts) {
  CpuBackend be(1);
  auto model = DeepseekV2Model::load(tiny("v2_lite_tiny"), be);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_DEATH((*model)->reserve({.max_tokens = 4,
                                  .max_seqs = 1,
                                  .max_logits = 1,
                                  .max_blocks = 4,
                                  .activations = DType::kBF16}),
               "cpu backend has no BF16 activations");
}

TEST(PlannedStepTest, BadBatchIsRefusedAndTheContextIsUnchanged) {
  CpuBackend be(1);
  auto model = DeepseekV2Model::load(tiny("v2_lite_tiny"), be);
  ASSERT_TRUE(model.ok()) << model.status();
  DeepseekV2Model& m = **model;
  KvCache cache(be, m.config().num_hidden_layers, 8, 4, m.kv_row_width(), DType::kF32);
  m.reserve({.max_tokens = 8, .max_seqs = 2, .max_logits = 2, .max_blocks = 8});
  const Batcher batcher{4, 4};
  auto good = m.plan(batcher.make({{1, 2, 3}}, {0}), cache);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ((*good)->n_tokens(), 3);
  auto bad = m.plan(batcher.make({{1, 2, 100000}}, {0}), cache);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("100000"), std::string::npos) << bad.status();
  EXPECT_EQ((*good)->n_tokens(), 3);
  // A step past the reserved limits grows the context instead of failing.
  const int64_t reserved = m.arena_bytes();
  std::vector<int32_t> many(12, 7);
  auto big = m.plan(Batcher{4, 4}.make({many}, {0}), cache);
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ((*big)->n_tokens(), 12);
  EXPECT_GT(m.arena_bytes(), reserved);
}

TEST(ActivationArenaTest, ScopesReuseBytesAndViewsAreAligned) {
  CpuBackend be(1);
  ActivationArena arena(be, 4096, DType::kBF16);
  const Tensor a = arena.take(DType::kF32, {3, 5});
  EXPECT_EQ(arena.used(), ArenaSize::kAlign);
  {
    ActivationArena::Scope scope(arena);
    const Tensor b = arena.take(DType::kBF16, {7});
    const Tensor c = arena.take(DType::kI32, {100});
    EXPECT_EQ(static_cast<char*>(b.raw()) - static_cast<char*>(a.raw()), ArenaSize::kAlign);
    EXPECT_EQ(static_cast<char*>(c.raw()) - static_cast<char*>(b.raw()), ArenaSize::kAlign);
    EXPECT_EQ(arena.used(), 4 * ArenaSize::kAlign);
    EXPECT_EQ(c.dtype(), DType::kI32);
    EXPECT_EQ(c.dim(0), 100);
    EXPECT_EQ(arena.take_act({2, 4}).dtype(), DType::kBF16);
    EXPECT_EQ(arena.used(), 5 * ArenaSize::kAlign);
  }
  EXPECT_EQ(arena.used(), ArenaSize::kAlign);
  EXPECT_EQ(arena.high_water(), 5 * ArenaSize::kAlign);
  ArenaSize size(DType::kBF16);
  size.add(DType::kF32, 15).add(DType::kBF16, 7).add(DType::kI32, 100).add_act(128);
  EXPECT_EQ(size.bytes(), 5 * ArenaSize::kAlign);  // 128 BF16 values fit one 256-byte slot
  EXPECT_EQ(ArenaSize(DType::kF32).add_act(128).bytes(), 2 * ArenaSize::kAlign);
}

TEST(ActivationArenaDeathTest, OverflowAborts) {
  CpuBackend be(1);
  ActivationArena arena(be, 1024, DType::kF32);
  arena.take(DType::kF32, {200});
  EXPECT_DEATH(arena.take(DType::kF32, {100}), "overflows");
}

TEST(ShardWeightTest, RowsAndColumnsOfEachRank) {
  Tensor w = Tensor::empty_host(DType::kF32, {4, 6});
  for (int i = 0; i < 24; ++i) w.data<float>()[i] = static_cast<float>(i);
  auto rows = shard_weight(w, 0, {.rank = 1, .world = 2});
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(to_f32_vector(*rows),
            (std::vector<float>{12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23}));
  auto cols = shard_weight(w, 1, {.rank = 2, .world = 3});
  ASSERT_TRUE(cols.ok()) << cols.status();
  ASSERT_TRUE(cols->is_contiguous());
  EXPECT_EQ(to_f32_vector(*cols), (std::vector<float>{4, 5, 10, 11, 16, 17, 22, 23}));
  auto whole = shard_weight(w, 1, {});
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->raw(), w.raw());
  auto uneven = shard_weight(w, 0, {.rank = 0, .world = 3});
  ASSERT_FALSE(uneven.ok());
  EXPECT_NE(uneven.status().message().find("does not divide"), std::string::npos);
  EXPECT_FALSE(shard_weight(w, 0, {.rank = 2, .world = 2}).ok());
  // Stacked blocks: rows [g0 g1; u0 u1] give rank 1 [g1; u1].
  auto stacked = shard_weight(w, 0, {.rank = 1, .world = 2}, 2);
  ASSERT_TRUE(stacked.ok()) << stacked.status();
  EXPECT_EQ(to_f32_vector(*stacked),
            (std::vector<float>{6, 7, 8, 9, 10, 11, 18, 19, 20, 21, 22, 23}));
  EXPECT_FALSE(shard_weight(w, 1, {.rank = 0, .world = 2}, 2).ok()) << "6 into 2 x 2";
  // Leading dims are kept: [2, 2, 3] by its last dim's 3 columns over 3 ranks.
  const Tensor w3 = w.reshape({2, 2, 6});
  auto last = shard_weight(w3, 2, {.rank = 1, .world = 3});
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->shape(), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(to_f32_vector(*last), (std::vector<float>{2, 3, 8, 9, 14, 15, 20, 21}));
}

}  // namespace
}  // namespace moeserve
