// One table of backend op cases (op, shapes, dtypes, tolerance), as ggml's
// test-backend-ops has: every backend runs each case it supports against the
// CPU backend's result (tests/gpu/backend_ops_test.cc; label emu when the CUDA
// backend runs on the SIMT emulator), and bench/backend_ops_bench times the
// same cases (GB/s and GFLOP/s per case).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace moeserve {

struct OpCase {
  std::string name;  // e.g. "linear BF16 n=1 k=2048 m=10944"
  Op op;
  DType dtype;                // weight / table / KV-cache dtype (F32 for ops without one)
  std::vector<int64_t> dims;  // per op, see backend_op_cases.cc
  double tolerance;           // max |got - cpu| / max |cpu| over the output
  // Activation dtype (Backend::supports_activation_dtype). BF16 cases feed
  // every backend the same BF16 values; one that lacks BF16 activations (the
  // CPU reference) gets them widened to F32 and returns F32.
  DType act = DType::kF32;
};

// DeepSeek-V2-Lite- and V3-shaped cases at decode and prefill sizes.
std::vector<OpCase> backend_op_cases();

struct OpResult {
  std::vector<float> out;  // the op's output, downloaded and widened to F32
  double bytes = 0;        // bytes the op must read and write (weights, inputs, outputs)
  double flops = 0;        // floating-point operations (2 per multiply-add)
};

// Inputs made from `seed` (the same on every backend), uploaded to `be`; the op
// run once; its output downloaded. `run` = false: only the figures (bytes,
// flops), nothing is made or run.
OpResult run_op_case(Backend& be, const OpCase& c, uint64_t seed, bool run = true);

// The benchmarks' target shapes (docs/testing.md, "Benchmarks"), too large for the
// agreement tests: MLA decode over 128 sequences × 4,096 positions (V2-Lite's 16 heads and
// V3's 128, BF16 cache and activations), the grouped expert GEMM at prefill (moe_ffn, 4,096
// tokens × 64 experts top-6 at V2-Lite's widths) and the dense prefill product of the same
// expert widths (which real CUDA builds send to cuBLASLt).
std::vector<OpCase> benchmark_op_cases();

// Runs its argument (work queued on a backend) and returns the seconds it took, waited for.
using RunTimer = std::function<double(const std::function<void()>& run)>;

// Seconds of each timed run of `c` on `be` (inputs prepared once): `n_warmup` untimed runs,
// then runs each timed by `time_run` until there are at least `min_runs` and their sum is at
// least `min_seconds`.
std::vector<double> time_op_case_runs(Backend& be, const OpCase& c, const RunTimer& time_run,
                                      int n_warmup, int min_runs, double min_seconds);

// max |a - b| / max |b|.
double max_rel_error(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace moeserve
