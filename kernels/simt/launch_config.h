// What a kernel launch needs besides the kernel and its Params, shared by the GPU and the
// emulator builds: the grid shape, dynamic shared memory, the stream, and the emulator's
// options (ignored on a GPU).
#pragma once

#include <driver_types.h>
#include <vector_types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace simt {

// How the emulator orders the threads of a block between synchronisation points.
enum class Schedule : uint8_t {
  kDeterministic,  // threads run in linear index order; a run is reproducible
  kRandom,         // seeded random order, plus random preemption at shared-memory accesses
};

struct EmuOptions {
  Schedule schedule = Schedule::kDeterministic;
  uint64_t seed = 0;       // random schedule seed; the same seed gives the same interleaving
  bool racecheck = true;   // report shared-memory races (on: the emulator runs only in tests;
                           // needs an instrumented kernel TU, see racecheck_available())
  int n_workers = 0;       // OS threads running blocks in parallel; 0 = all hardware threads
  int preempt_one_in = 4;  // random mode: yield at one in this many shared-memory accesses
};

struct LaunchConfig {
  const char* kernel_name = "";     // shown in every emulator error and race report
  dim3 grid = dim3(1, 1, 1);        // blocks
  dim3 block = dim3(1, 1, 1);       // threads per block
  size_t dynamic_smem_bytes = 0;    // bytes behind SIMT_DYNAMIC_SHARED
  cudaStream_t stream = nullptr;    // GPU stream; the emulator runs synchronously
  const EmuOptions* emu = nullptr;  // emulator options; nullptr = emu::default_options()
};

struct LaunchResult {
  cudaError_t code = cudaSuccess;
  std::string message;  // empty on success; names kernel, block and threads on emulator errors
  bool ok() const { return code == cudaSuccess; }
};

}  // namespace simt
