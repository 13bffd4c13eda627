#include "model/safetensors.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_join.h"
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

using nlohmann::json;

// A JSON integer in [0, INT64_MAX]. nlohmann stores non-negative literals as
// unsigned and negative ones as signed; floats and larger values are refused.
bool as_non_negative_int64(const json& v, int64_t* out) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    *out = static_cast<int64_t>(u);
    return true;
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i < 0) return false;
    *out = i;
    return true;
  }
  return false;
}

std::string describe(DType dtype, const std::vector<int64_t>& shape) {
  return absl::StrCat(std::string(dtype_name(dtype)), "[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

StatusOr<std::shared_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::open(path));
  const int64_t size = file->size();
  if (size < 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": file is ", size, " bytes, too short for the 8-byte safetensors header length"));
  }
  uint64_t n_header = 0;
  for (int i = 7; i >= 0; --i) n_header = (n_header << 8) | file->data()[i];
  if (n_header > static_cast<uint64_t>(size - 8)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header length ", n_header, " is larger than the ", size - 8,
                     " bytes that follow it (file truncated or not safetensors)"));
  }
  if (n_header > static_cast<uint64_t>(kMaxHeaderBytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": header length ", n_header, " exceeds the limit of ", kMaxHeaderBytes, " bytes"));
  }

  std::shared_ptr<SafetensorsFile> st(new SafetensorsFile());
  st->path_ = path;
  const int64_t data_begin = 8 + static_cast<int64_t>(n_header);
  // Buffer wants a mutable pointer; the mapping is read-only and so are our tensors.
  st->data_ = Buffer::borrowed(const_cast<uint8_t*>(file->data()) + data_begin, size - data_begin,
                               Device::kCpu, file);
  st->data_begin_ = data_begin;
  st->file_ = std::move(file);
  RETURN_IF_ERROR(st->parse_header(st->file_->data() + 8, static_cast<int64_t>(n_header)));
  return st;
}

Status SafetensorsFile::parse_header(const uint8_t* header, int64_t n_header_bytes) {
  json root;
  try {
    root = json::parse(header, header + n_header_bytes);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": header is not valid JSON: ", e.what()));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": header must be a JSON object, got ", root.type_name()));
  }

  const int64_t data_size = data_->n_bytes();
  for (const auto& [name, value] : root.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path_, ": __metadata__ must be an object, got ", value.type_name()));
      }
      for (const auto& [key, v] : value.items()) {
        if (!v.is_string()) {
          return absl::InvalidArgumentError(absl::StrCat(
              path_, ": __metadata__ entry '", key, "' must be a string, got ", v.type_name()));
        }
        metadata_[key] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat(path_, ": tensor '", name, "': ");
    auto fail = [&](auto&&... parts) {
      return absl::InvalidArgumentError(absl::StrCat(where, parts...));
    };
    if (!value.is_object()) return fail("entry must be an object, got ", value.type_name());
    for (const auto& [key, v] : value.items()) {
      if (key != "dtype" && key != "shape" && key != "data_offsets") {
        return fail("unknown key '", key, "'");
      }
    }

    // dtype
    auto dtype_it = value.find("dtype");
    if (dtype_it == value.end()) return fail("missing 'dtype'");
    if (!dtype_it->is_string())
      return fail("'dtype' must be a string, got ", dtype_it->type_name());
    const std::string dtype_str = dtype_it->get<std::string>();
    const std::optional<DType> dtype = dtype_from_name(dtype_str);
    if (!dtype) return fail("unknown dtype '", dtype_str, "'");

    // shape
    auto shape_it = value.find("shape");
    if (shape_it == value.end()) return fail("missing 'shape'");
    if (!shape_it->is_array()) return fail("'shape' must be an array, got ", shape_it->type_name());
    if (shape_it->size() > static_cast<size_t>(kMaxDims)) {
      return fail("shape ", shape_it->dump(), " has ", shape_it->size(), " dims; at most ",
                  kMaxDims, " are supported");
    }
    std::vector<int64_t> shape;
    int64_t numel = 1;
    bool overflow = false;
    for (const json& d : *shape_it) {
      int64_t n = 0;
      if (!as_non_negative_int64(d, &n)) {
        return fail("shape ", shape_it->dump(), " must hold non-negative integers");
      }
      shape.push_back(n);
      overflow = overflow || __builtin_mul_overflow(numel, n, &numel);
    }
    int64_t n_bits = 0;
    if (overflow || __builtin_mul_overflow(numel, int64_t{dtype_bits(*dtype)}, &n_bits)) {
      return fail("shape ", shape_it->dump(), " of ", dtype_str, " overflows a 64-bit byte size");
    }
    const int64_t n_bytes = (n_bits + 7) / 8;

    // data_offsets
    auto off_it = value.find("data_offsets");
    if (off_it == value.end()) return fail("missing 'data_offsets'");
    int64_t begin = 0;
    int64_t end = 0;
    if (!off_it->is_array() || off_it->size() != 2 ||
        !as_non_negative_int64((*off_it)[0], &begin) ||
        !as_non_negative_int64((*off_it)[1], &end)) {
      return fail("data_offsets ", off_it->dump(),
                  " must be [begin, end] with non-negative integers");
    }
    if (begin > end) return fail("data_offsets [", begin, ", ", end, "] has begin > end");
    if (end - begin != n_bytes) {
      return fail("data_offsets [", begin, ", ", end, "] hold ", end - begin, " bytes but ",
                  describe(*dtype, shape), " needs ", n_bytes);
    }
    if (end > data_size) {
      return fail("data_offsets [", begin, ", ", end, "] run past the end of the data section (",
                  data_size, " bytes; file truncated?)");
    }
    entries_.emplace(name, Entry{*dtype, std::move(shape), begin, end});
    names_.push_back(name);
  }

  // No two tensors may share bytes: sort the non-empty ranges and compare neighbours.
  std::vector<std::pair<const std::string*, const Entry*>> ranges;
  for (const auto& [name, e] : entries_) {
    if (e.end > e.begin) ranges.emplace_back(&name, &e);
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    const auto& [prev_name, prev] = ranges[i - 1];
    const auto& [name, e] = ranges[i];
    if (e->begin < prev->end) {
      return absl::InvalidArgumentError(absl::StrCat(
          path_, ": tensor '", *name, "': data_offsets [", e->begin, ", ", e->end,
          "] overlap tensor '", *prev_name, "' at [", prev->begin, ", ", prev->end, "]"));
    }
  }
  std::sort(names_.begin(), names_.end());
  return absl::OkStatus();
}

StatusOr<Tensor> SafetensorsFile::tensor(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor '", name, "'"));
  }
  const Entry& e = it->second;
  return Tensor(data_, e.dtype, e.shape, e.begin);
}

const SafetensorsFile::Entry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  MS_CHECK(it != entries_.end(), path_, ": no tensor '", name, "'");
  return it->second;
}

void SafetensorsFile::populate(const std::string& name) const {
  const Entry& e = entry(name);
  file_->populate(data_begin_ + e.begin, e.end - e.begin);
}

void SafetensorsFile::release(const std::string& name) const {
  const Entry& e = entry(name);
  file_->release(data_begin_ + e.begin, e.end - e.begin);
}

}  // namespace moeserve
