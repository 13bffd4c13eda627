// Every CpuBackend op against a plain double-precision reference written in
// this file, over sweeps of shapes, on fresh random data.
//
// Error bound. The CPU backend computes in F32, so results are compared with
//   |got − ref| ≤ kRelTol · magnitude
// where `magnitude` is the same expression as the reference evaluated on
// absolute values (for a dot product Σ|xᵢ·wᵢ|, for an elementwise product
// |ref|). This is the usual forward-error bound of a floating-point sum, so it
// stays meaningful under cancellation. kRelTol = 1e-5 ≈ 80 F32 ulps.
//
// Outputs are written into views of larger tensors that are first filled with
// NaN: every element of the view must be written, and nothing outside it.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "common/dtype.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

constexpr double kRelTol = 1e-5;     // relative to the magnitude of the reference sum
constexpr double kAbsFloor = 1e-30;  // only guards magnitudes that are exactly zero
constexpr int kThreads = 3;          // an odd count exercises uneven chunking
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

uint64_t fresh_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) | rd();
}

class CpuBackendOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = fresh_seed();
    rng_.seed(seed_);
  }
  void TearDown() override {
    if (HasFailure())
      std::printf("CpuBackendOpsTest seed: %llu\n", static_cast<unsigned long long>(seed_));
  }

  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng_); }
  int64_t randint(int64_t lo, int64_t hi) {  // [lo, hi]
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }

  // A tensor of `shape` filled with uniform values in [-1, 1] (never zero),
  // rounded to `dtype` when that is BF16/F16.
  Tensor random(DType dtype, std::vector<int64_t> shape, float lo = -1.0f, float hi = 1.0f) {
    Tensor t = Tensor::empty_host(dtype, std::move(shape));
    for (int64_t i = 0; i < t.numel(); ++i) {
      float v = uniform(lo, hi);
      if (v == 0.0f) v = 0.5f;
      switch (dtype) {
        case DType::kF32: t.data<float>()[i] = v; break;
        case DType::kBF16: t.data<uint16_t>()[i] = f32_to_bf16(v); break;
        case DType::kF16: t.data<uint16_t>()[i] = f32_to_f16(v); break;
        default: ADD_FAILURE() << "random(): unsupported dtype";
      }
    }
    return t;
  }

  // A view of the last `cols` columns-at-`off` of a wider tensor [..., cols + pad].
  // With pad == 0 the view is the whole (contiguous) tensor.
  Tensor random_view(DType dtype, std::vector<int64_t> shape, int64_t pad,
                     int64_t* off_out = nullptr) {
    const int64_t cols = shape.back();
    shape.back() = cols + pad;
    Tensor full = random(dtype, shape);
    const int64_t off = pad == 0 ? 0 : randint(0, pad);
    if (off_out) *off_out = off;
    return full.slice(-1, off, off + cols);
  }

  // An F32 output view inside a wider NaN-filled tensor.
  struct OutView {
    Tensor full;
    Tensor view;
    int64_t off = 0;
    int64_t cols = 0;
  };
  OutView nan_view(std::vector<int64_t> shape, int64_t pad) {
    OutView o;
    o.cols = shape.back();
    shape.back() = o.cols + pad;
    o.full = Tensor::empty_host(DType::kF32, shape);
    std::fill(o.full.data<float>(), o.full.data<float>() + o.full.numel(), kNaN);
    o.off = pad == 0 ? 0 : randint(0, pad);
    o.view = o.full.slice(-1, o.off, o.off + o.cols);
    return o;
  }

  // Every element of the view written (finite), every element outside still NaN.
  void expect_written_only_inside(const OutView& o, const std::string& what) {
    const int64_t width = o.full.dim(-1);
    int64_t bad_inside = 0, bad_outside = 0;
    for (int64_t i = 0; i < o.full.numel(); ++i) {
      const int64_t c = i % width;
      const bool inside = c >= o.off && c < o.off + o.cols;
      const float v = o.full.data<float>()[i];
      if (inside && std::isnan(v)) ++bad_inside;
      if (!inside && !std::isnan(v)) ++bad_outside;
    }
    EXPECT_EQ(bad_inside, 0) << what << ": elements of the output left unwritten";
    EXPECT_EQ(bad_outside, 0) << what << ": elements outside the output view written";
  }

  // |got − ref| ≤ kRelTol · mag element by element; reports the first few misses.
  void expect_close(const std::vector<float>& got, const std::vector<double>& ref,
                    const std::vector<double>& mag, const std::string& what) {
    ASSERT_EQ(got.size(), ref.size()) << what;
    int64_t n_bad = 0;
    std::ostringstream first;
    for (size_t i = 0; i < got.size(); ++i) {
      const double bound = kRelTol * mag[i] + kAbsFloor;
      const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
      if (!(err <= bound)) {
        if (n_bad < 5) {
          first << "\n  [" << i << "] got " << got[i] << " ref " << ref[i] << " err " << err
                << " bound " << bound;
        }
        ++n_bad;
      }
    }
    EXPECT_EQ(n_bad, 0) << what << ": " << n_bad << " of " << got.size()
                        << " elements beyond the bound" << first.str();
  }

  static std::vector<double> widen(const Tensor& t) {
    const std::vector<float> v = to_f32_vector(t);
    return {v.begin(), v.end()};
  }
  static Tensor i32_tensor(const std::vector<int32_t>& v, std::vector<int64_t> shape) {
    Tensor t = Tensor::empty_host(DType::kI32, std::move(shape));
    std::copy(v.begin(), v.end(), t.data<int32_t>());
    return t;
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  CpuBackend be_{kThreads};
};

// ---- linear / head_linear -------------------------------------------------------

// ref[i, j] = Σ x[i, :]·w[j, :] and its magnitude Σ|x·w|, from widened values.
void ref_xwt(const std::vector<double>& x, const std::vector<double>& w, int64_t n, int64_t m,
             int64_t k, std::vector<double>& ref, std::vector<double>& mag) {
  ref.assign(static_cast<size_t>(n * m), 0.0);
  mag.assign(static_cast<size_t>(n * m), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) {
      double s = 0.0, a = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        const double v = x[i * k + p] * w[j * k + p];
        s += v;
        a += std::fabs(v);
      }
      ref[i * m + j] = s;
      mag[i * m + j] = a;
    }
}

TEST_F(CpuBackendOpsTest, LinearSweep) {
  int case_id = 0;
  for (DType wt : {DType::kF32, DType::kBF16}) {
    for (int64_t n : {1, 2, 3, 7, 8, 9, 15, 16, 17, 33}) {
      for (int64_t k : {1, 7, 8, 9, 64, 100, 1031}) {
        for (int64_t m : {1, 5, 64, 300}) {
          ++case_id;
          // Every other case reads and writes column slices of wider tensors;
          // every third also has a padded weight row stride.
          const int64_t pad = (case_id % 2 == 0) ? 1 + case_id % 13 : 0;
          const int64_t w_pad = (case_id % 3 == 0) ? 3 : 0;
          SCOPED_TRACE(::testing::Message() << dtype_name(wt) << " n " << n << " k " << k << " m "
                                            << m << " pad " << pad << " w_pad " << w_pad);
          const Tensor x = random_view(DType::kF32, {n, k}, pad);
          const Tensor w = random_view(wt, {m, k}, w_pad);
          OutView out = nan_view({n, m}, pad);
          be_.linear(x, w, out.view);
          std::vector<double> ref, mag;
          ref_xwt(widen(x), widen(w), n, m, k, ref, mag);
          expect_close(to_f32_vector(out.view), ref, mag, "linear");
          expect_written_only_inside(out, "linear");
          if (HasFailure()) return;
        }
      }
    }
  }
}

TEST_F(CpuBackendOpsTest, HeadLinearSweep) {
  for (DType wt : {DType::kF32, DType::kBF16}) {
    for (int64_t n : {1, 3, 9, 16, 21}) {
      for (int64_t heads : {1, 4}) {
        for (int64_t k : {8, 33}) {
          for (int64_t m : {5, 64}) {
            for (int64_t pad : {0, 5}) {
              SCOPED_TRACE(::testing::Message() << dtype_name(wt) << " n " << n << " H " << heads
                                                << " k " << k << " m " << m << " pad " << pad);
              const Tensor x = random_view(DType::kF32, {n, heads, k}, pad);
              const Tensor w = random(wt, {heads, m, k});
              OutView out = nan_view({n, heads, m}, pad);
              be_.head_linear(x, w, out.view);
              const std::vector<double> xv = widen(x), wv = widen(w);
              std::vector<double> ref(static_cast<size_t>(n * heads * m)), mag(ref.size());
              for (int64_t t = 0; t < n; ++t)
                for (int64_t h = 0; h < heads; ++h)
                  for (int64_t j = 0; j < m; ++j) {
                    double s = 0.0, a = 0.0;
                    for (int64_t p = 0; p < k; ++p) {
                      const double v = xv[(t * heads + h) * k + p] * wv[(h * m + j) * k + p];
                      s += v;
                      a += std::fabs(v);
                    }
                    ref[(t * heads + h) * m + j] = s;
                    mag[(t * heads + h) * m + j] = a;
                  }
              expect_close(to_f32_vector(out.view), ref, mag, "head_linear");
              expect_written_only_inside(out, "head_linear");
              if (HasFailure()) return;
            }
          }
        }
      }
    }
  }
}

// ---- elementwise and row ops ------------------------------------------------------

TEST_F(CpuBackendOpsTest, RmsNormSweep) {
  const float eps = 1e-6f;
  for (DType wt : {DType::kF32, DType::kBF16}) {
    for (int64_t n : {1, 2, 7, 33}) {
      for (int64_t d : {1, 8, 63, 512}) {
        for (bool in_place : {false, true}) {
          const int64_t pad = (n + d) % 2 == 0 ? 0 : 4;
          SCOPED_TRACE(::testing::Message() << dtype_name(wt) << " n " << n << " d " << d
                                            << " in_place " << in_place << " pad " << pad);
          const Tensor weight = random(wt, {d}, 0.5f, 1.5f);
          OutView out = nan_view({n, d}, pad);
          Tensor x;
          if (in_place) {
            // x is the output view itself, filled with data first.
            for (int64_t r = 0; r < n; ++r)
              for (int64_t c = 0; c < d; ++c)
                out.view.data<float>()[r * out.view.stride(0) + c] = uniform(-2.0f, 2.0f) + 1e-3f;
            x = out.view;
          } else {
            x = random_view(DType::kF32, {n, d}, pad);
          }
          const std::vector<double> xv = widen(x), wv = widen(weight);
          be_.rms_norm(x, weight, eps, out.view);
          std::vector<double> ref(xv.size()), mag(xv.size());
          for (int64_t r = 0; r < n; ++r) {
            double ss = 0.0;
            for (int64_t c = 0; c < d; ++c) ss += xv[r * d + c] * xv[r * d + c];
            const double inv = 1.0 / std::sqrt(ss / static_cast<double>(d) + eps);
            for (int64_t c = 0; c < d; ++c) {
              ref[r * d + c] = xv[r * d + c] * inv * wv[c];
              mag[r * d + c] = std::fabs(ref[r * d + c]);
            }
          }
          expect_close(to_f32_vector(out.view), ref, mag, "rms_norm");
          expect_written_only_inside(out, "rms_norm");
        }
      }
    }
  }
}

TEST_F(CpuBackendOpsTest, AddSweepWithAliasing) {
  for (int64_t n : {1, 5, 40}) {
    for (int64_t d : {1, 7, 256}) {
      for (int alias : {0, 1, 2}) {  // 0: separate out, 1: out = a, 2: out = b
        const int64_t pad = alias == 0 ? 3 : 2;
        SCOPED_TRACE(::testing::Message() << "n " << n << " d " << d << " alias " << alias);
        OutView out = nan_view({n, d}, pad);
        Tensor a = random_view(DType::kF32, {n, d}, pad);
        Tensor b = random_view(DType::kF32, {n, d}, 0);
        if (alias != 0) {
          Tensor& target = alias == 1 ? a : b;
          const std::vector<float> v = to_f32_vector(target);
          for (int64_t r = 0; r < n; ++r)
            std::copy(v.begin() + r * d, v.begin() + (r + 1) * d,
                      out.view.data<float>() + r * out.view.stride(0));
          target = out.view;
        }
        const std::vector<double> av = widen(a), bv = widen(b);
        be_.add(a, b, out.view);
        std::vector<double> ref(av.size()), mag(av.size());
        for (size_t i = 0; i < av.size(); ++i) {
          ref[i] = av[i] + bv[i];
          mag[i] = std::fabs(av[i]) + std::fabs(bv[i]);
        }
        expect_close(to_f32_vector(out.view), ref, mag, "add");
        expect_written_only_inside(out, "add");
      }
    }
  }
}

TEST_F(CpuBackendOpsTest, SiluMulSweep) {
  for (int64_t n : {1, 3, 17}) {
    for (int64_t f : {1, 8, 45, 300}) {
      for (int64_t pad : {0, 6}) {
        SCOPED_TRACE(::testing::Message() << "n " << n << " f " << f << " pad " << pad);
        Tensor gate_up = random_view(DType::kF32, {n, 2 * f}, pad);
        // Spread the gate over a range where silu is far from linear.
        for (int64_t r = 0; r < n; ++r)
          for (int64_t c = 0; c < f; ++c)
            gate_up.data<float>()[r * gate_up.stride(0) + c] = uniform(-8.0f, 8.0f) + 1e-3f;
        OutView out = nan_view({n, f}, pad);
        be_.silu_mul(gate_up, out.view);
        const std::vector<double> g = widen(gate_up);
        std::vector<double> ref(static_cast<size_t>(n * f)), mag(ref.size());
        for (int64_t r = 0; r < n; ++r)
          for (int64_t c = 0; c < f; ++c) {
            const double gv = g[r * 2 * f + c], up = g[r * 2 * f + f + c];
            ref[r * f + c] = gv / (1.0 + std::exp(-gv)) * up;
            mag[r * f + c] = std::fabs(ref[r * f + c]);
          }
        expect_close(to_f32_vector(out.view), ref, mag, "silu_mul");
        expect_written_only_inside(out, "silu_mul");
      }
    }
  }
}

TEST_F(CpuBackendOpsTest, GatherRowsSweep) {
  for (DType st : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t n_rows : {1, 7, 100}) {
      for (int64_t d : {1, 9, 64}) {
        for (int64_t m : {1, 4, 50}) {
          const int64_t pad = (n_rows + m) % 2 == 0 ? 5 : 0;
          SCOPED_TRACE(::testing::Message() << dtype_name(st) << " rows " << n_rows << " d " << d
                                            << " m " << m << " pad " << pad);
          const Tensor src = random_view(st, {n_rows, d}, pad);
          std::vector<int32_t> idx(static_cast<size_t>(m));
          for (auto& i : idx) i = static_cast<int32_t>(randint(0, n_rows - 1));  // repeats allowed
          OutView out = nan_view({m, d}, pad);
          be_.gather_rows(src, i32_tensor(idx, {m}), out.view);
          const std::vector<double> sv = widen(src);
          std::vector<double> ref(static_cast<size_t>(m * d)), mag(ref.size(), 0.0);
          for (int64_t i = 0; i < m; ++i)
            for (int64_t c = 0; c < d; ++c) ref[i * d + c] = sv[idx[i] * d + c];
          expect_close(to_f32_vector(out.view), ref, mag, "gather_rows (exact)");
          expect_written_only_inside(out, "gather_rows");
        }
      }
    }
  }
}

// ---- rope -------------------------------------------------------------------------

TEST_F(CpuBackendOpsTest, RopeMatchesHandWrittenRotation) {
  for (bool per_head : {true, false}) {
    for (int64_t n : {1, 4, 19}) {
      for (int64_t heads : {1, 3}) {
        for (int64_t dim : {2, 8, 64}) {
          if (!per_head && heads != 1) continue;
          const int64_t pad = (n + dim) % 2 == 0 ? 0 : 16;  // e.g. the rope part of a wider q
          SCOPED_TRACE(::testing::Message() << (per_head ? "[n,H,d]" : "[n,d]") << " n " << n
                                            << " H " << heads << " d " << dim << " pad " << pad);
          const int64_t max_pos = 50, half = dim / 2;
          // Arbitrary angles: the op must only apply the table, not assume its origin.
          std::vector<double> theta(static_cast<size_t>(max_pos * half));
          Tensor cos_sin = Tensor::empty_host(DType::kF32, {max_pos, half, 2});
          for (int64_t i = 0; i < max_pos * half; ++i) {
            theta[i] = uniform(-3.14159f, 3.14159f);
            cos_sin.data<float>()[2 * i] = static_cast<float>(std::cos(theta[i]));
            cos_sin.data<float>()[2 * i + 1] = static_cast<float>(std::sin(theta[i]));
          }
          std::vector<int32_t> pos(static_cast<size_t>(n));
          for (auto& p : pos) p = static_cast<int32_t>(randint(0, max_pos - 1));
          // x as the last `dim` columns-at-offset of a wider NaN-free tensor;
          // the columns around it must be untouched.
          std::vector<int64_t> shape = per_head ? std::vector<int64_t>{n, heads, dim + pad}
                                                : std::vector<int64_t>{n, dim + pad};
          Tensor full = random(DType::kF32, shape);
          const std::vector<float> before = to_f32_vector(full);
          const int64_t off = pad == 0 ? 0 : randint(0, pad);
          Tensor x = full.slice(-1, off, off + dim);
          const std::vector<double> xv = widen(x);
          const std::vector<double> cs = widen(cos_sin);
          be_.rope(x, i32_tensor(pos, {n}), cos_sin);
          std::vector<double> ref(xv.size()), mag(xv.size());
          const int64_t h_count = per_head ? heads : 1;
          for (int64_t t = 0; t < n; ++t)
            for (int64_t h = 0; h < h_count; ++h)
              for (int64_t i = 0; i < half; ++i) {
                const size_t base = static_cast<size_t>((t * h_count + h) * dim + 2 * i);
                // The F32 table entries the op is given (not the exact angle).
                const double c = cs[(pos[t] * half + i) * 2], s = cs[(pos[t] * half + i) * 2 + 1];
                const double a = xv[base], b = xv[base + 1];
                ref[base] = a * c - b * s;
                ref[base + 1] = a * s + b * c;
                mag[base] = std::fabs(a * c) + std::fabs(b * s);
                mag[base + 1] = std::fabs(a * s) + std::fabs(b * c);
              }
          expect_close(to_f32_vector(x), ref, mag, "rope");
          const std::vector<float> after = to_f32_vector(full);
          const int64_t width = dim + pad;
          for (size_t i = 0; i < after.size(); ++i) {
            const int64_t c = static_cast<int64_t>(i) % width;
            if (c < off || c >= off + dim) {
              ASSERT_EQ(after[i], before[i]) << "outside the view at " << i;
            }
          }
        }
      }
    }
  }
}

// ---- kv cache + MLA attention -------------------------------------------------------

TEST_F(CpuBackendOpsTest, KvCacheWriteScatter) {
  for (int64_t block_size : {1, 3, 64}) {
    for (int64_t width : {1, 40}) {
      for (int64_t pad : {0, 7}) {
        SCOPED_TRACE(::testing::Message()
                     << "block " << block_size << " width " << width << " pad " << pad);
        const int64_t n_blocks = 5, n_slots = n_blocks * block_size;
        Tensor cache = random(DType::kF32, {n_blocks, block_size, width});
        const std::vector<float> before = to_f32_vector(cache);
        std::vector<int32_t> slots(static_cast<size_t>(n_slots));
        std::iota(slots.begin(), slots.end(), 0);
        std::shuffle(slots.begin(), slots.end(), rng_);
        const int64_t n = std::max<int64_t>(1, randint(1, n_slots));
        slots.resize(static_cast<size_t>(n));
        const Tensor kv = random_view(DType::kF32, {n, width}, pad);
        be_.kv_cache_write(kv, i32_tensor(slots, {n}), cache);
        const std::vector<float> kvv = to_f32_vector(kv);
        std::vector<float> expect = before;
        for (int64_t t = 0; t < n; ++t)
          std::copy(kvv.begin() + t * width, kvv.begin() + (t + 1) * width,
                    expect.begin() + slots[t] * width);
        EXPECT_EQ(to_f32_vector(cache), expect);
      }
    }
  }
}

TEST_F(CpuBackendOpsTest, MlaAttentionVsNaivePagedAttention) {
  struct Dims {
    int64_t heads, latent, rope;
  };
  for (int64_t block_size : {1, 3, 64}) {
    for (Dims dm : {Dims{1, 16, 8}, Dims{4, 32, 8}, Dims{3, 24, 16}}) {
      for (float scale : {0.1f, 1.0f}) {
        SCOPED_TRACE(::testing::Message()
                     << "block " << block_size << " H " << dm.heads << " latent " << dm.latent
                     << " rope " << dm.rope << " scale " << scale);
        const int64_t width = dm.latent + dm.rope;
        // Sequences of random lengths; their blocks drawn from a shuffled pool.
        const int n_seqs = static_cast<int>(randint(1, 4));
        std::vector<int64_t> len(static_cast<size_t>(n_seqs));
        int64_t total_blocks = 0, max_blocks = 0;
        for (auto& l : len) {
          l = randint(1, 90);
          const int64_t nb = (l + block_size - 1) / block_size;
          total_blocks += nb;
          max_blocks = std::max(max_blocks, nb);
        }
        max_blocks += 1;  // a padding column the op must never read
        const int64_t n_blocks = total_blocks + 3;
        std::vector<int32_t> pool(static_cast<size_t>(n_blocks));
        std::iota(pool.begin(), pool.end(), 0);
        std::shuffle(pool.begin(), pool.end(), rng_);
        std::vector<int32_t> tables(static_cast<size_t>(n_seqs * max_blocks));
        size_t next = 0;
        for (int s = 0; s < n_seqs; ++s) {
          const int64_t nb = (len[s] + block_size - 1) / block_size;
          for (int64_t b = 0; b < max_blocks; ++b) {
            tables[s * max_blocks + b] =
                b < nb ? pool[next++] : static_cast<int32_t>(randint(0, n_blocks - 1));
          }
        }
        Tensor cache = random(DType::kF32, {n_blocks, block_size, width});
        // Query tokens: the last few positions of each sequence, in shuffled order.
        std::vector<int32_t> tok_seq, tok_pos;
        for (int s = 0; s < n_seqs; ++s) {
          const int64_t q = randint(1, std::min<int64_t>(len[s], 5));
          for (int64_t p = len[s] - q; p < len[s]; ++p) {
            tok_seq.push_back(s);
            tok_pos.push_back(static_cast<int32_t>(p));
          }
        }
        std::vector<size_t> order(tok_seq.size());
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng_);
        std::vector<int32_t> seq_sh, pos_sh, slot_sh;
        for (size_t i : order) {
          seq_sh.push_back(tok_seq[i]);
          pos_sh.push_back(tok_pos[i]);
          const int32_t p = tok_pos[i];
          slot_sh.push_back(tables[tok_seq[i] * max_blocks + p / block_size] *
                                static_cast<int32_t>(block_size) +
                            p % static_cast<int32_t>(block_size));
        }
        const int64_t n = static_cast<int64_t>(seq_sh.size());
        AttentionBatch batch;
        batch.token_seq = i32_tensor(seq_sh, {n});
        batch.token_pos = i32_tensor(pos_sh, {n});
        batch.slot_mapping = i32_tensor(slot_sh, {n});
        batch.block_tables = i32_tensor(tables, {n_seqs, max_blocks});
        batch.block_size = static_cast<int>(block_size);
        // q_latent and q_rope as column slices of one [n, H, latent + rope] tensor.
        Tensor q = random(DType::kF32, {n, dm.heads, width});
        const Tensor q_latent = q.slice(2, 0, dm.latent), q_rope = q.slice(2, dm.latent, width);
        OutView out = nan_view({n, dm.heads, dm.latent}, 4);
        be_.mla_attention(q_latent, q_rope, cache, batch, scale, out.view);

        const std::vector<double> qv = widen(q), cv = widen(cache);
        auto cache_row = [&](int s, int64_t p) {
          const int64_t blk = tables[s * max_blocks + p / block_size];
          return &cv[static_cast<size_t>((blk * block_size + p % block_size) * width)];
        };
        std::vector<double> ref(static_cast<size_t>(n * dm.heads * dm.latent)), mag(ref.size());
        for (int64_t t = 0; t < n; ++t)
          for (int64_t h = 0; h < dm.heads; ++h) {
            const double* qt = &qv[static_cast<size_t>((t * dm.heads + h) * width)];
            const int64_t n_ctx = pos_sh[t] + 1;
            std::vector<double> sc(static_cast<size_t>(n_ctx));
            double max_abs_score = 0.0, mx = -INFINITY;
            for (int64_t p = 0; p < n_ctx; ++p) {
              const double* r = cache_row(seq_sh[t], p);
              double s = 0.0, a = 0.0;
              for (int64_t i = 0; i < width; ++i) {
                s += qt[i] * r[i];
                a += std::fabs(qt[i] * r[i]);
              }
              sc[p] = scale * s;
              mx = std::max(mx, sc[p]);
              max_abs_score = std::max(max_abs_score, scale * a);
            }
            double denom = 0.0;
            for (double& s : sc) denom += (s = std::exp(s - mx));
            for (int64_t i = 0; i < dm.latent; ++i) {
              double o = 0.0, a = 0.0;
              for (int64_t p = 0; p < n_ctx; ++p) {
                o += sc[p] / denom * cache_row(seq_sh[t], p)[i];
                a += sc[p] / denom * std::fabs(cache_row(seq_sh[t], p)[i]);
              }
              const size_t k = static_cast<size_t>((t * dm.heads + h) * dm.latent + i);
              ref[k] = o;
              // Score errors scale with the magnitude of the score sums.
              mag[k] = a * (1.0 + max_abs_score);
            }
          }
        expect_close(to_f32_vector(out.view), ref, mag, "mla_attention");
        expect_written_only_inside(out, "mla_attention");
        if (HasFailure()) return;
      }
    }
  }
}

// ---- MoE gate -------------------------------------------------------------------------

struct GateRef {
  std::vector<std::pair<int32_t, double>> picked;  // (expert, weight), sorted by expert
  bool near_tie = false;                           // a decision was within float noise
};

// Sort-based reference: score, add the bias for choosing, rank groups, keep the
// best topk_group, take the top_k experts of those, weigh by the unbiased score.
GateRef ref_gate(const std::vector<double>& logits, const std::vector<double>* bias,
                 const GateParams& p) {
  constexpr double kTieGap = 1e-5;  // F32 rounding of scores is far below this
  const int64_t E = static_cast<int64_t>(logits.size());
  std::vector<double> score(static_cast<size_t>(E));
  if (p.scoring == ScoringFunc::kSoftmax) {
    const double mx = *std::max_element(logits.begin(), logits.end());
    double sum = 0.0;
    for (int64_t e = 0; e < E; ++e) sum += std::exp(logits[e] - mx);
    for (int64_t e = 0; e < E; ++e) score[e] = std::exp(logits[e] - mx) / sum;
  } else {
    for (int64_t e = 0; e < E; ++e) score[e] = 1.0 / (1.0 + std::exp(-logits[e]));
  }
  std::vector<double> choice = score;
  if (bias)
    for (int64_t e = 0; e < E; ++e) choice[e] += (*bias)[e];
  GateRef r;
  std::vector<int32_t> candidates;
  const bool grouped = p.n_group > 1 && p.method != TopkMethod::kGreedy;
  if (grouped) {
    const int64_t per = E / p.n_group;
    std::vector<std::pair<double, int>> gs;
    for (int g = 0; g < p.n_group; ++g) {
      std::vector<double> v(choice.begin() + g * per, choice.begin() + (g + 1) * per);
      std::sort(v.rbegin(), v.rend());
      gs.push_back({p.method == TopkMethod::kNoauxTc ? v[0] + v[1] : v[0], g});
    }
    std::sort(gs.begin(), gs.end(), [](auto& a, auto& b) { return a.first > b.first; });
    if (p.topk_group < p.n_group && gs[p.topk_group - 1].first - gs[p.topk_group].first < kTieGap) {
      r.near_tie = true;
    }
    for (int gi = 0; gi < p.topk_group; ++gi)
      for (int64_t e = 0; e < per; ++e)
        candidates.push_back(static_cast<int32_t>(gs[gi].second * per + e));
  } else {
    candidates.resize(static_cast<size_t>(E));
    std::iota(candidates.begin(), candidates.end(), 0);
  }
  std::sort(candidates.begin(), candidates.end(),
            [&](int32_t a, int32_t b) { return choice[a] > choice[b]; });
  if (static_cast<int64_t>(candidates.size()) > p.top_k &&
      choice[candidates[p.top_k - 1]] - choice[candidates[p.top_k]] < kTieGap) {
    r.near_tie = true;
  }
  double sum = 0.0;
  for (int j = 0; j < p.top_k; ++j) sum += score[candidates[j]];
  for (int j = 0; j < p.top_k; ++j) {
    double w = score[candidates[j]];
    // DeepSeek's MoEGate normalises only when top_k > 1 (a single weight is
    // left as its probability), then applies the routed scaling factor.
    if (p.norm_topk_prob && p.top_k > 1) w /= sum;
    r.picked.push_back({candidates[j], w * p.routed_scaling_factor});
  }
  std::sort(r.picked.begin(), r.picked.end());
  return r;
}

TEST_F(CpuBackendOpsTest, MoeGateAllMethods) {
  struct Shape {
    int E, n_group, topk_group, top_k;
  };
  const std::vector<Shape> shapes{{8, 1, 1, 1},  {16, 1, 1, 2}, {16, 4, 2, 3},
                                  {64, 8, 3, 6}, {32, 8, 4, 8}, {12, 3, 1, 4}};
  int n_checked = 0, n_ties = 0;
  for (ScoringFunc scoring : {ScoringFunc::kSoftmax, ScoringFunc::kSigmoid}) {
    for (TopkMethod method :
         {TopkMethod::kGreedy, TopkMethod::kGroupLimitedGreedy, TopkMethod::kNoauxTc}) {
      for (const Shape& sh : shapes) {
        for (bool with_bias : {false, true}) {
          for (bool norm : {false, true}) {
            for (float scaling : {1.0f, 2.5f}) {
              SCOPED_TRACE(::testing::Message()
                           << "scoring " << static_cast<int>(scoring) << " method "
                           << static_cast<int>(method) << " E " << sh.E << " groups " << sh.n_group
                           << "/" << sh.topk_group << " k " << sh.top_k << " bias " << with_bias
                           << " norm " << norm << " scaling " << scaling);
              GateParams p;
              p.scoring = scoring;
              p.method = method;
              p.n_group = sh.n_group;
              p.topk_group = sh.topk_group;
              p.top_k = sh.top_k;
              p.norm_topk_prob = norm;
              p.routed_scaling_factor = scaling;
              const int64_t n = 23;
              Tensor logits = random(DType::kF32, {n, sh.E}, -4.0f, 4.0f);
              Tensor bias;
              std::vector<double> bv;
              if (with_bias) {
                // Comparable to the scores, so it really changes the choice.
                const float b = scoring == ScoringFunc::kSoftmax ? 0.5f / sh.E : 0.3f;
                bias = random(DType::kF32, {sh.E}, -b, b);
                bv = widen(bias);
              }
              Tensor ids = Tensor::empty_host(DType::kI32, {n, sh.top_k});
              Tensor w = Tensor::empty_host(DType::kF32, {n, sh.top_k});
              std::fill(ids.data<int32_t>(), ids.data<int32_t>() + ids.numel(), -1);
              std::fill(w.data<float>(), w.data<float>() + w.numel(), kNaN);
              be_.moe_gate(logits, bias, p, ids, w);
              const std::vector<double> lv = widen(logits);
              for (int64_t t = 0; t < n; ++t) {
                const std::vector<double> row(lv.begin() + t * sh.E, lv.begin() + (t + 1) * sh.E);
                const GateRef r = ref_gate(row, with_bias ? &bv : nullptr, p);
                ++n_checked;
                if (r.near_tie) {
                  ++n_ties;
                  continue;
                }
                std::vector<std::pair<int32_t, double>> got;
                for (int j = 0; j < sh.top_k; ++j)
                  got.push_back(
                      {ids.data<int32_t>()[t * sh.top_k + j], w.data<float>()[t * sh.top_k + j]});
                std::sort(got.begin(), got.end());
                for (int j = 0; j < sh.top_k; ++j) {
                  ASSERT_EQ(got[j].first, r.picked[j].first) << "token " << t << " slot " << j;
                  EXPECT_NEAR(got[j].second, r.picked[j].second,
                              kRelTol * std::fabs(r.picked[j].second))
                      << "token " << t << " expert " << got[j].first;
                }
              }
            }
          }
        }
      }
    }
  }
  // Near-ties are skipped, but they must stay rare or the test checks nothing.
  EXPECT_LT(n_ties * 100, n_checked) << n_ties << " near-ties in " << n_checked << " tokens";
}

// A small hand-checked case: sigmoid + bias + noaux_tc, where the bias moves
// the choice but the weights stay the unbiased scores.
TEST_F(CpuBackendOpsTest, MoeGateBiasSteersChoiceNotWeight) {
  GateParams p;
  p.scoring = ScoringFunc::kSigmoid;
  p.method = TopkMethod::kNoauxTc;
  p.n_group = 2;
  p.topk_group = 1;
  p.top_k = 2;
  p.norm_topk_prob = false;
  p.routed_scaling_factor = 2.0f;
  // Group 0 = experts 0..3 has the larger raw logits, but the bias favours
  // experts 5 and 6 in group 1.
  Tensor logits = Tensor::empty_host(DType::kF32, {1, 8});
  const float l[8] = {2.0f, 1.5f, 1.0f, 0.5f, 0.1f, 0.2f, 0.3f, 0.0f};
  std::copy(l, l + 8, logits.data<float>());
  Tensor bias = Tensor::empty_host(DType::kF32, {8});
  const float b[8] = {0, 0, 0, 0, 0, 1.0f, 1.0f, 0};
  std::copy(b, b + 8, bias.data<float>());
  Tensor ids = Tensor::empty_host(DType::kI32, {1, 2});
  Tensor w = Tensor::empty_host(DType::kF32, {1, 2});
  be_.moe_gate(logits, bias, p, ids, w);
  std::vector<std::pair<int, float>> got{{ids.data<int32_t>()[0], w.data<float>()[0]},
                                         {ids.data<int32_t>()[1], w.data<float>()[1]}};
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got[0].first, 5);
  EXPECT_EQ(got[1].first, 6);
  EXPECT_NEAR(got[0].second, 2.0 / (1.0 + std::exp(-0.2)), 1e-6);
  EXPECT_NEAR(got[1].second, 2.0 / (1.0 + std::exp(-0.3)), 1e-6);
}

// ---- MoE FFN --------------------------------------------------------------------------

TEST_F(CpuBackendOpsTest, MoeFfnVsNaivePerTokenLoop) {
  for (DType wt : {DType::kF32, DType::kBF16}) {
    for (int64_t n : {1, 5, 17, 40}) {
      for (int64_t d : {8, 33}) {
        for (int64_t f : {7, 16}) {
          const int64_t n_experts = 6, top_k = 3;
          const int64_t pad = n % 2 == 0 ? 3 : 0;
          SCOPED_TRACE(::testing::Message() << dtype_name(wt) << " n " << n << " d " << d << " f "
                                            << f << " pad " << pad);
          const Tensor x = random_view(DType::kF32, {n, d}, pad);
          const Tensor w_gate_up = random(wt, {n_experts, 2 * f, d});
          const Tensor w_down = random(wt, {n_experts, d, f});
          // Expert 0 gets no token; expert 1 gets every token; the other slots
          // pick distinct experts from 2..5 at random.
          std::vector<int32_t> ids(static_cast<size_t>(n * top_k));
          Tensor tw = random(DType::kF32, {n, top_k}, 0.05f, 1.0f);
          for (int64_t t = 0; t < n; ++t) {
            std::vector<int32_t> rest{2, 3, 4, 5};
            std::shuffle(rest.begin(), rest.end(), rng_);
            std::vector<int32_t> row{1, rest[0], rest[1]};
            std::shuffle(row.begin(), row.end(), rng_);
            std::copy(row.begin(), row.end(), ids.begin() + t * top_k);
          }
          OutView out = nan_view({n, d}, pad);
          be_.moe_ffn(x, i32_tensor(ids, {n, top_k}), tw, w_gate_up, w_down, out.view);

          const std::vector<double> xv = widen(x), gu = widen(w_gate_up), dn = widen(w_down),
                                    wv = widen(tw);
          std::vector<double> ref(static_cast<size_t>(n * d), 0.0), mag(ref.size(), 0.0);
          for (int64_t t = 0; t < n; ++t) {
            for (int64_t j = 0; j < top_k; ++j) {
              const int64_t e = ids[t * top_k + j];
              const double wgt = wv[t * top_k + j];
              std::vector<double> act(static_cast<size_t>(f)), act_mag(act.size());
              for (int64_t c = 0; c < f; ++c) {
                double g = 0.0, u = 0.0, ga = 0.0, ua = 0.0;
                for (int64_t i = 0; i < d; ++i) {
                  const double xi = xv[t * d + i];
                  g += gu[(e * 2 * f + c) * d + i] * xi;
                  u += gu[(e * 2 * f + f + c) * d + i] * xi;
                  ga += std::fabs(gu[(e * 2 * f + c) * d + i] * xi);
                  ua += std::fabs(gu[(e * 2 * f + f + c) * d + i] * xi);
                }
                act[c] = g / (1.0 + std::exp(-g)) * u;
                // |silu'| ≤ 1.1, so errors in g and u move act by at most this much.
                act_mag[c] = 1.1 * ga * ua + std::fabs(act[c]);
              }
              for (int64_t i = 0; i < d; ++i) {
                double y = 0.0, ya = 0.0;
                for (int64_t c = 0; c < f; ++c) {
                  y += dn[(e * d + i) * f + c] * act[c];
                  ya += std::fabs(dn[(e * d + i) * f + c]) * act_mag[c];
                }
                ref[t * d + i] += wgt * y;
                mag[t * d + i] += std::fabs(wgt) * ya;
              }
            }
          }
          expect_close(to_f32_vector(out.view), ref, mag, "moe_ffn");
          expect_written_only_inside(out, "moe_ffn");
          if (HasFailure()) return;
        }
      }
    }
  }
}

}  // namespace
}  // namespace moeserve
