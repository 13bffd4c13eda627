// Every case of the backend op table (tests/support/backend_op_cases.h) timed on one backend:
// the median time per run after warm-up, and the bytes and floating-point work the case's
// shapes imply as GB/s and TFLOP/s, beside the reference rates measured in the same run (the
// copy bandwidth; on a GPU, cuBLASLt's BF16 GEMM at a prefill shape) as "% of copy" and
// "% of cuBLAS" (GEMM-shaped cases with BF16 weights). On CUDA, runs are timed with CUDA
// events. The CUDA backend (on a GPU or the SIMT emulator) runs the cases it supports.
//
//   backend_ops_bench [--backend cpu|cuda] [--threads N] [--seconds S] [--runs N]
//                     [--filter SUBSTRING] [--max-bytes B] [--targets | --no-targets]
//                     [--copy-mib N] [--gpu-memory-fraction F]
// --targets adds the target shapes (benchmark_op_cases(): MLA decode 128 × 4,096,
// the grouped expert GEMM at 4,096 tokens); on by default with --backend cuda. --max-bytes
// skips cases that move more bytes (the emulated smoke test keeps to small ones).
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_device.h"
#include "tests/support/backend_op_cases.h"

namespace moeserve {
namespace {

// The prefill shape of the cuBLAS baseline: 4,096 tokens through the experts' gate/up width.
constexpr int64_t kLibN = 4096, kLibK = 2048, kLibM = 2816;
constexpr int kLibRuns = 20;

// The target for a benchmark_op_cases() row: the percent of copy bandwidth (MLA
// decode) or of the cuBLAS rate (the GEMMs) it must reach.
struct Target {
  bool of_copy = false;  // else of cuBLAS
  double percent = 0;
};
Target target_of(const OpCase& c) {
  if (c.op == Op::kMlaAttention) return {true, 80};
  if (c.op == Op::kMoeFfn) return {false, 60};
  return {false, 90};  // the dense product goes to cuBLASLt itself: a check of the baseline
}

bool is_gemm(Op op) {
  return op == Op::kLinear || op == Op::kHeadLinear || op == Op::kGateUpSilu || op == Op::kMoeFfn;
}

int usage() {
  std::fprintf(stderr,
               "usage: backend_ops_bench [--backend cpu|cuda] [--threads N] [--seconds S] "
               "[--runs N] [--filter S] [--max-bytes B] [--targets|--no-targets] [--copy-mib N] "
               "[--gpu-memory-fraction F]\n");
  return 2;
}

}  // namespace
}  // namespace moeserve

int main(int argc, char** argv) {
  using namespace moeserve;
  int threads = 0, runs = 5, targets = -1, copy_mib = 256;
  double seconds = 0.3, max_bytes = 0, gpu_fraction = 0.9;
  std::string filter, kind = "cpu";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--targets") {
      targets = 1;
    } else if (a == "--no-targets") {
      targets = 0;
    } else if (has_value && a == "--threads") {
      threads = std::atoi(argv[++i]);
    } else if (has_value && a == "--seconds") {
      seconds = std::atof(argv[++i]);
    } else if (has_value && a == "--runs") {
      runs = std::atoi(argv[++i]);
    } else if (has_value && a == "--filter") {
      filter = argv[++i];
    } else if (has_value && a == "--max-bytes") {
      max_bytes = std::atof(argv[++i]);
    } else if (has_value && a == "--copy-mib") {
      copy_mib = std::atoi(argv[++i]);
    } else if (has_value && a == "--gpu-memory-fraction") {
      gpu_fraction = std::atof(argv[++i]);
    } else if (has_value && a == "--backend") {
      kind = argv[++i];
    } else {
      return usage();
    }
  }
  if (runs < 1 || copy_mib < 1 || seconds < 0) return usage();
  auto device = BenchDevice::create(kind, threads, gpu_fraction);
  if (!device.ok()) {
    std::fprintf(stderr, "%s\n", device.status().ToString().c_str());
    return kind == "cpu" || kind == "cuda" ? 1 : 2;
  }
  BenchDevice& dev = **device;
  Backend& be = dev.backend();
  if (targets < 0) targets = dev.is_cuda() ? 1 : 0;

  const double copy_bw = dev.copy_bandwidth(int64_t{copy_mib} << 20);
  const StatusOr<double> lib = dev.library_bf16_gemm_flops(kLibN, kLibK, kLibM, kLibRuns);
  std::printf("%s\n", dev.describe().c_str());
  std::printf("copy bandwidth: %.1f GB/s (%s, %d MiB, bytes copied/s)\n", copy_bw / 1e9,
              dev.is_cuda() ? "cudaMemcpyAsync device to device, CUDA events, median of 5"
                            : "multi-threaded memcpy, best of 5",
              copy_mib);
  if (lib.ok()) {
    std::printf(
        "cuBLAS BF16: %.1f TFLOP/s (cuBLASLt, [%lld x %lld] x [%lld x %lld]^T, median of %d)\n",
        *lib / 1e12, static_cast<long long>(kLibN), static_cast<long long>(kLibK),
        static_cast<long long>(kLibM), static_cast<long long>(kLibK), kLibRuns);
  } else {
    std::printf("cuBLAS BF16: %s\n", dev.is_gpu()    ? lib.status().ToString().c_str()
                                     : dev.is_cuda() ? "n/a (emulated)"
                                                     : "n/a (CPU)");
  }
  std::printf("timing: %s, median of >= %d runs and >= %.2f s after 1 warm-up\n",
              dev.is_cuda() ? "CUDA events" : "host clock", runs, seconds);
  std::printf("%-64s %10s %9s %9s %8s %8s\n", "case", "us/run", "GB/s", "TFLOP/s", "%copy",
              "%cuBLAS");

  // The target shapes first: the most telling figures, printed before any timeout.
  std::vector<OpCase> cases;
  if (targets) cases = benchmark_op_cases();
  const size_t n_targets = cases.size();
  for (OpCase& c : backend_op_cases()) cases.push_back(std::move(c));
  int n_run = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const OpCase& c = cases[i];
    if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
    if (!be.supports(c.op, c.dtype) || !be.supports_activation_dtype(c.act)) continue;
    const OpResult shape = run_op_case(be, c, 1, /*run=*/false);
    if (max_bytes > 0 && shape.bytes > max_bytes) continue;
    const double t = median(time_op_case_runs(
        be, c, [&](const std::function<void()>& run) { return dev.time(run); }, 1, runs, seconds));
    const double gbs = shape.bytes / t / 1e9, flops = shape.flops / t;
    char of_lib[16] = "-";
    if (is_gemm(c.op) && c.dtype == DType::kBF16) {
      if (lib.ok()) {
        std::snprintf(of_lib, sizeof(of_lib), "%.1f%%", 100.0 * flops / *lib);
      } else {
        std::snprintf(of_lib, sizeof(of_lib), "n/a");
      }
    }
    const double of_copy = 100.0 * shape.bytes / t / copy_bw;
    std::printf("%-64s %10.1f %9.2f %9.3f %7.1f%% %8s", c.name.c_str(), t * 1e6, gbs, flops / 1e12,
                of_copy, of_lib);
    if (i < n_targets) {
      const Target target = target_of(c);
      const double got = target.of_copy ? of_copy : lib.ok() ? 100.0 * flops / *lib : 0;
      std::printf("  target >= %.0f%% of %s: %s", target.percent,
                  target.of_copy ? "copy" : "cuBLAS",
                  target.of_copy || lib.ok() ? verdict(dev, got, target.percent) : "no cuBLAS");
    }
    std::printf("\n");
    std::fflush(stdout);
    ++n_run;
  }
  std::printf("%d cases timed\n", n_run);
  return n_run > 0 ? 0 : 1;
}
