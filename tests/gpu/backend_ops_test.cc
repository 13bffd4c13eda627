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

// One case on `be` and on the CPU: within the case's tolerance; prints the error and the
// backend's time.
void expect_matches_cpu(Backend& be, CpuBackend& cpu, const OpCase& c) {
  SCOPED_TRACE(c.name);
  const OpResult want = run_op_case(cpu, c, 11);
  const auto start = std::chrono::steady_clock::now();
  const OpResult got = run_op_case(be, c, 11);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double err = max_rel_error(got.out, want.out);
  EXPECT_LE(err, c.tolerance);
  std::printf("%-56s max rel error %.3g (%.2f s)\n", c.name.c_str(), err, seconds);
}

TEST(BackendOpsTest, CudaMatchesCpuOnEverySupportedCase) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  auto cuda = CudaBackend::create();
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  CpuBackend cpu(2);
  int ran = 0, unsupported = 0;
  for (const OpCase& c : backend_op_cases()) {
    // A case in activations the backend lacks would rerun its F32 twin.
    if (!(*cuda)->supports(c.op, c.dtype) || !(*cuda)->supports_activation_dtype(c.act)) {
      ++unsupported;
      continue;
    }
    expect_matches_cpu(**cuda, cpu, c);
    ++ran;
  }
  std::printf("%d cases run, %d not supported by the CUDA backend yet\n", ran, unsupported);
  EXPECT_GT(ran, 0);
  // The BF16-activation cases run in BF16 on the device, not as F32 twins.
  EXPECT_TRUE((*cuda)->supports_activation_dtype(DType::kBF16));
}

}  // namespace
}  // namespace moeserve
