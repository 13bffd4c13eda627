#include "model/safetensors_writer.h"

#include <cerrno>
#include <cstring>
#include <unordered_set>

#include <nlohmann/json.hpp>

namespace moeserve {

StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::create(
    const std::string& path, std::vector<Entry> entries,
    const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::unordered_set<std::string> names;
  int64_t offset = 0;
  for (const Entry& e : entries) {
    if (e.name.empty() || e.name == "__metadata__" || !names.insert(e.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor name '", e.name, "' is empty, reserved or repeated"));
    }
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    const int64_t bytes = dtype_bytes(e.dtype, n);
    header[e.name] = {{"dtype", dtype_name(e.dtype)},
                      {"shape", e.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data section 8-byte aligned, as the format asks
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return absl::InternalError(absl::StrCat(path, ": cannot create: ", std::strerror(errno)));
  }
  uint8_t len[8];
  const uint64_t n_header = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n_header >> (8 * i));
  if (std::fwrite(len, 1, 8, f) != 8 ||
      std::fwrite(text.data(), 1, text.size(), f) != text.size()) {
    std::fclose(f);
    return absl::InternalError(absl::StrCat(path, ": write failed"));
  }
  return std::unique_ptr<SafetensorsWriter>(new SafetensorsWriter(path, f, offset));
}

SafetensorsWriter::~SafetensorsWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

Status SafetensorsWriter::write(const void* data, int64_t n) {
  if (file_ == nullptr) return absl::FailedPreconditionError(absl::StrCat(path_, ": closed"));
  if (n < 0 || n_written_ + n > n_data_bytes_) {
    return absl::OutOfRangeError(absl::StrCat(path_, ": ", n, " bytes past the ", n_data_bytes_,
                                              " bytes the header declares"));
  }
  if (std::fwrite(data, 1, static_cast<size_t>(n), file_) != static_cast<size_t>(n)) {
    return absl::InternalError(absl::StrCat(path_, ": write failed: ", std::strerror(errno)));
  }
  n_written_ += n;
  return absl::OkStatus();
}

Status SafetensorsWriter::close() {
  if (file_ == nullptr) return absl::FailedPreconditionError(absl::StrCat(path_, ": closed"));
  const bool flushed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!flushed) return absl::InternalError(absl::StrCat(path_, ": close failed"));
  if (n_written_ != n_data_bytes_) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": ", n_written_, " of ", n_data_bytes_, " data bytes written"));
  }
  return absl::OkStatus();
}

}  // namespace moeserve
