// Tensors: a typed, shaped, strided view into a reference-counted Buffer.
//
// A Buffer is memory that lives on one device (host memory, an mmap'ed file
// region, or a CUDA allocation). A Tensor is cheap to copy: views (slices,
// reshapes) share the Buffer. Strides are in elements. Packed INT4 tensors
// carry their per-group scales as a second tensor; FP8 weights carry 2-D block
// scales (DeepSeek's 128×128 `weight_scale_inv`).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace moeserve {

enum class Device : uint8_t { kCpu, kCuda };

class Buffer {
 public:
  using Deleter = std::function<void(void*)>;
  // Takes ownership of `data`, released with `deleter` (may be empty for borrowed memory).
  Buffer(void* data, int64_t n_bytes, Device device, Deleter deleter);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // Zero-initialised, 64-byte aligned host memory.
  static std::shared_ptr<Buffer> host(int64_t n_bytes);
  // Borrowed memory kept alive by `owner` (e.g. a mapped file).
  static std::shared_ptr<Buffer> borrowed(void* data, int64_t n_bytes, Device device,
                                          std::shared_ptr<const void> owner);

  void* data() const { return data_; }
  int64_t n_bytes() const { return n_bytes_; }
  Device device() const { return device_; }

 private:
  void* data_;
  int64_t n_bytes_;
  Device device_;
  Deleter deleter_;
};

inline constexpr int kMaxDims = 4;

class Tensor {
 public:
  Tensor() = default;
  // Contiguous tensor over `buffer` starting at `byte_offset`.
  Tensor(std::shared_ptr<Buffer> buffer, DType dtype, std::vector<int64_t> shape,
         int64_t byte_offset = 0);

  // A fresh zeroed contiguous host tensor.
  static Tensor empty_host(DType dtype, std::vector<int64_t> shape);

  bool defined() const { return buffer_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return buffer_ ? buffer_->device() : Device::kCpu; }
  int ndim() const { return ndim_; }
  int64_t dim(int i) const { return shape_[i < 0 ? i + ndim_ : i]; }
  int64_t stride(int i) const { return stride_[i < 0 ? i + ndim_ : i]; }
  std::vector<int64_t> shape() const { return {shape_.begin(), shape_.begin() + ndim_}; }
  int64_t numel() const;
  int64_t n_bytes() const { return dtype_bytes(dtype_, numel()); }
  bool is_contiguous() const;
  const std::shared_ptr<Buffer>& buffer() const { return buffer_; }
  int64_t byte_offset() const { return byte_offset_; }

  void* raw() const { return static_cast<char*>(buffer_->data()) + byte_offset_; }
  template <typename T>
  T* data() const {
    return static_cast<T*>(raw());
  }

  // Views sharing the buffer.
  Tensor slice(int dim, int64_t begin, int64_t end) const;        // [begin, end) along `dim`
  Tensor select(int dim, int64_t index) const;                    // drops `dim`
  Tensor reshape(std::vector<int64_t> shape) const;               // contiguous only
  Tensor view_as(DType dtype, std::vector<int64_t> shape) const;  // reinterpret bytes

  // Packed INT4 only: the per-group scales, and how many elements share one.
  const std::shared_ptr<const Tensor>& group_scales() const { return scales_; }
  int64_t group_size() const { return group_size_; }
  void set_group_scales(Tensor scales, int64_t group_size);

  // Block-scaled weights (FP8): element [.., i, j] of the last two dims is
  // multiplied by block_scales()[.., i / block_rows, j / block_cols]. Leading
  // dims (stacked experts) index the scales alike, so select()/slice() along
  // them keep the matching scales; the last two dims cannot be sliced.
  // scales: [.., ceil(rows / block_rows), ceil(cols / block_cols)] F32.
  const std::shared_ptr<const Tensor>& block_scales() const { return block_scales_; }
  int64_t block_rows() const { return block_rows_; }
  int64_t block_cols() const { return block_cols_; }
  void set_block_scales(Tensor scales, int64_t block_rows, int64_t block_cols);

  std::string describe() const;  // "BF16[4, 8]"

 private:
  std::shared_ptr<Buffer> buffer_;
  int64_t byte_offset_ = 0;
  DType dtype_ = DType::kF32;
  int ndim_ = 0;
  std::array<int64_t, kMaxDims> shape_{};
  std::array<int64_t, kMaxDims> stride_{};
  std::shared_ptr<const Tensor> scales_;
  int64_t group_size_ = 0;
  std::shared_ptr<const Tensor> block_scales_;
  int64_t block_rows_ = 0;
  int64_t block_cols_ = 0;
};

// Host copy of any float-typed tensor as F32 (BF16, F16, FP8 widened; INT4/INT8
// multiplied by their group scales, FP8 by its block scales, when present). For
// tests and weight loading.
std::vector<float> to_f32_vector(const Tensor& t);

}  // namespace moeserve
