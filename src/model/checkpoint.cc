#include "model/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Shard names come from a file we do not control: they must name a file
// directly inside the checkpoint directory.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && !absl::StrContains(name, "..") && name != ".";
}

std::string shape_str(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

StatusOr<Checkpoint> Checkpoint::open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", dir, ": not a directory"));
  }
  Checkpoint ckpt;
  ckpt.dir_ = dir;
  const fs::path index_path = fs::path(dir) / kIndexFileName;
  if (fs::exists(index_path, ec)) {
    RETURN_IF_ERROR(ckpt.open_indexed(index_path.string()));
  } else {
    RETURN_IF_ERROR(ckpt.open_single_file());
  }
  std::sort(ckpt.names_.begin(), ckpt.names_.end());
  return ckpt;
}

Status Checkpoint::open_indexed(const std::string& index_path) {
  std::ifstream in(index_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(index_path, ": cannot be read"));
  std::stringstream text;
  text << in.rdbuf();
  json index;
  try {
    index = json::parse(text.str());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": not valid JSON: ", e.what()));
  }
  if (!index.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": must be a JSON object, got ", index.type_name()));
  }
  auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": needs a 'weight_map' object of tensor name -> shard file"));
  }

  std::unordered_map<std::string, std::shared_ptr<SafetensorsFile>> shards;
  for (const auto& [name, shard_json] : map_it->items()) {
    if (!shard_json.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": tensor '", name,
                                                     "': shard must be a string, got ",
                                                     shard_json.type_name()));
    }
    const std::string shard_name = shard_json.get<std::string>();
    if (!is_plain_file_name(shard_name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": tensor '", name, "': shard '", shard_name,
                       "' is not a plain file name inside the checkpoint directory"));
    }
    auto shard_it = shards.find(shard_name);
    if (shard_it == shards.end()) {
      StatusOr<std::shared_ptr<SafetensorsFile>> shard =
          SafetensorsFile::open((fs::path(dir_) / shard_name).string());
      if (!shard.ok()) {
        return Status(shard.status().code(),
                      absl::StrCat(index_path, ": tensor '", name, "': shard '", shard_name,
                                   "' cannot be opened: ", shard.status().message()));
      }
      shard_it = shards.emplace(shard_name, *std::move(shard)).first;
    }
    if (!shard_it->second->has(name)) {
      return absl::NotFoundError(
          absl::StrCat(index_path, ": tensor '", name, "' is not in its shard '", shard_name, "'"));
    }
    tensors_.emplace(name, shard_it->second);
    names_.push_back(name);
  }
  return absl::OkStatus();
}

Status Checkpoint::open_single_file() {
  // As Hugging Face does: without an index the weights are model.safetensors;
  // other *.safetensors files (e.g. consolidated copies) are not ours to load.
  const fs::path file = fs::path(dir_) / kSingleFileName;
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", dir_, ": neither ", kIndexFileName,
                                            " nor ", kSingleFileName, " is there"));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<SafetensorsFile> shard, SafetensorsFile::open(file.string()));
  return add_shard_tensors(shard);
}

Status Checkpoint::add_shard_tensors(const std::shared_ptr<SafetensorsFile>& shard) {
  for (const std::string& name : shard->names()) {
    auto [it, inserted] = tensors_.emplace(name, shard);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint ", dir_, ": tensor '", name,
                                                     "' appears in both ", it->second->path(),
                                                     " and ", shard->path()));
    }
    names_.push_back(name);
  }
  return absl::OkStatus();
}

StatusOr<Tensor> Checkpoint::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", dir_, ": no tensor '", name, "'"));
  }
  return it->second->tensor(name);
}

StatusOr<Tensor> Checkpoint::get(const std::string& name,
                                 const std::vector<int64_t>& expected_shape) const {
  ASSIGN_OR_RETURN(Tensor t, get(name));
  if (t.shape() != expected_shape) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint ", dir_, ": tensor '", name, "' has shape ", shape_str(t.shape()),
                     " (", t.describe(), ") but ", shape_str(expected_shape), " was expected"));
  }
  return t;
}

void Checkpoint::populate(const std::string& name) const {
  auto it = tensors_.find(name);
  MS_CHECK(it != tensors_.end(), "checkpoint ", dir_, ": no tensor '", name, "'");
  it->second->populate(name);
}

void Checkpoint::release(const std::string& name) const {
  auto it = tensors_.find(name);
  MS_CHECK(it != tensors_.end(), "checkpoint ", dir_, ": no tensor '", name, "'");
  it->second->release(name);
}

}  // namespace moeserve
