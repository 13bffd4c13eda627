// A read-only memory-mapped file (RAII).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace moeserve {

class MappedFile {
 public:
  static StatusOr<std::shared_ptr<MappedFile>> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  int64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Reads [offset, offset + n) into memory now (read-ahead, then one touch per
  // page), so later use does not stall on page faults.
  void populate(int64_t offset, int64_t n) const;
  // Drops this process's pages of the whole pages inside [offset, offset + n):
  // after a weight was repacked into its own buffer, its original bytes stop
  // counting as resident memory. The mapping stays valid; a later read of the
  // range faults the pages in again from the file.
  void release(int64_t offset, int64_t n) const;

 private:
  MappedFile(std::string path, const uint8_t* data, int64_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  int64_t size_;
};

}  // namespace moeserve
