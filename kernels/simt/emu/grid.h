// Emulator entry point for a launch (host compiler only): runs every block of the grid,
// blocks in parallel over a small pool of OS threads, each block's threads as fibers.
#pragma once

#include <memory>

#include "kernels/simt/launch_config.h"

namespace simt::emu {

using ErasedKernel = void (*)();
struct KernelThunk {
  void (*invoke)(ErasedKernel kernel, const void* params);  // calls kernel(*params)
  ErasedKernel kernel;
  const void* params;
  // A copy of *params that outlives the launch, for a stream capture to replay later.
  std::shared_ptr<const void> (*copy_params)(const void* params);
};

// Runs the launch to completion and returns the first error (lowest block) or the races found.
// On a capturing stream (emu/capture.h) the launch is validated and recorded with a copy of its
// params and options instead (config.kernel_name must then outlive the graph: a literal).
LaunchResult run_grid(const LaunchConfig& config, const KernelThunk& thunk);

// Options used when LaunchConfig::emu is null (tests set racecheck here once).
const EmuOptions& default_options();
void set_default_options(const EmuOptions& options);

// The calling thread's last launch or runtime error, as cudaGetLastError sees it (the
// emulated runtime's cudaGetLastError takes it; the message says what the emulator found).
const LaunchResult& peek_last_error();
LaunchResult take_last_error();
void set_last_error(LaunchResult error);

// True when some loaded code was compiled with the access instrumentation racecheck needs.
bool racecheck_available();

}  // namespace simt::emu
