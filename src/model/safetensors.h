// One memory-mapped .safetensors file: a validated header plus zero-copy
// tensor views into the mapping.
//
// Layout: u64 little-endian header length N, N bytes of JSON, then the data
// section. The JSON maps tensor names to {dtype, shape, data_offsets} (offsets
// relative to the data section) and may hold a "__metadata__" string map.
// Everything in the header is checked at open() so that later tensor() calls
// cannot read outside the mapping.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/dtype.h"
#include "common/mapped_file.h"
#include "common/status.h"
#include "common/tensor.h"

namespace moeserve {

class SafetensorsFile {
 public:
  // Largest header we accept; real checkpoints have headers of a few MB.
  static constexpr int64_t kMaxHeaderBytes = int64_t{100} << 20;

  static StatusOr<std::shared_ptr<SafetensorsFile>> open(const std::string& path);

  const std::string& path() const { return path_; }
  // Tensor names, sorted.
  const std::vector<std::string>& names() const { return names_; }
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  // The "__metadata__" map (empty if the header has none).
  const std::unordered_map<std::string, std::string>& metadata() const { return metadata_; }

  // A host tensor that borrows the mapping; the mapping stays alive as long as
  // any tensor returned from here does, even after this object is gone.
  StatusOr<Tensor> tensor(const std::string& name) const;

  // Page residency of one tensor's bytes (see MappedFile): populate() reads them
  // in now; release() drops them from this process once a copy replaced them.
  // The tensor must exist.
  void populate(const std::string& name) const;
  void release(const std::string& name) const;

 private:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    int64_t begin;  // byte offset into the data section
    int64_t end;    // one past the last byte
  };

  SafetensorsFile() = default;
  Status parse_header(const uint8_t* header, int64_t n_header_bytes);
  const Entry& entry(const std::string& name) const;

  std::string path_;
  std::shared_ptr<MappedFile> file_;
  std::shared_ptr<Buffer> data_;  // the data section, borrowing file_
  int64_t data_begin_ = 0;        // file offset of the data section
  std::vector<std::string> names_;
  std::unordered_map<std::string, Entry> entries_;
  std::unordered_map<std::string, std::string> metadata_;
};

}  // namespace moeserve
