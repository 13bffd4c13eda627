#include "model/layers/linear.h"

#include <cstring>

namespace moeserve {

StatusOr<Tensor> shard_weight(const Tensor& full, int dim, const ShardSpec& shard) {
  if (full.ndim() != 2 || (dim != 0 && dim != 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard_weight: ", full.describe(), " along dim ", dim, ": expected [m, k]"));
  }
  if (shard.world < 1 || shard.rank < 0 || shard.rank >= shard.world) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard_weight: rank ", shard.rank, " of world ", shard.world));
  }
  const int64_t n = full.dim(dim);
  if (n % shard.world != 0) {
    return absl::InvalidArgumentError(absl::StrCat("shard_weight: dim ", dim, " of ",
                                                   full.describe(), " does not divide into ",
                                                   shard.world, " shards"));
  }
  if (shard.single()) return full;
  if (full.block_scales() != nullptr || full.group_scales() != nullptr) {
    return absl::UnimplementedError(
        absl::StrCat("shard_weight: ", full.describe(), " has scales; shard before quantizing"));
  }
  const Tensor part = full.slice(dim, shard.begin(n), shard.end(n));
  if (dim == 0) return part;  // whole rows: still contiguous
  // Columns: copy each row's range into a contiguous tensor.
  Tensor out = Tensor::empty_host(full.dtype(), part.shape());
  const int64_t row_bytes = dtype_bytes(full.dtype(), part.dim(1));
  const int64_t src_stride = dtype_bytes(full.dtype(), full.stride(0));
  for (int64_t r = 0; r < part.dim(0); ++r) {
    std::memcpy(static_cast<char*>(out.raw()) + r * row_bytes,
                static_cast<const char*>(part.raw()) + r * src_stride,
                static_cast<size_t>(row_bytes));
  }
  return out;
}

}  // namespace moeserve
