// One warp per token; lane l holds experts l, l + 32, … in registers. Selection is k rounds
// of a warp-wide maximum of 64-bit keys (value, then lower id: kernels/sampling_math.h) made
// of two redux.sync, so no round touches shared memory. Groups need their members together:
// the biased scores go through shared memory once, each group is scanned by a power-of-two
// team of lanes, and the teams merge their best two by shuffles.
//
// Equality with the CPU backend: sigmoid and softmax use double exp and round once to float,
// so the device's exp and glibc's agree after rounding; the biased scores, group scores, the
// renormalising sum (sequential, in every lane) and the scaling are the same float/double
// operations in the same order. Only the softmax denominator is a tree sum here and a loop
// there: the doubles may differ in the last bit, which changes the rounded float only when
// the quotient lies within 2^-53 of a float rounding boundary.
#include <algorithm>
#include <cmath>

#include "kernels/moe_gate.cuh"
#include "kernels/row_reduce.cuh"
#include "kernels/sampling_math.h"
#include "kernels/simt/launch.h"
#include "kernels/simt/simt.h"

namespace moeserve::kernels {
namespace {

constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kPerLane = kMaxGateExperts / kWarpSize;
constexpr unsigned kFull = kFullWarp;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

__device__ __forceinline__ float warp_max(float v) {
  for (int o = kWarpSize / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

__device__ __forceinline__ double warp_sum(double v) {
  for (int o = kWarpSize / 2; o > 0; o /= 2) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

// Bit (g * team) set for every kept group g; `choice` is this warp's row of biased scores.
__device__ __forceinline__ unsigned kept_groups(const MoeGateParams& p, const float* choice,
                                                int lane, int team) {
  const int per_group = p.n_experts / p.n_group;
  const int g = lane / team, sub = lane % team;
  float top1 = -INFINITY, top2 = -INFINITY;
  if (g < p.n_group) {
    for (int j = sub; j < per_group; j += team) {
      const float v = choice[g * per_group + j];
      if (v > top1) {
        top2 = top1;
        top1 = v;
      } else if (v > top2) {
        top2 = v;
      }
    }
  }
  for (int o = team / 2; o > 0; o /= 2) {
    const float o1 = __shfl_xor_sync(kFull, top1, o), o2 = __shfl_xor_sync(kFull, top2, o);
    top2 = fmaxf(fminf(top1, o1), fmaxf(top2, o2));
    top1 = fmaxf(top1, o1);
  }
  const float score = p.group_rule == GateGroupRule::kTop2Sum ? top1 + top2 : top1;
  // The CPU's stable sort: a group ranks after the better ones and the equal lower ones.
  int rank = 0;
  for (int h = 0; h < p.n_group; ++h) {
    const float other = __shfl_sync(kFull, score, h * team);
    rank += other > score || (other == score && h < g);
  }
  return __ballot_sync(kFull, g < p.n_group && sub == 0 && rank < p.topk_group);
}

__global__ void __launch_bounds__(kWarpsPerBlock* kWarpSize)
    moe_gate_kernel(const MoeGateParams p) {
  SIMT_SHARED(float, choice_rows, [kWarpsPerBlock][kMaxGateExperts]);
  SIMT_SHARED(float, score_rows, [kWarpsPerBlock][kMaxGateExperts]);
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  float* choice_row = choice_rows[warp];
  float* score_row = score_rows[warp];
  // Lanes per group: the largest power of two with n_group teams fitting in the warp.
  int team = 1;
  while (team * 2 * p.n_group <= kWarpSize) team *= 2;
  for (int64_t t = int64_t{blockIdx.x} * kWarpsPerBlock + warp; t < p.n_tokens;
       t += int64_t{gridDim.x} * kWarpsPerBlock) {
    const float* logits = p.logits + t * p.logits_row_stride;
    float score[kPerLane];
    float x[kPerLane];
    SIMT_UNROLL
    for (int i = 0; i < kPerLane; ++i) {
      const int e = lane + kWarpSize * i;
      x[i] = e < p.n_experts ? logits[e] : -INFINITY;
    }
    if (p.sigmoid) {
      SIMT_UNROLL
      for (int i = 0; i < kPerLane; ++i) {
        score[i] = static_cast<float>(1.0 / (1.0 + exp(-static_cast<double>(x[i]))));
      }
    } else {
      float mx = -INFINITY;
      SIMT_UNROLL
      for (int i = 0; i < kPerLane; ++i) mx = fmaxf(mx, x[i]);
      mx = warp_max(mx);
      double ex[kPerLane];
      double sum = 0.0;
      SIMT_UNROLL
      for (int i = 0; i < kPerLane; ++i) {
        ex[i] = lane + kWarpSize * i < p.n_experts ? exp(static_cast<double>(x[i] - mx)) : 0.0;
        sum += ex[i];
      }
      sum = warp_sum(sum);
      SIMT_UNROLL
      for (int i = 0; i < kPerLane; ++i) score[i] = static_cast<float>(ex[i] / sum);
    }
    float choice[kPerLane];
    SIMT_UNROLL
    for (int i = 0; i < kPerLane; ++i) {
      const int e = lane + kWarpSize * i;
      choice[i] = e < p.n_experts && p.bias != nullptr ? score[i] + p.bias[e] : score[i];
    }
    if (p.group_rule != GateGroupRule::kNone) {
      __syncwarp();  // the previous token's row may still be read
      SIMT_UNROLL
      for (int i = 0; i < kPerLane; ++i) {
        const int e = lane + kWarpSize * i;
        if (e < p.n_experts) choice_row[e] = choice[i];
      }
      __syncwarp();
      const unsigned kept = kept_groups(p, choice_row, lane, team);
      const int per_group = p.n_experts / p.n_group;
      SIMT_UNROLL
      for (int i = 0; i < kPerLane; ++i) {
        const int e = lane + kWarpSize * i;
        if (e < p.n_experts && ((kept >> ((e / per_group) * team)) & 1u) == 0) {
          choice[i] = -INFINITY;
        }
      }
    }
    uint64_t key[kPerLane];
    SIMT_UNROLL
    for (int i = 0; i < kPerLane; ++i) {
      const int e = lane + kWarpSize * i;
      key[i] = e < p.n_experts ? sampling_math::rank_key(choice[i], e) : 0;
    }
    // Scores of the chosen experts are read back from shared memory by id (a register
    // array indexed by the winner would go to local memory).
    __syncwarp();  // the previous token's scores may still be read
    SIMT_UNROLL
    for (int i = 0; i < kPerLane; ++i) {
      const int e = lane + kWarpSize * i;
      if (e < p.n_experts) score_row[e] = score[i];
    }
    __syncwarp();
    int my_id = 0;
    for (int j = 0; j < p.top_k; ++j) {
      uint64_t best = 0;
      SIMT_UNROLL
      for (int i = 0; i < kPerLane; ++i) best = key[i] > best ? key[i] : best;
      best = warp_max_key(best);
      SIMT_UNROLL
      for (int i = 0; i < kPerLane; ++i) key[i] = key[i] == best ? 0 : key[i];
      if (lane == j) my_id = sampling_math::key_id(best);
    }
    const float my_score = lane < p.top_k ? score_row[my_id] : 0.0f;
    // The CPU's sequential double sum of the chosen scores, repeated in every lane.
    double sum = 0.0;
    for (int j = 0; j < p.top_k; ++j) sum += __shfl_sync(kFull, my_score, j);
    if (lane < p.top_k) {
      float w = my_score;
      if (p.renormalize) w = static_cast<float>(w / sum);
      w *= p.routed_scaling_factor;
      int id = my_id;
      if (p.local_count >= 0) {
        const int local = id - p.local_begin;
        id = local >= 0 && local < p.local_count ? local : -1;
      }
      p.topk_ids[t * p.ids_row_stride + lane] = id;
      p.topk_weights[t * p.weights_row_stride + lane] = w;
    }
  }
}

}  // namespace

cudaError_t launch_moe_gate(const MoeGateParams& params, cudaStream_t stream) {
  if (params.n_tokens == 0) return cudaSuccess;
  const int64_t blocks = (params.n_tokens + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return simt::launch({.kernel_name = "moe_gate_kernel",
                       .grid = dim3(static_cast<unsigned>(std::min(blocks, kMaxBlocks))),
                       .block = dim3(kWarpsPerBlock * kWarpSize),
                       .stream = stream},
                      moe_gate_kernel, params)
      .code;
}

}  // namespace moeserve::kernels
