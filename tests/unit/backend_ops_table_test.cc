// The backend op case table (tests/support/backend_op_cases.h) on the CPU
// backend: it covers every op of the interface, every case gives a finite,
// non-trivial output, and the CPU backend gives the same result, within the
// case's tolerance, with 1 thread and with 3 (other chunkings of every
// parallel loop). Other backends run the same table against the CPU in
// tests/gpu/backend_ops_test.cc.
#include <cmath>
#include <set>

#include "backend/cpu/cpu_backend.h"
#include "tests/support/backend_op_cases.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

TEST(BackendOpsTableTest, CoversEveryOp) {
  std::set<Op> ops;
  for (const OpCase& c : backend_op_cases()) ops.insert(c.op);
  for (Op op : {Op::kGatherRows, Op::kRmsNorm, Op::kAdd, Op::kLinear, Op::kHeadLinear, Op::kSiluMul,
                Op::kRope, Op::kKvCacheWrite, Op::kMlaAttention, Op::kMoeGate, Op::kMoeFfn}) {
    EXPECT_TRUE(ops.count(op)) << op_name(op);
  }
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

}  // namespace
}  // namespace moeserve
