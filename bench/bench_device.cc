#include "bench/bench_device.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "backend/cpu/cpu_backend.h"
#include "common/thread_pool.h"
#if MOESERVE_BENCH_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace moeserve {

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

bool parse_int_list(const std::string& s, std::vector<int>* out) {
  out->clear();
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v <= 0 || v > (1 << 20)) return false;
    out->push_back(static_cast<int>(v));
  }
  return !out->empty();
}

const char* verdict(const BenchDevice& dev, double percent, double target_percent) {
  if (!dev.is_gpu()) return "not judged off a GPU";
  return percent >= target_percent ? "met" : "MISSED";
}

double BenchDevice::median_seconds(const std::function<void()>& run, int n_warmup, int n_runs) {
  for (int i = 0; i < n_warmup; ++i) time(run);
  std::vector<double> t;
  for (int i = 0; i < std::max(n_runs, 1); ++i) t.push_back(time(run));
  return median(std::move(t));
}

namespace {

using Clock = std::chrono::steady_clock;

class CpuBenchDevice final : public BenchDevice {
 public:
  explicit CpuBenchDevice(int n_threads) : cpu_(n_threads), pool_(n_threads) {}

  Backend& backend() override { return cpu_; }
  std::string describe() const override {
    return absl::StrCat("CPU backend, ", cpu_.n_threads(), " threads");
  }
  bool is_cuda() const override { return false; }
  bool is_gpu() const override { return false; }

  double time(const std::function<void()>& run) override {
    const auto t0 = Clock::now();
    run();
    cpu_.synchronize();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }

  // Best of 5 multi-threaded memcpys of a buffer far larger than the caches.
  double copy_bandwidth(int64_t n) override {
    std::vector<char> src(static_cast<size_t>(n), 1), dst(static_cast<size_t>(n), 0);
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
      const double s = time([&] {
        pool_.parallel_for(
            n,
            [&](int64_t b, int64_t e) {
              std::memcpy(dst.data() + b, src.data() + b, static_cast<size_t>(e - b));
            },
            int64_t{1} << 20);
      });
      best = std::max(best, static_cast<double>(n) / s);
    }
    return best;
  }

  // Best of 5 multi-threaded sums of 64-bit words.
  double read_bandwidth(int64_t n) override {
    std::vector<uint64_t> src(static_cast<size_t>(n / 8), 3);
    std::vector<uint64_t> sums(64, 0);
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
      const double s = time([&] {
        pool_.parallel_for(
            n / 8,
            [&](int64_t b, int64_t e) {
              uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
              int64_t i = b;
              for (; i + 4 <= e; i += 4) {
                a0 += src[i];
                a1 += src[i + 1];
                a2 += src[i + 2];
                a3 += src[i + 3];
              }
              for (; i < e; ++i) a0 += src[i];
              sums[static_cast<size_t>(b * 63 / (n / 8))] += a0 + a1 + a2 + a3;
            },
            int64_t{1} << 17);
      });
      best = std::max(best, static_cast<double>(n) / s);
    }
    if (sums[0] == 42) std::puts("");  // keeps the sums live
    return best;
  }

  StatusOr<double> library_bf16_gemm_flops(int64_t, int64_t, int64_t, int) override {
    return absl::UnimplementedError("no BF16 library GEMM baseline on the CPU");
  }

 private:
  CpuBackend cpu_;
  ThreadPool pool_;
};

#if MOESERVE_BENCH_CUDA && !MOESERVE_CUDA_EMULATED
// A device tensor of `shape` BF16 values in [-1, 1) from `seed`.
Tensor random_bf16(Backend& be, std::vector<int64_t> shape, uint64_t seed) {
  Tensor host = Tensor::empty_host(DType::kBF16, std::move(shape));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < host.numel(); ++i) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    host.data<uint16_t>()[i] = f32_to_bf16(static_cast<float>(s >> 40) / 8388608.0f - 1.0f);
  }
  Tensor dev = be.alloc(DType::kBF16, host.shape());
  be.copy(host, dev);
  return dev;
}
#endif

#if MOESERVE_BENCH_CUDA
class CudaBenchDevice final : public BenchDevice {
 public:
  explicit CudaBenchDevice(std::unique_ptr<CudaBackend> cuda) : cuda_(std::move(cuda)) {}

  Backend& backend() override { return *cuda_; }
  std::string describe() const override {
#if MOESERVE_CUDA_EMULATED
    return "CUDA backend on the SIMT emulator (figures are the emulator's, not a GPU's)";
#else
    return "CUDA backend, device 0";
#endif
  }
  bool is_cuda() const override { return true; }
  bool is_gpu() const override { return !MOESERVE_CUDA_EMULATED; }

  double time(const std::function<void()>& run) override { return cuda_->time_on_stream(run); }

  // The median of 5 device-to-device copies after one warm-up.
  double copy_bandwidth(int64_t n) override {
    const Tensor src = cuda_->alloc(DType::kI8, {n}), dst = cuda_->alloc(DType::kI8, {n});
    return static_cast<double>(n) / median_seconds([&] { cuda_->copy(src, dst); }, 1, 5);
  }
  double read_bandwidth(int64_t) override { return 0; }

  StatusOr<double> library_bf16_gemm_flops(int64_t n, int64_t k, int64_t m, int n_runs) override {
#if MOESERVE_CUDA_EMULATED
    (void)n, (void)k, (void)m, (void)n_runs;
    return absl::UnimplementedError("n/a (emulated: no cuBLASLt)");
#else
    const Tensor x = random_bf16(*cuda_, {n, k}, 1), w = random_bf16(*cuda_, {m, k}, 2);
    const Tensor out = cuda_->alloc(DType::kBF16, {n, m});
    Status status = cuda_->cublaslt_linear(x, w, out);
    if (!status.ok()) return status;
    const double s = median_seconds([&] { (void)cuda_->cublaslt_linear(x, w, out); }, 1, n_runs);
    return 2.0 * static_cast<double>(n) * static_cast<double>(k) * static_cast<double>(m) / s;
#endif
  }

 private:
  std::unique_ptr<CudaBackend> cuda_;
};
#endif

}  // namespace

StatusOr<std::unique_ptr<BenchDevice>> BenchDevice::create(const std::string& kind, int n_threads,
                                                           double gpu_memory_fraction) {
  if (kind == "cpu") return std::unique_ptr<BenchDevice>(new CpuBenchDevice(n_threads));
  if (kind == "cuda") {
#if MOESERVE_BENCH_CUDA
    auto cuda = CudaBackend::create(0, {.memory_fraction = gpu_memory_fraction});
    if (!cuda.ok()) return cuda.status();
    return std::unique_ptr<BenchDevice>(new CudaBenchDevice(std::move(*cuda)));
#else
    (void)gpu_memory_fraction;
    return absl::InvalidArgumentError("this build has no CUDA backend");
#endif
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown backend '", kind, "' (cpu or cuda)"));
}

}  // namespace moeserve
