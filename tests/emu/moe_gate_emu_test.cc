// kernels/moe_gate.cu under the emulator, through its launch function, against a plain loop
// written here with the CPU backend's arithmetic: V2-Lite (64 experts, softmax, greedy top 6),
// V2 (160 experts, group max), V3 (256 experts, sigmoid, bias, noaux_tc) with an EP remap,
// rows with many ties, 1 to 64 tokens. Ids must be equal and weights bit-equal (the kernel is
// built to repeat the CPU's operations; see moe_gate.cu for the one tree sum). Outputs start
// poisoned; deterministic and random schedules, racecheck on.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/moe_gate.cuh"
#include "kernels/simt/emu/grid.h"
#include "tests/emu/emu_schedule.h"
#include <gtest/gtest.h>

namespace moeserve::kernels {
namespace {

struct Config {
  const char* name;
  int n_experts;
  int top_k;
  bool sigmoid;
  GateGroupRule rule;
  int n_group;
  int topk_group;
  bool renormalize;
  float scale;
  bool bias;
  int local_begin;
  int local_count;
};

const Config kConfigs[] = {
    {"v2_lite", 64, 6, false, GateGroupRule::kNone, 1, 1, false, 1.0f, false, 0, -1},
    {"v2", 160, 6, false, GateGroupRule::kMax, 8, 3, false, 16.0f, false, 0, -1},
    {"v3", 256, 8, true, GateGroupRule::kTop2Sum, 8, 4, true, 2.5f, true, 0, -1},
    {"v3_ep", 256, 8, true, GateGroupRule::kTop2Sum, 8, 4, true, 2.5f, true, 64, 64},
    {"odd", 96, 5, false, GateGroupRule::kTop2Sum, 3, 2, true, 1.0f, true, 10, 40},
};

// The CPU backend's moe_gate for one row (src/backend/cpu/cpu_backend.cc), ids ranked by
// (biased score, lower id).
void reference(const Config& c, const float* l, const std::vector<float>& bias, int32_t* ids,
               float* w) {
  const int n = c.n_experts;
  std::vector<float> score(n), choice(n);
  if (c.sigmoid) {
    for (int e = 0; e < n; ++e)
      score[e] = static_cast<float>(1.0 / (1.0 + std::exp(-double{l[e]})));
  } else {
    const float mx = *std::max_element(l, l + n);
    double sum = 0;
    for (int e = 0; e < n; ++e) sum += std::exp(static_cast<double>(l[e] - mx));
    for (int e = 0; e < n; ++e) score[e] = static_cast<float>(std::exp(double{l[e] - mx}) / sum);
  }
  for (int e = 0; e < n; ++e) choice[e] = c.bias ? score[e] + bias[e] : score[e];
  if (c.rule != GateGroupRule::kNone) {
    const int per = n / c.n_group;
    std::vector<float> gs(c.n_group);
    for (int g = 0; g < c.n_group; ++g) {
      std::vector<float> v(choice.begin() + g * per, choice.begin() + (g + 1) * per);
      std::sort(v.begin(), v.end(), std::greater<>());
      gs[g] = c.rule == GateGroupRule::kTop2Sum ? v[0] + v[1] : v[0];
    }
    std::vector<int> order(c.n_group);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return gs[a] > gs[b]; });
    for (int i = c.topk_group; i < c.n_group; ++i) {
      std::fill_n(choice.begin() + order[i] * per, per, -INFINITY);
    }
  }
  std::vector<int> ex(n);
  std::iota(ex.begin(), ex.end(), 0);
  std::stable_sort(ex.begin(), ex.end(), [&](int a, int b) { return choice[a] > choice[b]; });
  double sum = 0;
  for (int j = 0; j < c.top_k; ++j) sum += score[ex[j]];
  for (int j = 0; j < c.top_k; ++j) {
    float v = score[ex[j]];
    if (c.renormalize) v = static_cast<float>(v / sum);
    w[j] = v * c.scale;
    int id = ex[j];
    if (c.local_count >= 0) {
      id = id - c.local_begin >= 0 && id - c.local_begin < c.local_count ? id - c.local_begin : -1;
    }
    ids[j] = id;
  }
}

class MoeGateEmu : public ScheduledEmuTest {
 protected:
  std::mt19937 rng_{std::random_device{}()};
};

TEST_P(MoeGateEmu, MatchesCpuArithmetic) {
  for (const Config& c : kConfigs) {
    for (int64_t n : {1, 17, 64}) {
      for (bool ties : {false, true}) {
        SCOPED_TRACE(testing::Message() << c.name << " n " << n << (ties ? " ties" : ""));
        const int64_t stride = c.n_experts + 3, k = c.top_k;
        std::vector<float> logits(n * stride), bias(c.n_experts);
        std::uniform_real_distribution<float> u(-3.0f, 3.0f);
        // Ties: few distinct logits and a bias of a few values, so scores, biased scores and
        // group scores collide and only the id order decides.
        for (float& v : logits) v = ties ? std::round(u(rng_)) * 0.5f : u(rng_);
        for (float& v : bias) v = ties ? 0.0f : 0.05f * u(rng_);
        std::vector<int32_t> ids(n * (k + 1), 12345);
        std::vector<float> w(n * (k + 2), std::numeric_limits<float>::quiet_NaN());
        MoeGateParams p{};
        p.logits = logits.data();
        p.logits_row_stride = stride;
        p.bias = c.bias ? bias.data() : nullptr;
        p.topk_ids = ids.data();
        p.ids_row_stride = k + 1;
        p.topk_weights = w.data();
        p.weights_row_stride = k + 2;
        p.n_tokens = n;
        p.n_experts = c.n_experts;
        p.top_k = c.top_k;
        p.sigmoid = c.sigmoid;
        p.group_rule = c.rule;
        p.n_group = c.n_group;
        p.topk_group = c.topk_group;
        p.renormalize = c.renormalize;
        p.routed_scaling_factor = c.scale;
        p.local_begin = c.local_begin;
        p.local_count = c.local_count;
        ASSERT_EQ(launch_moe_gate(p, nullptr), cudaSuccess) << simt::emu::peek_last_error().message;
        std::vector<int32_t> want_ids(k);
        std::vector<float> want_w(k);
        for (int64_t t = 0; t < n; ++t) {
          reference(c, logits.data() + t * stride, bias, want_ids.data(), want_w.data());
          for (int j = 0; j < k; ++j) {
            ASSERT_EQ(ids[t * (k + 1) + j], want_ids[j]) << "token " << t << " slot " << j;
            ASSERT_EQ(w[t * (k + 2) + j], want_w[j]) << "token " << t << " slot " << j;
          }
          EXPECT_EQ(ids[t * (k + 1) + k], 12345) << "wrote past the row";
          EXPECT_TRUE(std::isnan(w[t * (k + 2) + k])) << "wrote past the row";
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Schedules, MoeGateEmu, ::testing::Values(0, 1, 2));

}  // namespace
}  // namespace moeserve::kernels
