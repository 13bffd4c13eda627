// Speed of the SIMT emulator on this machine, to size emulated kernel tests: the tensor-core
// GEMM example in MAC/s, and barrier arrivals per second. Run: build/bench/simt_emu_bench
// [n_workers]. Racecheck off and the deterministic schedule unless noted.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/simt/emu/grid.h"
#include "kernels/simt/tests/basic_kernels.cuh"
#include "kernels/simt/tests/gemm_bf16_example.cuh"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void bench_gemm(int m, int n, int k, const simt::EmuOptions& o, const char* label) {
  std::vector<uint16_t> a(static_cast<size_t>(m) * k), b(static_cast<size_t>(n) * k);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint16_t>(0x3f80 + i % 64);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint16_t>(0x3f00 + i % 32);
  std::vector<float> c(static_cast<size_t>(m) * n);
  const auto t0 = std::chrono::steady_clock::now();
  const simt::LaunchResult r =
      simt::test::launch_gemm_bf16({a.data(), b.data(), c.data(), m, n, k, k, k, n}, &o);
  const double s = seconds_since(t0);
  if (!r.ok()) std::printf("gemm failed: %s\n", r.message.c_str());
  const double macs = double{1} * m * n * k;
  std::printf("gemm_bf16 %dx%dx%d %-28s %8.3f s  %8.1f MMAC/s\n", m, n, k, label, s,
              macs / s / 1e6);
}

void bench_barriers(unsigned n_blocks, unsigned n_threads, int n_iter, const simt::EmuOptions& o,
                    const char* label) {
  int out = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const simt::LaunchResult r =
      simt::test::launch_barrier_loop({n_iter, &out}, n_blocks, n_threads, &o);
  const double s = seconds_since(t0);
  if (!r.ok()) std::printf("barrier loop failed: %s\n", r.message.c_str());
  const double arrivals = double{1} * n_blocks * n_threads * n_iter;
  std::printf(
      "__syncthreads %u blocks x %u threads x %d %-14s %8.3f s  %8.1f M arrivals/s  "
      "(%.1f ns each)\n",
      n_blocks, n_threads, n_iter, label, s, arrivals / s / 1e6, s / arrivals * 1e9);
}

// Threads started, run and finished per second: fiber creation plus one store per thread.
void bench_threads(unsigned n_blocks, unsigned n_threads, const simt::EmuOptions& o) {
  std::vector<uint32_t> out(size_t{n_blocks} * n_threads * 12);
  const auto t0 = std::chrono::steady_clock::now();
  const int n_launches = 20;
  for (int i = 0; i < n_launches; ++i) {
    (void)simt::test::launch_index({out.data()}, dim3(n_blocks), dim3(n_threads));
  }
  const double s = seconds_since(t0);
  const double threads = double{1} * n_launches * n_blocks * n_threads;
  std::printf(
      "index kernel %u blocks x %u threads x %d launches %8.3f s  %8.1f M threads/s  "
      "(%.1f us per launch)\n",
      n_blocks, n_threads, n_launches, s, threads / s / 1e6, s / n_launches * 1e6);
}

}  // namespace

int main(int argc, char** argv) {
  simt::EmuOptions o;
  o.n_workers = argc > 1 ? std::atoi(argv[1]) : 0;
  o.racecheck = false;
  std::printf("workers: %d (0 = all hardware threads)\n", o.n_workers);
  bench_gemm(256, 256, 256, o, "deterministic");
  bench_gemm(512, 512, 512, o, "deterministic");
  simt::EmuOptions rc = o;
  rc.racecheck = true;
  bench_gemm(256, 256, 256, rc, "deterministic + racecheck");
  simt::EmuOptions rnd = rc;
  rnd.schedule = simt::Schedule::kRandom;
  rnd.seed = 1;
  bench_gemm(256, 256, 256, rnd, "random + racecheck");
  bench_barriers(16, 256, 2000, o, "");
  bench_barriers(4, 1024, 500, o, "");
  bench_threads(1, 32, o);
  bench_threads(512, 256, o);
  return 0;
}
