// Tensor views (slice/select/reshape/view_as), their strides and byte
// offsets, and to_f32_vector over strided views and every stored dtype,
// checked against values computed here from the raw bytes.
#include "common/tensor.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "common/dtype.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

uint64_t fresh_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) | rd();
}

#define SEED_TRACE(seed) SCOPED_TRACE(::testing::Message() << "seed " << (seed))

// Element offset (in elements from the buffer start) of index `idx` in `t`.
int64_t elem_offset(const Tensor& t, const std::vector<int64_t>& idx) {
  int64_t off = 0;
  for (int d = 0; d < t.ndim(); ++d) off += idx[d] * t.stride(d);
  return off;
}

// A random F32 tensor of `shape`, never all zeros.
Tensor random_f32(std::mt19937_64& rng, std::vector<int64_t> shape) {
  Tensor t = Tensor::empty_host(DType::kF32, std::move(shape));
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng) + 1e-3f;
  return t;
}

TEST(TensorTest, ContiguousStridesAndSizes) {
  Tensor t = Tensor::empty_host(DType::kF32, {2, 3, 4, 5});
  EXPECT_EQ(t.ndim(), 4);
  EXPECT_EQ(t.numel(), 120);
  EXPECT_EQ(t.n_bytes(), 480);
  EXPECT_EQ(t.stride(0), 60);
  EXPECT_EQ(t.stride(1), 20);
  EXPECT_EQ(t.stride(2), 5);
  EXPECT_EQ(t.stride(3), 1);
  EXPECT_EQ(t.stride(-1), 1);
  EXPECT_EQ(t.dim(-1), 5);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.byte_offset(), 0);
  EXPECT_EQ(t.describe(), "F32[2, 3, 4, 5]");
  Tensor i4 = Tensor::empty_host(DType::kI4, {3, 7});
  EXPECT_EQ(i4.n_bytes(), 11);  // 21 nibbles round up to 11 bytes
  EXPECT_FALSE(Tensor().defined());
}

TEST(TensorTest, SliceSelectOffsetsAndValues) {
  const uint64_t seed = fresh_seed();
  SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const std::vector<int64_t> shape{5, 6, 7};
  Tensor t = random_f32(rng, shape);
  const float* base = t.data<float>();
  for (int dim = 0; dim < 3; ++dim) {
    for (int64_t b = 0; b < shape[dim]; ++b) {
      for (int64_t e = b; e <= shape[dim]; ++e) {
        SCOPED_TRACE(::testing::Message() << "dim " << dim << " [" << b << ", " << e << ")");
        Tensor s = t.slice(dim, b, e);
        ASSERT_EQ(s.dim(dim), e - b);
        ASSERT_EQ(s.byte_offset(), b * t.stride(dim) * 4);
        for (int d = 0; d < 3; ++d) ASSERT_EQ(s.stride(d), t.stride(d));
        ASSERT_EQ(s.buffer(), t.buffer());
        // Contiguous when only the outermost non-unit dim is cut.
        const bool inner_cut = (dim == 1 && e - b < shape[1] && shape[0] > 1) ||
                               (dim == 2 && e - b < shape[2] && (e - b) > 0);
        if (e - b > 0) {
          EXPECT_EQ(s.is_contiguous(), !inner_cut);
        }
        const std::vector<float> v = to_f32_vector(s);
        ASSERT_EQ(static_cast<int64_t>(v.size()), s.numel());
        size_t i = 0;
        for (int64_t x = 0; x < s.dim(0); ++x)
          for (int64_t y = 0; y < s.dim(1); ++y)
            for (int64_t z = 0; z < s.dim(2); ++z) {
              std::vector<int64_t> full{x, y, z};
              full[dim] += b;
              ASSERT_EQ(v[i++], base[elem_offset(t, full)]);
            }
      }
    }
    // select drops the dim and keeps the other strides.
    const int64_t idx = static_cast<int64_t>(rng() % static_cast<uint64_t>(shape[dim]));
    Tensor sel = t.select(dim, idx);
    ASSERT_EQ(sel.ndim(), 2);
    ASSERT_EQ(sel.byte_offset(), idx * t.stride(dim) * 4);
    int k = 0;
    for (int d = 0; d < 3; ++d) {
      if (d == dim) continue;
      EXPECT_EQ(sel.dim(k), shape[d]);
      EXPECT_EQ(sel.stride(k), t.stride(d));
      ++k;
    }
    EXPECT_EQ(sel.is_contiguous(), dim == 0);
  }
  // Negative dims count from the end.
  EXPECT_EQ(t.slice(-1, 2, 5).byte_offset(), 2 * 4);
  EXPECT_EQ(t.select(-2, 3).dim(1), 7);
}

TEST(TensorTest, NestedViewsOfWiderTensor) {
  const uint64_t seed = fresh_seed();
  SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  Tensor t = random_f32(rng, {9, 13});
  // Column block [3, 10), then rows [2, 7), then a column inside it.
  Tensor cols = t.slice(1, 3, 10);
  Tensor rows = cols.slice(0, 2, 7);
  Tensor col = rows.select(1, 4);  // column 7 of t, rows 2..6
  EXPECT_EQ(rows.byte_offset(), (2 * 13 + 3) * 4);
  EXPECT_EQ(col.byte_offset(), (2 * 13 + 7) * 4);
  EXPECT_EQ(col.ndim(), 1);
  EXPECT_EQ(col.stride(0), 13);
  EXPECT_FALSE(col.is_contiguous());
  const std::vector<float> v = to_f32_vector(col);
  for (int64_t r = 0; r < 5; ++r) EXPECT_EQ(v[r], t.data<float>()[(r + 2) * 13 + 7]);
  // A [n, 1] slice is contiguous whatever its row stride (unit dims are free).
  EXPECT_TRUE(t.slice(1, 4, 5).slice(0, 0, 1).is_contiguous());
  EXPECT_FALSE(t.slice(1, 4, 5).is_contiguous());
}

TEST(TensorTest, ReshapeAndViewAs) {
  const uint64_t seed = fresh_seed();
  SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  Tensor t = random_f32(rng, {6, 10});
  Tensor rows = t.slice(0, 2, 5);  // contiguous, offset 80 bytes
  Tensor r = rows.reshape({5, 6});
  EXPECT_EQ(r.byte_offset(), 80);
  EXPECT_EQ(r.stride(0), 6);
  EXPECT_EQ(to_f32_vector(r), to_f32_vector(rows));
  Tensor r3 = t.reshape({3, 4, 5});
  EXPECT_EQ(r3.stride(0), 20);
  EXPECT_EQ(r3.stride(1), 5);
  EXPECT_EQ(to_f32_vector(r3), to_f32_vector(t));
  EXPECT_DEATH(t.slice(1, 0, 5).reshape({30}), "non-contiguous");
  EXPECT_DEATH(t.reshape({7, 9}), "reshape");

  // view_as reinterprets bytes: F32 → I32 gives the bit patterns.
  Tensor bits = rows.view_as(DType::kI32, {30});
  EXPECT_EQ(bits.byte_offset(), 80);
  for (int64_t i = 0; i < 30; ++i) {
    int32_t expect;
    std::memcpy(&expect, rows.data<float>() + i, 4);
    EXPECT_EQ(bits.data<int32_t>()[i], expect);
  }
  // A BF16 view of the same bytes: 2 halves per float, low half first (little endian).
  Tensor halves = rows.view_as(DType::kBF16, {60});
  // Compared as bit patterns: a low half may well be a NaN pattern.
  const std::vector<float> hv = to_f32_vector(halves);
  auto bits_of = [](float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
  };
  for (int64_t i = 0; i < 30; ++i) {
    const uint32_t u = bits_of(rows.data<float>()[i]);
    EXPECT_EQ(bits_of(hv[2 * i + 1]), u & 0xFFFF0000u);
    EXPECT_EQ(bits_of(hv[2 * i]), u << 16);
  }
  EXPECT_DEATH(rows.view_as(DType::kF32, {31}), "");
  EXPECT_DEATH(t.slice(1, 1, 3).view_as(DType::kI32, {12}), "non-contiguous");
}

TEST(TensorTest, BoundsAreChecked) {
  Tensor t = Tensor::empty_host(DType::kF32, {4, 4});
  EXPECT_DEATH(t.slice(0, 3, 5), "bad slice");
  EXPECT_DEATH(t.slice(2, 0, 1), "bad slice");
  EXPECT_DEATH(t.slice(1, 3, 2), "bad slice");
  EXPECT_DEATH(Tensor(t.buffer(), DType::kF32, {4, 4}, 4), "overruns");
  EXPECT_DEATH(Tensor::empty_host(DType::kI4, {4, 4}).slice(0, 0, 2), "INT4");
}

TEST(TensorTest, FloatDtypesOnStridedViews) {
  const uint64_t seed = fresh_seed();
  SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-300.0f, 300.0f);
  for (DType dt :
       {DType::kBF16, DType::kF16, DType::kFP8E4M3, DType::kI8, DType::kI32, DType::kI64}) {
    SCOPED_TRACE(dtype_name(dt));
    const int64_t n_rows = 7, n_cols = 11;
    Tensor t = Tensor::empty_host(dt, {n_rows, n_cols});
    std::vector<double> expect(static_cast<size_t>(n_rows * n_cols));
    for (int64_t i = 0; i < n_rows * n_cols; ++i) {
      const float f = u(rng);
      switch (dt) {
        case DType::kBF16:
          t.data<uint16_t>()[i] = f32_to_bf16(f);
          expect[i] = bf16_to_f32(t.data<uint16_t>()[i]);
          break;
        case DType::kF16:
          t.data<uint16_t>()[i] = f32_to_f16(f);
          expect[i] = f16_to_f32(t.data<uint16_t>()[i]);
          break;
        case DType::kFP8E4M3:
          t.data<uint8_t>()[i] = static_cast<uint8_t>(rng() % 256);
          if ((t.data<uint8_t>()[i] & 0x7F) == 0x7F) t.data<uint8_t>()[i] = 0x3C;  // skip NaN
          expect[i] = fp8e4m3_to_f32(t.data<uint8_t>()[i]);
          break;
        case DType::kI8:
          t.data<int8_t>()[i] = static_cast<int8_t>(static_cast<int>(rng() % 256) - 128);
          expect[i] = t.data<int8_t>()[i];
          break;
        case DType::kI32:
          t.data<int32_t>()[i] = static_cast<int32_t>(rng() % 2000001) - 1000000;
          expect[i] = t.data<int32_t>()[i];
          break;
        default:
          t.data<int64_t>()[i] = static_cast<int64_t>(rng() % 2000001) - 1000000;
          expect[i] = static_cast<double>(t.data<int64_t>()[i]);
          break;
      }
    }
    EXPECT_EQ(std::vector<float>(expect.begin(), expect.end()), to_f32_vector(t));
    // Column slice [2, 9) of rows [1, 6): a strided view.
    const Tensor v = t.slice(1, 2, 9).slice(0, 1, 6);
    const std::vector<float> got = to_f32_vector(v);
    ASSERT_EQ(got.size(), 35u);
    for (int64_t r = 0; r < 5; ++r)
      for (int64_t c = 0; c < 7; ++c)
        EXPECT_EQ(got[r * 7 + c], static_cast<float>(expect[(r + 1) * n_cols + c + 2]))
            << r << "," << c;
  }
}

TEST(TensorTest, Int4AndInt8WithGroupScales) {
  const uint64_t seed = fresh_seed();
  SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> su(0.01f, 2.0f);
  for (int64_t group : {1, 2, 4, 8, 16}) {
    for (int64_t n_rows : {1, 3, 4}) {
      SCOPED_TRACE(::testing::Message() << "group " << group << " rows " << n_rows);
      const int64_t n_cols = 16, n = n_rows * n_cols;
      // INT4: nibbles written here, low nibble first.
      Tensor q4 = Tensor::empty_host(DType::kI4, {n_rows, n_cols});
      std::vector<int> nib(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        nib[i] = static_cast<int>(rng() % 16) - 8;  // [-8, 7]
        uint8_t& byte = q4.data<uint8_t>()[i / 2];
        const uint8_t bits = static_cast<uint8_t>(nib[i] & 0xF);
        byte = (i % 2 == 0) ? static_cast<uint8_t>((byte & 0xF0) | bits)
                            : static_cast<uint8_t>((byte & 0x0F) | (bits << 4));
      }
      Tensor scales = Tensor::empty_host(DType::kF32, {n / group});
      for (int64_t g = 0; g < n / group; ++g) scales.data<float>()[g] = su(rng);
      q4.set_group_scales(scales, group);
      EXPECT_EQ(q4.group_size(), group);
      std::vector<float> got = to_f32_vector(q4);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(got[i], static_cast<float>(nib[i]) * scales.data<float>()[i / group]) << i;
      }
      // Scales survive a reshape.
      EXPECT_EQ(to_f32_vector(q4.reshape({n})), got);
      // Without scales the raw integers come back.
      Tensor raw4 = Tensor(q4.buffer(), DType::kI4, {n_rows, n_cols});
      got = to_f32_vector(raw4);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], static_cast<float>(nib[i]));

      // INT8 with BF16 scales.
      Tensor q8 = Tensor::empty_host(DType::kI8, {n_rows, n_cols});
      Tensor s8 = Tensor::empty_host(DType::kBF16, {n / group});
      for (int64_t i = 0; i < n; ++i) {
        q8.data<int8_t>()[i] = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
      }
      for (int64_t g = 0; g < n / group; ++g) s8.data<uint16_t>()[g] = f32_to_bf16(su(rng));
      q8.set_group_scales(s8, group);
      got = to_f32_vector(q8);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(got[i], static_cast<float>(q8.data<int8_t>()[i]) *
                              bf16_to_f32(s8.data<uint16_t>()[i / group]))
            << i;
      }
    }
  }
  Tensor q = Tensor::empty_host(DType::kI4, {4, 6});
  EXPECT_DEATH(q.set_group_scales(Tensor::empty_host(DType::kF32, {5}), 5), "group size");
  EXPECT_DEATH(q.set_group_scales(Tensor::empty_host(DType::kF32, {5}), 4), "do not match");
}

// A row slice of a scaled INT8 tensor must dequantise to the same values as
// those rows of the whole tensor: it must never apply another row's scales.
TEST(TensorTest, SlicingAScaledTensorIsRefused) {
  // A view would keep the whole tensor's scales and index them from its own
  // first element, so quantized tensors are never sliced.
  Tensor q8 = Tensor::empty_host(DType::kI8, {4, 8});
  Tensor s = Tensor::empty_host(DType::kF32, {4});
  q8.set_group_scales(s, 8);
  EXPECT_DEATH(q8.slice(0, 2, 4), "group scales");
  EXPECT_DEATH(q8.select(0, 1), "group scales");
}

TEST(TensorTest, BorrowedBufferKeepsOwnerAlive) {
  auto freed = std::make_shared<bool>(false);
  std::vector<float> storage(32);
  for (size_t i = 0; i < storage.size(); ++i) storage[i] = static_cast<float>(i) + 0.5f;
  // The owner's deleter records when the last reference goes away.
  std::shared_ptr<const void> owner(new int(7), [freed](const int* p) {
    *freed = true;
    delete p;
  });
  std::weak_ptr<const void> watch = owner;
  Tensor view;
  {
    auto buf = Buffer::borrowed(storage.data(), 128, Device::kCpu, std::move(owner));
    Tensor t(buf, DType::kF32, {4, 8});
    view = t.slice(0, 1, 3).slice(1, 2, 6);
  }
  EXPECT_FALSE(*freed);
  EXPECT_FALSE(watch.expired());
  EXPECT_EQ(view.data<float>(), storage.data() + 8 + 2);
  EXPECT_EQ(to_f32_vector(view)[5], storage[2 * 8 + 3]);
  Tensor copy = view;
  view = Tensor();
  EXPECT_FALSE(*freed);
  copy = Tensor();
  EXPECT_TRUE(*freed);
  EXPECT_TRUE(watch.expired());
}

TEST(TensorTest, HostBuffersAreZeroedAndAligned) {
  for (int64_t bytes : {1, 3, 63, 64, 65, 1000}) {
    auto b = Buffer::host(bytes);
    EXPECT_EQ(b->n_bytes(), bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b->data()) % 64, 0u);
    const auto* p = static_cast<const uint8_t*>(b->data());
    for (int64_t i = 0; i < bytes; ++i) ASSERT_EQ(p[i], 0);
  }
}

}  // namespace
}  // namespace moeserve

namespace moeserve {
namespace {

// FP8 block scales: element [e, i, j] is scaled by scales[e, i / br, j / bc],
// and selecting an expert keeps that expert's scales.
TEST(TensorTest, BlockScalesApplyPerBlockAndFollowSelect) {
  const int64_t n_exp = 3, rows = 10, cols = 7, br = 4, bc = 3;
  Tensor w = Tensor::empty_host(DType::kFP8E4M3, {n_exp, rows, cols});
  Tensor s = Tensor::empty_host(DType::kF32, {n_exp, 3, 3});
  for (int64_t i = 0; i < w.numel(); ++i)
    w.data<uint8_t>()[i] = static_cast<uint8_t>(0x30 + i % 64);
  for (int64_t i = 0; i < s.numel(); ++i) s.data<float>()[i] = 0.5f + 0.25f * static_cast<float>(i);
  w.set_block_scales(s, br, bc);
  const std::vector<float> all = to_f32_vector(w);
  for (int64_t e = 0; e < n_exp; ++e) {
    const Tensor we = w.select(0, e);
    ASSERT_NE(we.block_scales(), nullptr);
    EXPECT_EQ(we.block_rows(), br);
    const std::vector<float> one = to_f32_vector(we);
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t at = (e * rows + i) * cols + j;
        const float want = fp8e4m3_to_f32(static_cast<uint8_t>(0x30 + at % 64)) *
                           s.data<float>()[(e * 3 + i / br) * 3 + j / bc];
        ASSERT_EQ(all[static_cast<size_t>(at)], want) << e << " " << i << " " << j;
        ASSERT_EQ(one[static_cast<size_t>(i * cols + j)], want) << e << " " << i << " " << j;
      }
    }
  }
  // A slice of experts keeps the matching scales too.
  const std::vector<float> tail = to_f32_vector(w.slice(0, 1, 3));
  EXPECT_EQ(tail, std::vector<float>(all.begin() + rows * cols, all.end()));
}

TEST(TensorTest, BlockScaledTensorsRefuseSlicesOfTheirBlocks) {
  Tensor w = Tensor::empty_host(DType::kFP8E4M3, {8, 8});
  w.set_block_scales(Tensor::empty_host(DType::kF32, {2, 2}), 4, 4);
  EXPECT_DEATH(w.slice(0, 0, 4), "block scales");
  EXPECT_DEATH(w.slice(1, 0, 4), "block scales");
  EXPECT_DEATH(w.reshape({64}), "block-scaled");
  EXPECT_DEATH(w.set_block_scales(Tensor::empty_host(DType::kF32, {2, 3}), 4, 4), "do not match");
  EXPECT_DEATH(w.set_block_scales(Tensor::empty_host(DType::kBF16, {2, 2}), 4, 4), "do not match");
}

}  // namespace
}  // namespace moeserve
