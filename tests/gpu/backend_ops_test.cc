// The backend op case table (tests/support/backend_op_cases.h) on the CUDA
// backend against the CPU backend: every case the CUDA backend supports, on
// the same inputs, within the case's tolerance. On a GPU (label gpu), or on
// the SIMT emulator's runtime (MOESERVE_CUDA_EMU, label emu); skipped with
// neither. The cases the backend does not support yet are listed.
#include <chrono>
#include <cstdio>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "tests/support/backend_op_cases.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

TEST(BackendOpsTest, CudaMatchesCpuOnEverySupportedCase) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  auto cuda = CudaBackend::create();
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  CpuBackend cpu(2);
  int ran = 0, unsupported = 0;
  for (const OpCase& c : backend_op_cases()) {
    if (!(*cuda)->supports(c.op, c.dtype)) {
      ++unsupported;
      continue;
    }
    SCOPED_TRACE(c.name);
    const OpResult want = run_op_case(cpu, c, 11);
    const auto start = std::chrono::steady_clock::now();
    const OpResult got = run_op_case(**cuda, c, 11);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double err = max_rel_error(got.out, want.out);
    EXPECT_LE(err, c.tolerance);
    std::printf("%-48s max rel error %.3g (%.2f s)\n", c.name.c_str(), err, seconds);
    ++ran;
  }
  std::printf("%d cases run, %d not supported by the CUDA backend yet\n", ran, unsupported);
  EXPECT_GT(ran, 0);
}

}  // namespace
}  // namespace moeserve
