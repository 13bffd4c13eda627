// Writes a .safetensors file tensor by tensor, never holding it in memory:
// the header (names, dtypes, shapes, offsets) is fixed when the writer is
// created, then each tensor's bytes are streamed in the order given.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"

namespace moeserve {

class SafetensorsWriter {
 public:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };

  static StatusOr<std::unique_ptr<SafetensorsWriter>> create(
      const std::string& path, std::vector<Entry> entries,
      const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();

  // Appends `n` bytes: the next bytes of the tensors, in entry order.
  Status write(const void* data, int64_t n);
  // Fails unless every tensor was written in full.
  Status close();

 private:
  SafetensorsWriter(std::string path, std::FILE* file, int64_t n_data_bytes)
      : path_(std::move(path)), file_(file), n_data_bytes_(n_data_bytes) {}
  std::string path_;
  std::FILE* file_;
  int64_t n_data_bytes_;
  int64_t n_written_ = 0;
};

}  // namespace moeserve
