// Every case of the backend op table (tests/support/backend_op_cases.h) timed
// on one backend: time per run, and the bytes and floating-point work the
// case's shapes imply as GB/s and GFLOP/s. The CUDA backend (in builds that
// have it, on a GPU or the SIMT emulator) runs the cases it supports.
//
//   backend_ops_bench [--backend cpu|cuda] [--threads N] [--seconds S] [--filter SUBSTRING]
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "tests/support/backend_op_cases.h"
#if MOESERVE_BENCH_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

int main(int argc, char** argv) {
  int threads = 0;
  double seconds = 0.3;
  std::string filter, backend = "cpu";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads")
      threads = std::atoi(argv[i + 1]);
    else if (a == "--seconds")
      seconds = std::atof(argv[i + 1]);
    else if (a == "--filter")
      filter = argv[i + 1];
    else if (a == "--backend")
      backend = argv[i + 1];
    else {
      std::fprintf(stderr,
                   "usage: backend_ops_bench [--backend cpu|cuda] [--threads N] [--seconds S] "
                   "[--filter S]\n");
      return 2;
    }
  }
  std::unique_ptr<moeserve::Backend> be;
  if (backend == "cpu") {
    auto cpu = std::make_unique<moeserve::CpuBackend>(threads);
    std::printf("CPU backend, %d threads\n", cpu->n_threads());
    be = std::move(cpu);
  } else if (backend == "cuda") {
#if MOESERVE_BENCH_CUDA
    auto cuda = moeserve::CudaBackend::create();
    if (!cuda.ok()) {
      std::fprintf(stderr, "%s\n", cuda.status().ToString().c_str());
      return 1;
    }
    std::printf("CUDA backend (cases it supports)\n");
    be = std::move(*cuda);
#else
    std::fprintf(stderr, "this build has no CUDA backend\n");
    return 1;
#endif
  } else {
    std::fprintf(stderr, "unknown backend '%s' (cpu or cuda)\n", backend.c_str());
    return 2;
  }
  std::printf("%-60s %10s %9s %9s\n", "case", "us/run", "GB/s", "GFLOP/s");
  for (const moeserve::OpCase& c : moeserve::backend_op_cases()) {
    if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
    if (!be->supports(c.op, c.dtype) || !be->supports_activation_dtype(c.act)) continue;
    const moeserve::OpResult shape = moeserve::run_op_case(*be, c, 1, /*run=*/false);
    const double t = moeserve::time_op_case(*be, c, seconds);
    std::printf("%-60s %10.1f %9.2f %9.2f\n", c.name.c_str(), t * 1e6, shape.bytes / t / 1e9,
                shape.flops / t / 1e9);
  }
  return 0;
}
