#include "common/tensor.h"

#include <cstdlib>
#include <cstring>
#include <numeric>

#include "absl/strings/str_join.h"
#include "common/status.h"

namespace moeserve {

Buffer::Buffer(void* data, int64_t n_bytes, Device device, Deleter deleter)
    : data_(data), n_bytes_(n_bytes), device_(device), deleter_(std::move(deleter)) {}

Buffer::~Buffer() {
  if (deleter_) deleter_(data_);
}

std::shared_ptr<Buffer> Buffer::host(int64_t n_bytes) {
  const size_t size = static_cast<size_t>((std::max<int64_t>(n_bytes, 1) + 63) / 64 * 64);
  void* p = std::aligned_alloc(64, size);
  MS_CHECK(p != nullptr, "host allocation of ", n_bytes, " bytes failed");
  std::memset(p, 0, size);
  return std::make_shared<Buffer>(p, n_bytes, Device::kCpu, [](void* q) { std::free(q); });
}

std::shared_ptr<Buffer> Buffer::borrowed(void* data, int64_t n_bytes, Device device,
                                         std::shared_ptr<const void> owner) {
  return std::make_shared<Buffer>(data, n_bytes, device,
                                  [owner = std::move(owner)](void*) mutable { owner.reset(); });
}

Tensor::Tensor(std::shared_ptr<Buffer> buffer, DType dtype, std::vector<int64_t> shape,
               int64_t byte_offset)
    : buffer_(std::move(buffer)), byte_offset_(byte_offset), dtype_(dtype) {
  MS_CHECK(shape.size() <= kMaxDims, "too many dims: ", shape.size());
  ndim_ = static_cast<int>(shape.size());
  int64_t s = 1;
  for (int i = ndim_ - 1; i >= 0; --i) {
    shape_[i] = shape[i];
    stride_[i] = s;
    s *= shape[i];
  }
  MS_CHECK(buffer_ == nullptr || byte_offset_ + n_bytes() <= buffer_->n_bytes(), "tensor ",
           describe(), " overruns its buffer");
}

Tensor Tensor::empty_host(DType dtype, std::vector<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return Tensor(Buffer::host(dtype_bytes(dtype, n)), dtype, std::move(shape));
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= shape_[i];
  return n;
}

bool Tensor::is_contiguous() const {
  int64_t s = 1;
  for (int i = ndim_ - 1; i >= 0; --i) {
    if (shape_[i] != 1 && stride_[i] != s) return false;
    s *= shape_[i];
  }
  return true;
}

Tensor Tensor::slice(int dim, int64_t begin, int64_t end) const {
  if (dim < 0) dim += ndim_;
  MS_CHECK(dim >= 0 && dim < ndim_ && 0 <= begin && begin <= end && end <= shape_[dim],
           "bad slice of ", describe(), " dim ", dim, " [", begin, ", ", end, ")");
  MS_CHECK(dtype_ != DType::kI4, "cannot slice packed INT4 tensors");
  MS_CHECK(scales_ == nullptr, "cannot slice ", describe(), ": it carries group scales");
  Tensor t = *this;
  t.byte_offset_ += begin * stride_[dim] * dtype_bits(dtype_) / 8;
  t.shape_[dim] = end - begin;
  if (block_scales_ != nullptr) {
    MS_CHECK(dim < ndim_ - 2, "cannot slice ", describe(), " along dim ", dim,
             ": its block scales cover the last two dims");
    t.block_scales_ = std::make_shared<const Tensor>(block_scales_->slice(dim, begin, end));
  }
  return t;
}

Tensor Tensor::select(int dim, int64_t index) const {
  if (dim < 0) dim += ndim_;
  Tensor t = slice(dim, index, index + 1);
  for (int i = dim; i + 1 < ndim_; ++i) {
    t.shape_[i] = t.shape_[i + 1];
    t.stride_[i] = t.stride_[i + 1];
  }
  --t.ndim_;
  if (t.block_scales_ != nullptr) {
    t.block_scales_ = std::make_shared<const Tensor>(t.block_scales_->select(dim, 0));
  }
  return t;
}

Tensor Tensor::reshape(std::vector<int64_t> shape) const {
  MS_CHECK(is_contiguous(), "reshape of non-contiguous ", describe());
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  MS_CHECK(n == numel(), "reshape ", describe(), " to ", absl::StrJoin(shape, ","));
  MS_CHECK(block_scales_ == nullptr ||
               (static_cast<int>(shape.size()) == ndim_ && shape[ndim_ - 1] == shape_[ndim_ - 1] &&
                shape[ndim_ - 2] == shape_[ndim_ - 2]),
           "cannot reshape block-scaled ", describe());
  Tensor t(buffer_, dtype_, std::move(shape), byte_offset_);
  t.scales_ = scales_;
  t.group_size_ = group_size_;
  t.block_scales_ = block_scales_;
  t.block_rows_ = block_rows_;
  t.block_cols_ = block_cols_;
  return t;
}

Tensor Tensor::view_as(DType dtype, std::vector<int64_t> shape) const {
  MS_CHECK(is_contiguous(), "view_as of non-contiguous ", describe());
  Tensor t(buffer_, dtype, std::move(shape), byte_offset_);
  MS_CHECK(t.n_bytes() <= n_bytes(), "view_as ", t.describe(), " larger than ", describe());
  return t;
}

void Tensor::set_group_scales(Tensor scales, int64_t group_size) {
  MS_CHECK(group_size > 0 && numel() % group_size == 0, "bad group size ", group_size);
  MS_CHECK(scales.numel() == numel() / group_size, "scales ", scales.describe(), " do not match ",
           describe(), " with group ", group_size);
  scales_ = std::make_shared<const Tensor>(std::move(scales));
  group_size_ = group_size;
}

void Tensor::set_block_scales(Tensor scales, int64_t block_rows, int64_t block_cols) {
  MS_CHECK(ndim_ >= 2 && block_rows > 0 && block_cols > 0, "bad block scales for ", describe(),
           ": block ", block_rows, "x", block_cols);
  MS_CHECK(scales.dtype() == DType::kF32 && scales.ndim() == ndim_ &&
               scales.dim(-2) == (shape_[ndim_ - 2] + block_rows - 1) / block_rows &&
               scales.dim(-1) == (shape_[ndim_ - 1] + block_cols - 1) / block_cols,
           "block scales ", scales.describe(), " do not match ", describe(), " with block ",
           block_rows, "x", block_cols);
  for (int i = 0; i + 2 < ndim_; ++i) {
    MS_CHECK(scales.dim(i) == shape_[i], "block scales ", scales.describe(), " do not match ",
             describe());
  }
  block_scales_ = std::make_shared<const Tensor>(std::move(scales));
  block_rows_ = block_rows;
  block_cols_ = block_cols;
}

std::string Tensor::describe() const {
  std::vector<int64_t> s = shape();
  return absl::StrCat(dtype_name(dtype_), "[", absl::StrJoin(s, ", "), "]");
}

std::vector<float> to_f32_vector(const Tensor& t) {
  MS_CHECK(t.device() == Device::kCpu, "to_f32_vector needs a host tensor");
  const int64_t n = t.numel();
  std::vector<float> out(static_cast<size_t>(n));
  // Walk the (possibly strided) index space in row-major order.
  std::array<int64_t, kMaxDims> idx{};
  const char* base = static_cast<const char*>(t.raw());
  const std::vector<float> scales =
      t.group_scales() ? to_f32_vector(*t.group_scales()) : std::vector<float>{};
  for (int64_t i = 0; i < n; ++i) {
    int64_t off = 0;
    for (int d = 0; d < t.ndim(); ++d) off += idx[d] * t.stride(d);
    float v = 0.0f;
    switch (t.dtype()) {
      case DType::kF32: v = reinterpret_cast<const float*>(base)[off]; break;
      case DType::kBF16: v = bf16_to_f32(reinterpret_cast<const uint16_t*>(base)[off]); break;
      case DType::kF16: v = f16_to_f32(reinterpret_cast<const uint16_t*>(base)[off]); break;
      case DType::kFP8E4M3: v = fp8e4m3_to_f32(reinterpret_cast<const uint8_t*>(base)[off]); break;
      case DType::kI8: v = reinterpret_cast<const int8_t*>(base)[off]; break;
      case DType::kI32: v = static_cast<float>(reinterpret_cast<const int32_t*>(base)[off]); break;
      case DType::kI64: v = static_cast<float>(reinterpret_cast<const int64_t*>(base)[off]); break;
      case DType::kI4: {
        const uint8_t byte = reinterpret_cast<const uint8_t*>(base)[off / 2];
        const int nib = (off % 2 == 0) ? (byte & 0xf) : (byte >> 4);
        v = static_cast<float>(nib >= 8 ? nib - 16 : nib);
        break;
      }
    }
    if (!scales.empty()) v *= scales[static_cast<size_t>(i / t.group_size())];
    if (t.block_scales()) {
      const Tensor& bs = *t.block_scales();
      int64_t s_off = 0;
      for (int d = 0; d < t.ndim(); ++d) {
        const int64_t j = d == t.ndim() - 2   ? idx[d] / t.block_rows()
                          : d == t.ndim() - 1 ? idx[d] / t.block_cols()
                                              : idx[d];
        s_off += j * bs.stride(d);
      }
      v *= bs.data<float>()[s_off];
    }
    out[static_cast<size_t>(i)] = v;
    for (int d = t.ndim() - 1; d >= 0; --d) {
      if (++idx[d] < t.dim(d)) break;
      idx[d] = 0;
    }
  }
  return out;
}

}  // namespace moeserve
