// What the decode and op benchmarks share: a backend, its device's clock, and the reference
// rates they compare against, measured in the same run (docs/testing.md, "Benchmarks").
//   CPU:  the host clock around the work and synchronize(); multi-threaded memcpy and read
//         bandwidth; no library GEMM baseline.
//   CUDA: CUDA events on the backend's stream; device-to-device copy bandwidth (Backend::copy,
//         a cudaMemcpyAsync); cuBLASLt's BF16 GEMM (real CUDA builds only: "n/a (emulated)"
//         on the SIMT emulator).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "common/status.h"

namespace moeserve {

class BenchDevice {
 public:
  // kind "cpu" or "cuda". n_threads: the CPU backend's (0: all cores); gpu_memory_fraction:
  // the CUDA backend's pool. InvalidArgument for another kind, or cuda in a build without it.
  static StatusOr<std::unique_ptr<BenchDevice>> create(const std::string& kind, int n_threads,
                                                       double gpu_memory_fraction);
  virtual ~BenchDevice() = default;

  virtual Backend& backend() = 0;
  virtual std::string describe() const = 0;  // "CPU backend, 2 threads", "CUDA backend (…)"
  virtual bool is_cuda() const = 0;
  // A real GPU (not the CPU, not the SIMT emulator): only its figures are judged against the
  // targets (docs/testing.md, "Benchmarks").
  virtual bool is_gpu() const = 0;

  // Seconds of the work `run` queues on the backend, waited for.
  virtual double time(const std::function<void()>& run) = 0;
  // Bytes copied per second (each byte read once and written once; STREAM's "copy" counts
  // twice this) with two buffers of n_bytes in the backend's memory.
  virtual double copy_bandwidth(int64_t n_bytes) = 0;
  // Bytes summed per second, the tighter bound for a pass that only reads; 0 where not
  // measured (CUDA).
  virtual double read_bandwidth(int64_t n_bytes) = 0;
  // FLOP/s (2 per multiply-add) of the vendor's BF16 GEMM out[n, m] = x[n, k] · w[m, k]ᵀ:
  // cuBLASLt, the median of n_runs after a warm-up. Unimplemented where there is none (the
  // CPU, the emulated build).
  virtual StatusOr<double> library_bf16_gemm_flops(int64_t n, int64_t k, int64_t m, int n_runs) = 0;

  // The median of time(run) over n_runs runs after n_warmup untimed ones.
  double median_seconds(const std::function<void()>& run, int n_warmup, int n_runs);
};

double median(std::vector<double> values);

// "met" or "MISSED" for `percent` against `target_percent` on a GPU; "not judged off a GPU"
// elsewhere.
const char* verdict(const BenchDevice& dev, double percent, double target_percent);

// "1,8,32" -> {1, 8, 32}; false when an entry is not a positive integer.
bool parse_int_list(const std::string& s, std::vector<int>* out);

}  // namespace moeserve
