// The backend op case table (tests/support/backend_op_cases.h) on the CPU
// backend: it covers every op of the interface, every case gives a finite,
// non-trivial output, and the CPU backend gives the same result, within the
// case's tolerance, with 1 thread and with 3 (other chunkings of every
// parallel loop), and its fused ops agree with their default compositions;
// the BF16-activation cases differ from F32 by their rounding alone.
// Other backends run the same table against the CPU in
// tests/gpu/backend_ops_test.cc.
#include <cmath>
#include <set>

#include "backend/cpu/cpu_backend.h"
#include "tests/support/backend_op_cases.h"
#include "tests/support/bf16_activation_backend.h"
#include "tests/support/forwarding_backend.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace moeserve {
namespace {

TEST(BackendOpsTableTest, CoversEveryOp) {
  std::set<Op> ops;
  for (const OpCase& c : backend_op_cases()) ops.insert(c.op);
  for (Op op :
       {Op::kGatherRows, Op::kRmsNorm, Op::kAdd, Op::kLinear, Op::kHeadLinear, Op::kSiluMul,
        Op::kRope, Op::kKvCacheWrite, Op::kMlaAttention, Op::kMoeGate, Op::kMoeFfn, Op::kAddRmsNorm,
        Op::kRopeKvWrite, Op::kGateUpSilu, Op::kLogSoftmaxTopk, Op::kSample}) {
    EXPECT_TRUE(ops.count(op)) << op_name(op);
  }
}

// The benchmarks' target shapes (too large to run here): their figures are what the
// benchmark divides by, so check them against the shapes.
TEST(BackendOpsTableTest, BenchmarkTargetCasesStateTheirTraffic) {
  CpuBackend cpu(1);
  const std::vector<OpCase> cases = benchmark_op_cases();
  ASSERT_EQ(cases.size(), 4u);
  for (const OpCase& c : cases) {
    SCOPED_TRACE(c.name);
    const OpResult r = run_op_case(cpu, c, 1, /*run=*/false);
    EXPECT_GT(r.bytes, 0.0);
    EXPECT_GT(r.flops, 0.0);
    EXPECT_EQ(c.act, DType::kBF16);
  }
  // MLA decode reads each sequence's 4,096 BF16 cache rows of 576 once.
  EXPECT_EQ(run_op_case(cpu, cases[0], 1, false).bytes, 128.0 * 4096 * 576 * 2);
  // The grouped GEMM: 4,096 tokens × 6 experts × (2 · 1408 + 1408) × 2048 multiply-adds.
  EXPECT_EQ(run_op_case(cpu, cases[2], 1, false).flops, 2.0 * 4096 * 6 * 3 * 1408 * 2048);
}

// Prefill-sized products (above 2e8 flops) are left to the benchmark and the
// cross-backend test: with one thread (and under ASan) they would dominate.
TEST(BackendOpsTableTest, CpuAgreesWithItselfAcrossThreadCounts) {
  CpuBackend one(1), three(3);
  int ran = 0;
  for (const OpCase& c : backend_op_cases()) {
    SCOPED_TRACE(c.name);
    if (run_op_case(one, c, 7, /*run=*/false).flops > 2e8) continue;
    ++ran;
    const OpResult a = run_op_case(one, c, 7);
    const OpResult b = run_op_case(three, c, 7);
    ASSERT_FALSE(a.out.empty());
    double max_abs = 0;
    for (float v : a.out) {
      ASSERT_TRUE(std::isfinite(v));
      max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
    }
    EXPECT_GT(max_abs, 0.0) << "all-zero output";
    EXPECT_GT(a.bytes, 0.0);
    EXPECT_LE(max_rel_error(b.out, a.out), c.tolerance);
  }
  EXPECT_GE(ran, 25);
}

// The CPU backend's fused ops against the Backend base class's compositions
// of its basic ops (what a backend gets before it fuses one).
TEST(BackendOpsTableTest, FusedOpsMatchTheirDefaultCompositions) {
  CpuBackend cpu(2);
  ComposingBackend composed(cpu);
  int ran = 0;
  for (const OpCase& c : backend_op_cases()) {
    if (c.op != Op::kAddRmsNorm && c.op != Op::kRopeKvWrite && c.op != Op::kGateUpSilu &&
        c.op != Op::kLogSoftmaxTopk && c.op != Op::kSample) {
      continue;
    }
    SCOPED_TRACE(c.name);
    const OpResult fused = run_op_case(cpu, c, 5);
    const OpResult parts = run_op_case(composed, c, 5);
    EXPECT_LE(max_rel_error(fused.out, parts.out), c.tolerance);
    ++ran;
  }
  EXPECT_EQ(ran, 44);
}

// The BF16-activation cases on a backend with BF16 activations (the CPU's ops,
// each activation output rounded to BF16 once, as a BF16 device backend
// stores) against the CPU's F32 result on the same BF16 inputs: within each
// case's tolerance, and really rounded (not bit-equal) where the output is an
// activation of new values.
TEST(BackendOpsTableTest, Bf16ActivationCasesDifferOnlyByTheirRounding) {
  CpuBackend cpu(2);
  Bf16ActivationBackend bf16(cpu);
  int ran = 0, rounded = 0;
  for (const OpCase& c : backend_op_cases()) {
    if (c.act != DType::kBF16) continue;
    SCOPED_TRACE(c.name);
    const OpResult want = run_op_case(cpu, c, 9);
    const OpResult got = run_op_case(bf16, c, 9);
    const double err = max_rel_error(got.out, want.out);
    EXPECT_LE(err, c.tolerance);
    if (err > 0) ++rounded;
    ++ran;
  }
  EXPECT_EQ(ran, 27);
  // All but the gather (a BF16 table's rows are exact in BF16) and the two cache writes.
  EXPECT_EQ(rounded, 24);
  EXPECT_THAT(bf16.f32_activations(), ::testing::IsEmpty());
}

}  // namespace
}  // namespace moeserve
