// Linear layers over prepared weights. A weight is whatever the backend's
// prepare_weight() made of the checkpoint tensor (F32, BF16, F16, FP8 with
// block scales, repacked or quantized): the layer never looks at its dtype.
//
// The parallel variants hold one rank's shard of the full weight
// (Megatron-style): ColumnParallelLinear the rows [rank·m/world, (rank+1)·m/world)
// of an [m, k] weight, so it produces that slice of the output;
// RowParallelLinear the columns of the same range of k, so it consumes a
// sharded input and produces a partial sum that the ranks all-reduce. With
// one rank both are a plain Linear.
#pragma once

#include <cstdint>

#include "backend/backend.h"

namespace moeserve {

struct ShardSpec {
  int rank = 0;
  int world = 1;

  bool single() const { return world == 1; }
  // This rank's part [begin, end) of `n` items; n must divide by world.
  int64_t begin(int64_t n) const { return n / world * rank; }
  int64_t end(int64_t n) const { return n / world * (rank + 1); }
};

// This rank's share of `dim` of a contiguous host weight, as a contiguous host
// tensor (a view when it already is one: whole leading rows). With `parts` >
// 1 the dimension holds that many equal stacked blocks (gate rows then up
// rows), and the rank takes its share of each: [g_r; u_r], not a slice of the
// stack. InvalidArgument when the dimension does not divide into parts ×
// world; Unimplemented for weights with scales (shard before quantizing).
StatusOr<Tensor> shard_weight(const Tensor& full, int dim, const ShardSpec& shard, int parts = 1);

class Linear {
 public:
  Linear() = default;
  explicit Linear(Tensor weight) : weight_(std::move(weight)) {}

  bool defined() const { return weight_.defined(); }
  int64_t in_features() const { return weight_.dim(-1); }
  int64_t out_features() const { return weight_.dim(0); }
  const Tensor& weight() const { return weight_; }

  // out = x · wᵀ. x: [n, in]; out: [n, out].
  void forward(Backend& be, const Tensor& x, const Tensor& out) const {
    be.linear(x, weight_, out);
  }

 private:
  Tensor weight_;  // [out, in]
};

// Output features split over the ranks; `weight` is this rank's rows.
class ColumnParallelLinear : public Linear {
 public:
  ColumnParallelLinear() = default;
  ColumnParallelLinear(Tensor weight, ShardSpec shard) : Linear(std::move(weight)), shard_(shard) {}
  const ShardSpec& shard() const { return shard_; }

 private:
  ShardSpec shard_;
};

// Input features split over the ranks; `weight` is this rank's columns. The
// output is this rank's partial sum (the full result when single()).
class RowParallelLinear : public Linear {
 public:
  RowParallelLinear() = default;
  RowParallelLinear(Tensor weight, ShardSpec shard) : Linear(std::move(weight)), shard_(shard) {}
  const ShardSpec& shard() const { return shard_; }

 private:
  ShardSpec shard_;
};

}  // namespace moeserve
