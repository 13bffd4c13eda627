// Every case of the backend op table (tests/support/backend_op_cases.h) timed
// on the CPU backend: time per run, and the bytes and floating-point work the
// case's shapes imply as GB/s and GFLOP/s.
//
//   backend_ops_bench [--threads N] [--seconds S] [--filter SUBSTRING]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "tests/support/backend_op_cases.h"

int main(int argc, char** argv) {
  int threads = 0;
  double seconds = 0.3;
  std::string filter;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads")
      threads = std::atoi(argv[i + 1]);
    else if (a == "--seconds")
      seconds = std::atof(argv[i + 1]);
    else if (a == "--filter")
      filter = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: backend_ops_bench [--threads N] [--seconds S] [--filter S]\n");
      return 2;
    }
  }
  moeserve::CpuBackend cpu(threads);
  std::printf("CPU backend, %d threads\n%-52s %10s %9s %9s\n", cpu.n_threads(), "case", "us/run",
              "GB/s", "GFLOP/s");
  for (const moeserve::OpCase& c : moeserve::backend_op_cases()) {
    if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
    const moeserve::OpResult shape = moeserve::run_op_case(cpu, c, 1);
    const double t = moeserve::time_op_case(cpu, c, seconds);
    std::printf("%-52s %10.1f %9.2f %9.2f\n", c.name.c_str(), t * 1e6, shape.bytes / t / 1e9,
                shape.flops / t / 1e9);
  }
  return 0;
}
