// kernels/mla_attention.cu under the emulator, through its launch function, against a plain
// double-precision loop written here: decode and chunked prefill over a paged latent cache,
// one and several KV splits (the merge kernel), 16- and 64-row tiles, F32 and BF16 caches and
// activations, strided queries and outputs, a tile whose tokens change sequence twice, and
// a token whose position is beyond its block table (NaN row). Inputs are fresh random data
// each run (the seed is printed); outputs and the split workspace start as NaN, so an
// element the kernels fail to write cannot pass. Deterministic and random schedules, racecheck
// on. plan_mla_attention's choices are checked at DeepSeek's shapes.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <random>
#include <vector>

#include "kernels/mla_attention.cuh"
#include "kernels/simt/emu/grid.h"
#include <cuda_bf16.h>
#include <gtest/gtest.h>

namespace moeserve::kernels {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

uint16_t to_bf16(float v) { return std::bit_cast<uint16_t>(__float2bfloat16(v)); }
float from_bf16(uint16_t b) { return __bfloat162float(std::bit_cast<__nv_bfloat16>(b)); }
float bf16_round(float v) { return from_bf16(to_bf16(v)); }

// A tensor of F32 values kept alongside its BF16 bits, so one buffer serves either type.
struct Buf {
  std::vector<float> f;
  std::vector<uint16_t> b;
  ElemType type;
  void* ptr() { return type == ElemType::kF32 ? static_cast<void*>(f.data()) : b.data(); }
  // Value i as the kernel reads it.
  float at(size_t i) const { return type == ElemType::kF32 ? f[i] : from_bf16(b[i]); }
};

Buf make_buf(size_t n, ElemType type, std::mt19937& rng, float lo, float hi) {
  Buf x{std::vector<float>(n), std::vector<uint16_t>(n), type};
  std::uniform_real_distribution<float> dist(lo, hi);
  for (size_t i = 0; i < n; ++i) {
    x.f[i] = dist(rng);
    x.b[i] = to_bf16(x.f[i]);
  }
  return x;
}

Buf nan_buf(size_t n, ElemType type) {
  return {std::vector<float>(n, kNaN), std::vector<uint16_t>(n, to_bf16(kNaN)), type};
}

struct Seq {
  int context;  // cached positions
  int queries;  // its last `queries` positions are query tokens
};

struct Case {
  const char* name;
  int n_heads;
  int block_size;
  std::vector<Seq> seqs;
  ElemType cache_type, q_type, out_type;
  int rows, tokens_per_tile, n_splits;  // the plan (head tiles follow from rows)
  bool interleave = false;              // query tokens alternate between sequences in blocks of 3
  bool bad_token = false;               // one extra token at a position beyond its block table
  int64_t q_pad = 0;                    // extra elements per head in q and out (strided rows)
  int latent = kMlaMaxLatent, rope = kMlaMaxRope;  // widths (DeepSeek's by default)
};

class MlaAttentionEmu : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    simt::EmuOptions o;
    o.racecheck = true;
    o.schedule = GetParam() == 0 ? simt::Schedule::kDeterministic : simt::Schedule::kRandom;
    o.seed = static_cast<uint64_t>(GetParam());
    simt::emu::set_default_options(o);
    const unsigned seed = std::random_device{}();
    std::cout << "seed " << seed << "\n";
    rng_.seed(seed);
  }
  void TearDown() override { simt::emu::set_default_options(simt::EmuOptions{}); }

  void run(const Case& c);

  std::mt19937 rng_;
};

void MlaAttentionEmu::run(const Case& c) {
  SCOPED_TRACE(c.name);
  const int bs = c.block_size, n_heads = c.n_heads;
  const int kL = c.latent, kR = c.rope, kW = c.latent + c.rope;
  const int n_seqs = static_cast<int>(c.seqs.size());
  int max_blocks = 0, n_blocks = 0;
  for (const Seq& s : c.seqs) {
    max_blocks = std::max(max_blocks, (s.context + bs - 1) / bs);
    n_blocks += (s.context + bs - 1) / bs;
  }
  // Block ids shuffled; table entries past a sequence's blocks are -1 (never read).
  std::vector<int32_t> ids(static_cast<size_t>(n_blocks));
  for (int i = 0; i < n_blocks; ++i) ids[static_cast<size_t>(i)] = i;
  std::shuffle(ids.begin(), ids.end(), rng_);
  std::vector<int32_t> table(static_cast<size_t>(n_seqs * max_blocks), -1);
  size_t next = 0;
  for (int s = 0; s < n_seqs; ++s) {
    for (int b = 0; b < (c.seqs[s].context + bs - 1) / bs; ++b)
      table[s * max_blocks + b] = ids[next++];
  }
  std::vector<int32_t> tseq, tpos;
  std::vector<std::vector<int32_t>> per_seq(static_cast<size_t>(n_seqs));
  for (int s = 0; s < n_seqs; ++s) {
    for (int p = c.seqs[s].context - c.seqs[s].queries; p < c.seqs[s].context; ++p)
      per_seq[s].push_back(p);
  }
  for (size_t done = 0, more = 1; more;) {
    more = 0;
    for (int s = 0; s < n_seqs; ++s) {
      const size_t take = c.interleave ? 3 : per_seq[s].size();
      for (size_t i = done; i < std::min(done + take, per_seq[s].size()); ++i) {
        tseq.push_back(s);
        tpos.push_back(per_seq[s][i]);
      }
      if (done + take < per_seq[s].size()) more = 1;
    }
    done += c.interleave ? 3 : 0;
    if (!c.interleave) break;
  }
  if (c.bad_token) {
    tseq.push_back(0);
    tpos.push_back(max_blocks * bs);  // one past what the table holds
  }
  const int64_t n = static_cast<int64_t>(tseq.size());

  Buf cache = make_buf(static_cast<size_t>(n_blocks) * bs * kW, c.cache_type, rng_, -1.0f, 1.0f);
  const int64_t ql_head = kL + c.q_pad, qr_head = kR + c.q_pad, out_head = kL + c.q_pad;
  Buf ql = make_buf(static_cast<size_t>(n * n_heads * ql_head), c.q_type, rng_, -0.15f, 0.15f);
  Buf qr = make_buf(static_cast<size_t>(n * n_heads * qr_head), c.q_type, rng_, -0.15f, 0.15f);
  Buf out = nan_buf(static_cast<size_t>(n * n_heads * out_head), c.out_type);

  MlaPlan plan;
  plan.rows = c.rows;
  plan.heads_per_tile = std::min(n_heads, c.rows);
  plan.tokens_per_tile = c.tokens_per_tile;
  plan.query_tiles = (n + c.tokens_per_tile - 1) / c.tokens_per_tile;
  plan.head_tiles = (n_heads + plan.heads_per_tile - 1) / plan.heads_per_tile;
  plan.n_splits = c.n_splits;
  std::vector<float> partial_out(static_cast<size_t>(mla_partial_out_floats(plan, n, n_heads, kL)),
                                 kNaN);
  std::vector<float> partial_lse(static_cast<size_t>(mla_partial_lse_floats(plan, n, n_heads)),
                                 kNaN);
  const float scale = 1.0f / std::sqrt(static_cast<float>(kW));

  MlaAttentionParams p{};
  p.latent = kL;
  p.rope = kR;
  p.q_latent = ql.ptr();
  p.q_latent_type = c.q_type;
  p.q_latent_token_stride = n_heads * ql_head;
  p.q_latent_head_stride = ql_head;
  p.q_rope = qr.ptr();
  p.q_rope_type = c.q_type;
  p.q_rope_token_stride = n_heads * qr_head;
  p.q_rope_head_stride = qr_head;
  p.cache = cache.ptr();
  p.cache_type = c.cache_type;
  p.n_blocks = n_blocks;
  p.block_size = bs;
  p.token_seq = tseq.data();
  p.token_pos = tpos.data();
  p.block_tables = table.data();
  p.max_blocks = max_blocks;
  p.n_tokens = n;
  p.n_heads = n_heads;
  p.scale = scale;
  p.out = out.ptr();
  p.out_type = c.out_type;
  p.out_token_stride = n_heads * out_head;
  p.out_head_stride = out_head;
  p.partial_out = partial_out.empty() ? nullptr : partial_out.data();
  p.partial_lse = partial_lse.empty() ? nullptr : partial_lse.data();
  ASSERT_EQ(launch_mla_attention(p, plan, nullptr), cudaSuccess)
      << simt::emu::peek_last_error().message;

  // The reference sees what the kernel's tensor cores see: Q and the cache rounded to BF16.
  // What remains is the BF16 rounding of P (2^-9 relative per weight) and F32 sums in a
  // different order: within 3e-3 of the largest output, plus BF16 rounding of a BF16 output.
  std::vector<double> want(static_cast<size_t>(n * n_heads * kL));
  double max_want = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (c.bad_token && t == n - 1) continue;
    const int ctx = tpos[t] + 1;
    const int32_t* tab = table.data() + tseq[t] * max_blocks;
    auto row = [&](int pos) { return (static_cast<size_t>(tab[pos / bs]) * bs + pos % bs) * kW; };
    for (int h = 0; h < n_heads; ++h) {
      std::vector<double> s(static_cast<size_t>(ctx));
      double mx = -INFINITY;
      for (int pos = 0; pos < ctx; ++pos) {
        const size_t r = row(pos);
        double dot = 0;
        for (int i = 0; i < kL; ++i) {
          dot += double{bf16_round(ql.at((t * n_heads + h) * ql_head + i))} *
                 bf16_round(cache.at(r + i));
        }
        for (int i = 0; i < kR; ++i) {
          dot += double{bf16_round(qr.at((t * n_heads + h) * qr_head + i))} *
                 bf16_round(cache.at(r + kL + i));
        }
        s[pos] = dot * scale;
        mx = std::max(mx, s[pos]);
      }
      double sum = 0;
      for (double& v : s) sum += (v = std::exp(v - mx));
      double* o = want.data() + (t * n_heads + h) * kL;
      for (int pos = 0; pos < ctx; ++pos) {
        const size_t r = row(pos);
        for (int i = 0; i < kL; ++i) o[i] += s[pos] / sum * bf16_round(cache.at(r + i));
      }
      for (int i = 0; i < kL; ++i) max_want = std::max(max_want, std::fabs(o[i]));
    }
  }
  const double atol = 3e-3 * max_want;
  const double rtol = c.out_type == ElemType::kBF16 ? 1.0 / 256 : 0.0;
  double max_err = 0;
  int n_bad = 0;
  for (int64_t t = 0; t < n; ++t) {
    for (int h = 0; h < n_heads; ++h) {
      for (int i = 0; i < kL; ++i) {
        const float got = out.at((t * n_heads + h) * out_head + i);
        if (c.bad_token && t == n - 1) {
          if (!std::isnan(got) && n_bad++ < 5) ADD_FAILURE() << "bad-position row: " << got;
          continue;
        }
        const double w = want[(t * n_heads + h) * kL + i];
        const double err = std::fabs(got - w);
        max_err = std::isnan(err) ? INFINITY : std::max(max_err, err);
        if (!(err <= atol + rtol * std::fabs(w)) && n_bad++ < 5) {
          ADD_FAILURE() << "token " << t << " head " << h << " col " << i << ": got " << got
                        << ", want " << w;
        }
      }
      // The padding between heads is never written.
      for (int64_t i = kL; i < out_head; ++i) {
        ASSERT_TRUE(std::isnan(out.at((t * n_heads + h) * out_head + i)));
      }
    }
  }
  EXPECT_EQ(n_bad, 0);
  std::cout << c.name << ": max error " << max_err / max_want << " of the largest output\n";
}

TEST_P(MlaAttentionEmu, DecodeSixteenHeads) {
  constexpr ElemType kF = ElemType::kF32, kB = ElemType::kBF16;
  // Contexts of 1, 17 and 100 positions in blocks of 16; with 3 splits the 1-position
  // sequence leaves two splits empty.
  for (int splits : {1, 3}) {
    run({"V2-Lite decode", 16, 16, {{1, 1}, {17, 1}, {100, 1}}, kB, kF, kF, 16, 1, splits});
  }
  run({"V2-Lite decode, F32 cache, BF16 q/out, strided",
       16,
       16,
       {{40, 1}, {33, 1}},
       kF,
       kB,
       kB,
       16,
       1,
       2,
       false,
       false,
       24});
}

TEST_P(MlaAttentionEmu, DecodeV3Heads) {
  constexpr ElemType kF = ElemType::kF32, kB = ElemType::kBF16;
  run({"V3 decode, 2 head tiles", 128, 64, {{130, 1}, {5, 1}}, kB, kB, kF, 64, 1, 2});
}

TEST_P(MlaAttentionEmu, ChunkedPrefill) {
  constexpr ElemType kF = ElemType::kF32, kB = ElemType::kBF16;
  // 20 heads: 3 tokens per 64-row tile (4 rows unused); 6 and 5 new tokens after cached ones.
  run({"prefill", 20, 16, {{45, 6}, {5, 5}}, kB, kF, kF, 64, 3, 1});
  // Tokens interleaved across sequences: tiles hold several runs.
  run({"prefill, interleaved", 16, 16, {{70, 7}, {38, 5}}, kF, kB, kF, 64, 4, 2, true});
  // A token past its block table gets a NaN row; the others are unaffected.
  run({"prefill, bad position", 16, 64, {{90, 4}}, kB, kF, kB, 64, 4, 2, false, true});
}

// The general-width instance: the tiny test models' widths (rope zero-padded to 16 in shared
// memory, warps with no k-steps or output columns), decode and prefill, both tile shapes,
// splits, Q rows that are not 16-byte aligned (q_pad 2), and the widest general pair.
TEST_P(MlaAttentionEmu, TinyWidths) {
  constexpr ElemType kF = ElemType::kF32, kB = ElemType::kBF16;
  for (int splits : {1, 3}) {
    Case c{"v2_tiny decode: 3 heads, latent 48, rope 8",
           3,
           4,
           {{1, 1}, {9, 1}, {70, 1}},
           kB,
           kF,
           kF,
           16,
           1,
           splits};
    c.latent = 48, c.rope = 8;
    run(c);
  }
  Case fp8{"v3_fp8_tiny decode: 2 heads, latent 144, rope 8, unaligned Q rows",
           2,
           4,
           {{33, 1}, {5, 1}},
           kF,
           kB,
           kB,
           16,
           1,
           2,
           false,
           false,
           2};
  fp8.latent = 144, fp8.rope = 8;
  run(fp8);
  Case prefill{"models/tiny prefill: 4 heads, latent 64, rope 16",
               4,
               16,
               {{30, 12}, {7, 7}},
               kB,
               kF,
               kF,
               64,
               16,
               2,
               true};
  prefill.latent = 64, prefill.rope = 16;
  run(prefill);
  Case small{"v3_tiny prefill in 16-row tiles: latent 32, rope 8, bad position",
             4,
             4,
             {{21, 6}},
             kF,
             kF,
             kB,
             16,
             4,
             1,
             false,
             true};
  small.latent = 32, small.rope = 8;
  run(small);
  Case wide{"latent 512, rope 24 (the general instance at its widest)",
            16,
            16,
            {{50, 5}},
            kB,
            kF,
            kF,
            64,
            4,
            2};
  wide.rope = 24;
  run(wide);
}

INSTANTIATE_TEST_SUITE_P(Schedules, MlaAttentionEmu, ::testing::Values(0, 1, 2));

TEST(MlaWidths, SupportedSet) {
  EXPECT_TRUE(mla_widths_supported(512, 64));
  EXPECT_TRUE(mla_widths_supported(48, 8));
  EXPECT_TRUE(mla_widths_supported(16, 0));
  EXPECT_FALSE(mla_widths_supported(40, 8));    // latent not a multiple of 16
  EXPECT_FALSE(mla_widths_supported(512, 12));  // rope not a multiple of 8
  EXPECT_FALSE(mla_widths_supported(528, 64));
  EXPECT_FALSE(mla_widths_supported(512, 72));
  EXPECT_FALSE(mla_widths_supported(0, 8));
}

// The plan at DeepSeek's shapes on an H100/H200 (132 SMs).
TEST(MlaPlan, FillsTheGpuWithoutTinySplits) {
  // V2-Lite decode, 4 sequences of up to 4096 positions: 16-row tiles (two per SM), split
  // towards 264 CTAs, but no split shorter than 128 positions.
  MlaPlan p = plan_mla_attention(4, 4, 16, 4096, 132);
  EXPECT_EQ(p.rows, 16);
  EXPECT_EQ(p.tokens_per_tile, 1);
  EXPECT_EQ(p.head_tiles, 1);
  EXPECT_EQ(p.query_tiles, 4);
  EXPECT_EQ(p.n_splits, 32);  // 4096 / 128
  // The same batch with short block tables: the context, not the SMs, limits the split.
  EXPECT_EQ(plan_mla_attention(4, 4, 16, 256, 132).n_splits, 2);
  EXPECT_EQ(plan_mla_attention(4, 4, 16, 100, 132).n_splits, 1);
  // V3 decode, 8 sequences: 64-row tiles, 2 per token; 8 splits make one wave on 132 SMs.
  p = plan_mla_attention(8, 8, 128, 32768, 132);
  EXPECT_EQ(p.rows, 64);
  EXPECT_EQ(p.heads_per_tile, 64);
  EXPECT_EQ(p.head_tiles, 2);
  EXPECT_EQ(p.n_splits, 8);  // 132 / 16
  // A large decode batch already fills the GPU.
  EXPECT_EQ(plan_mla_attention(256, 256, 128, 32768, 132).n_splits, 1);
  // V2-Lite prefill: 4 tokens × 16 heads per tile; 512 tokens need no split.
  p = plan_mla_attention(512, 2, 16, 8192, 132);
  EXPECT_EQ(p.rows, 64);
  EXPECT_EQ(p.tokens_per_tile, 4);
  EXPECT_EQ(p.query_tiles, 128);
  EXPECT_EQ(p.n_splits, 1);
  // Never more than 64 splits, never fewer than 1, even for a device without SMs reported.
  EXPECT_EQ(plan_mla_attention(1, 1, 16, 1 << 20, 132).n_splits, 64);
  EXPECT_EQ(plan_mla_attention(1, 1, 16, 1 << 20, 0).n_splits, 2);
}

}  // namespace
}  // namespace moeserve::kernels
