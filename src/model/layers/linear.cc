#include "model/layers/linear.h"

#include <cstring>

namespace moeserve {

StatusOr<Tensor> shard_weight(const Tensor& full, int dim, const ShardSpec& shard, int parts) {
  if (dim < 0 || dim >= full.ndim() || parts < 1) {
    return absl::InvalidArgumentError(absl::StrCat("shard_weight: ", full.describe(), " along dim ",
                                                   dim, " in ", parts, " parts"));
  }
  if (shard.world < 1 || shard.rank < 0 || shard.rank >= shard.world) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard_weight: rank ", shard.rank, " of world ", shard.world));
  }
  const int64_t n = full.dim(dim);
  if (n % (int64_t{parts} * shard.world) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("shard_weight: dim ", dim, " of ",
                                                   full.describe(), " does not divide into ", parts,
                                                   " × ", shard.world, " shards"));
  }
  if (shard.single()) return full;
  if (full.block_scales() != nullptr || full.group_scales() != nullptr) {
    return absl::UnimplementedError(
        absl::StrCat("shard_weight: ", full.describe(), " has scales; shard before quantizing"));
  }
  if (!full.is_contiguous() || full.device() != Device::kCpu || dtype_bits(full.dtype()) < 8) {
    return absl::UnimplementedError(absl::StrCat(
        "shard_weight: ", full.describe(), " is not a contiguous host tensor of whole bytes"));
  }
  if (dim == 0 && parts == 1) return full.slice(0, shard.begin(n), shard.end(n));  // whole rows
  // Copy: for each index of the leading dims, each part's share of `dim` (with everything
  // after it) is one contiguous run.
  int64_t outer = 1, inner_bytes = dtype_bytes(full.dtype(), 1);
  for (int i = 0; i < dim; ++i) outer *= full.dim(i);
  for (int i = dim + 1; i < full.ndim(); ++i) inner_bytes *= full.dim(i);
  const int64_t part = n / parts, share = part / shard.world;
  std::vector<int64_t> shape = full.shape();
  shape[static_cast<size_t>(dim)] = share * parts;
  Tensor out = Tensor::empty_host(full.dtype(), shape);
  const char* src = static_cast<const char*>(full.raw());
  char* dst = static_cast<char*>(out.raw());
  for (int64_t o = 0; o < outer; ++o) {
    for (int p = 0; p < parts; ++p) {
      const int64_t first = o * n + p * part + shard.rank * share;
      std::memcpy(dst, src + first * inner_bytes, static_cast<size_t>(share * inner_bytes));
      dst += share * inner_bytes;
    }
  }
  return out;
}

}  // namespace moeserve
