// A model checkpoint directory: one or more .safetensors shards behind a
// single name → tensor lookup.
//
// With `model.safetensors.index.json` present, its `weight_map` decides which
// shard holds each tensor (and only those tensors are visible); otherwise the
// weights are the single file `model.safetensors`, as in Hugging Face repos.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "model/safetensors.h"

namespace moeserve {

class Checkpoint {
 public:
  static constexpr const char* kIndexFileName = "model.safetensors.index.json";
  static constexpr const char* kSingleFileName = "model.safetensors";

  static StatusOr<Checkpoint> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // All tensor names, sorted.
  const std::vector<std::string>& names() const { return names_; }

  // A host tensor borrowing the shard's mapping.
  StatusOr<Tensor> get(const std::string& name) const;
  // As above, and the shape must equal `expected_shape`.
  StatusOr<Tensor> get(const std::string& name, const std::vector<int64_t>& expected_shape) const;

  // Page residency of a tensor's bytes in its shard's mapping (see
  // SafetensorsFile::populate / release). The tensor must exist.
  void populate(const std::string& name) const;
  void release(const std::string& name) const;

 private:
  Status open_indexed(const std::string& index_path);
  Status open_single_file();
  Status add_shard_tensors(const std::shared_ptr<SafetensorsFile>& shard);

  std::string dir_;
  std::vector<std::string> names_;
  // Each tensor's shard; shards are shared between their tensors.
  std::unordered_map<std::string, std::shared_ptr<SafetensorsFile>> tensors_;
};

}  // namespace moeserve
