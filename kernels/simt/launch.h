// The one place a kernel is launched. On nvcc it is `<<<>>>` (no `<<<>>>` anywhere else);
// under the host compiler it runs the kernel on the SIMT emulator. Kernels take one Params
// struct by value:
//   __global__ void my_kernel(const MyParams p);
//   simt::launch({.kernel_name = "my_kernel", .grid = g, .block = b}, my_kernel, params);
#pragma once

#include "kernels/simt/launch_config.h"

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#else
#include "kernels/simt/emu/grid.h"
#endif

namespace simt {

template <typename Params>
LaunchResult launch(const LaunchConfig& config, void (*kernel)(Params), const Params& params) {
#if defined(__CUDACC__)
  // Beyond 48 KiB a kernel must opt in to its dynamic shared memory.
  if (config.dynamic_smem_bytes > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(config.dynamic_smem_bytes));
    if (e != cudaSuccess) return {e, cudaGetErrorString(e)};
  }
  kernel<<<config.grid, config.block, config.dynamic_smem_bytes, config.stream>>>(params);
  const cudaError_t e = cudaGetLastError();
  return {e, e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e))};
#else
  const emu::KernelThunk thunk{
      [](emu::ErasedKernel k, const void* p) {
        reinterpret_cast<void (*)(Params)>(k)(*static_cast<const Params*>(p));
      },
      reinterpret_cast<emu::ErasedKernel>(kernel), &params,
      [](const void* p) -> std::shared_ptr<const void> {
        return std::make_shared<const Params>(*static_cast<const Params*>(p));
      }};
  return emu::run_grid(config, thunk);
#endif
}

}  // namespace simt
