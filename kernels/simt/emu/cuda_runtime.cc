// The few CUDA runtime calls host code uses (device, memory, copies, streams, events, errors),
// implemented on host memory for the emulator. Declarations come from the toolkit's own
// cuda_runtime_api.h, so host code compiles unchanged and links simt_cudart_emu instead of
// cudart. Launches are synchronous, so streams and events are only tokens and timestamps;
// a capturing stream records its work into a graph instead (emu/capture.h).
// Only what moeserve needs is here; a missing call is a link error, not a silent stub.
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "kernels/simt/emu/capture.h"
#include "kernels/simt/emu/grid.h"

// The toolkit declares these handles as incomplete types; here they are the recorded work.
struct CUgraph_st {
  std::vector<simt::emu::CapturedOp> ops;  // in capture order
};
struct CUgraphExec_st {
  std::vector<simt::emu::CapturedOp> ops;  // a copy: the graph may be destroyed first
};

namespace {

struct EmuStream {
  unsigned flags;
};
struct EmuEvent {
  std::chrono::steady_clock::time_point at;
  bool recorded;
};

// The emulated device's memory size. Small, since it is host memory: a backend that
// reserves a share of it at start-up (the CUDA backend's pool) maps that much of the heap.
constexpr size_t kDeviceBytes = size_t{4} << 30;

// "Device" memory is host heap, 256-byte aligned like cudaMalloc's.
cudaError_t allocate(void** p, size_t size) {
  if (p == nullptr) return cudaErrorInvalidValue;
  if (size == 0) {
    *p = nullptr;
    return cudaSuccess;
  }
  *p = std::aligned_alloc(256, (size + 255) / 256 * 256);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) simt::emu::set_last_error({e, ""});
  return e;
}

// Runs `op` now, or records it when `stream` captures; the error of either, or of a refusal.
cudaError_t on_stream(cudaStream_t stream, simt::emu::CapturedOp op) {
  cudaError_t e = cudaSuccess;
  switch (simt::emu::record_on_stream(stream, op, &e)) {
    case simt::emu::OnStream::kRun: return op();  // a failed launch has set the last error
    case simt::emu::OnStream::kRecord: return cudaSuccess;
    case simt::emu::OnStream::kFail: return record(e);
  }
  return cudaSuccess;
}

cudaError_t run_all(const std::vector<simt::emu::CapturedOp>& ops) {
  for (const simt::emu::CapturedOp& op : ops) {
    if (const cudaError_t e = op(); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace

extern "C" {

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return record(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  return record(device == 0 ? cudaSuccess : cudaErrorInvalidDevice);
}
cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return record(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return record(simt::emu::check_unsafe_call()); }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return record(cudaErrorInvalidValue);
  if (device != 0) return record(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::strncpy(prop->name, "moeserve SIMT emulator", sizeof prop->name - 1);
  prop->major = 9;  // the emulated instructions are sm_90's
  prop->minor = 0;
  prop->totalGlobalMem = kDeviceBytes;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->sharedMemPerBlockOptin = 227 * 1024;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024, prop->maxThreadsDim[1] = 1024, prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff, prop->maxGridSize[1] = 65535, prop->maxGridSize[2] = 65535;
  prop->multiProcessorCount = 1;
  return cudaSuccess;
}

cudaError_t cudaGetLastError() { return simt::emu::take_last_error().code; }
cudaError_t cudaPeekAtLastError() { return simt::emu::peek_last_error().code; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorCudartUnloading: return "cudaErrorCudartUnloading";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
    default: return "cudaErrorUnknown";
  }
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure (emulator: see simt::emu::peek_last_error)";
    case cudaErrorIllegalState: return "the operation is not permitted in this state";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit:
      return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorStreamCaptureWrongThread:
      return "attempt to terminate a thread-local capture sequence from another thread";
    default: return "unknown error";
  }
}

// Allocation and synchronous copies are refused while a capture forbids unsafe calls.
cudaError_t cudaMalloc(void** p, size_t size) {
  if (const cudaError_t e = simt::emu::check_unsafe_call(); e != cudaSuccess) return record(e);
  return record(allocate(p, size));
}
// Stream-ordered allocation would be a memory node of the graph: not emulated, so refused.
cudaError_t cudaMallocAsync(void** p, size_t size, cudaStream_t stream) {
  if (const cudaError_t e = simt::emu::check_stream_wait(stream); e != cudaSuccess) {
    return record(e);
  }
  return record(allocate(p, size));
}
cudaError_t cudaMallocHost(void** p, size_t size) {
  if (const cudaError_t e = simt::emu::check_unsafe_call(); e != cudaSuccess) return record(e);
  return record(allocate(p, size));
}
cudaError_t cudaFree(void* p) {
  if (const cudaError_t e = simt::emu::check_unsafe_call(); e != cudaSuccess) return record(e);
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t stream) {
  if (const cudaError_t e = simt::emu::check_stream_wait(stream); e != cudaSuccess) {
    return record(e);
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) {
  if (const cudaError_t e = simt::emu::check_unsafe_call(); e != cudaSuccess) return record(e);
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return record(cudaErrorInvalidValue);
  *total_bytes = kDeviceBytes;
  *free_bytes = *total_bytes;
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return record(cudaErrorInvalidValue);
  if (const cudaError_t e = simt::emu::check_unsafe_call(); e != cudaSuccess) return record(e);
  if (count > 0) std::memmove(dst, src, count);
  return cudaSuccess;
}
// A captured copy reads src when the graph runs, as a graph's memcpy node does.
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return record(cudaErrorInvalidValue);
  return on_stream(stream, [dst, src, count] {
    if (count > 0) std::memmove(dst, src, count);
    return cudaSuccess;
  });
}
cudaError_t cudaMemset(void* dst, int value, size_t count) {
  if (const cudaError_t e = simt::emu::check_unsafe_call(); e != cudaSuccess) return record(e);
  if (count > 0) std::memset(dst, value, count);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t count, cudaStream_t stream) {
  return on_stream(stream, [dst, value, count] {
    if (count > 0) std::memset(dst, value, count);
    return cudaSuccess;
  });
}

cudaError_t cudaStreamCreate(cudaStream_t* s) {
  if (s == nullptr) return record(cudaErrorInvalidValue);
  *s = reinterpret_cast<cudaStream_t>(new EmuStream{0});
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  if (s == nullptr) return record(cudaErrorInvalidValue);
  *s = reinterpret_cast<cudaStream_t>(new EmuStream{flags});
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (s == nullptr) return record(cudaErrorInvalidResourceHandle);
  simt::emu::forget_stream(s);
  delete reinterpret_cast<EmuStream*>(s);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  return record(simt::emu::check_stream_wait(s));
}
cudaError_t cudaStreamQuery(cudaStream_t s) { return record(simt::emu::check_stream_wait(s)); }

cudaError_t cudaEventCreate(cudaEvent_t* e) {
  if (e == nullptr) return record(cudaErrorInvalidValue);
  *e = reinterpret_cast<cudaEvent_t>(new EmuEvent{{}, false});
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  if (e == nullptr) return record(cudaErrorInvalidResourceHandle);
  delete reinterpret_cast<EmuEvent*>(e);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream) {
  if (e == nullptr) return record(cudaErrorInvalidResourceHandle);
  auto* ev = reinterpret_cast<EmuEvent*>(e);
  return on_stream(stream, [ev] {
    ev->at = std::chrono::steady_clock::now();
    ev->recorded = true;
    return cudaSuccess;
  });
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  return record(e == nullptr ? cudaErrorInvalidResourceHandle : cudaSuccess);
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
  return record(e == nullptr ? cudaErrorInvalidResourceHandle : cudaSuccess);
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr || start == nullptr || end == nullptr) return record(cudaErrorInvalidValue);
  const auto* a = reinterpret_cast<EmuEvent*>(start);
  const auto* b = reinterpret_cast<EmuEvent*>(end);
  if (!a->recorded || !b->recorded) return record(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}

// ---- graphs: stream capture and replay (emu/capture.h) ----------------------------------------
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  const bool legacy =
      stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread;
  const bool blocking =
      !legacy && (reinterpret_cast<EmuStream*>(stream)->flags & cudaStreamNonBlocking) == 0;
  return record(simt::emu::begin_capture(stream, mode, blocking));
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (graph == nullptr) return record(cudaErrorInvalidValue);
  *graph = nullptr;
  std::vector<simt::emu::CapturedOp> ops;
  const cudaError_t e = simt::emu::end_capture(stream, &ops);
  if (e == cudaSuccess) *graph = new CUgraph_st{std::move(ops)};
  return record(e);
}
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (status == nullptr) return record(cudaErrorInvalidValue);
  *status = simt::emu::capture_status(stream);
  return cudaSuccess;
}
// No instantiation flags are emulated (upload, auto-free, device launch): refused.
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph,
                                 unsigned long long flags) {
  if (exec == nullptr || graph == nullptr || flags != 0) return record(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->ops};
  return cudaSuccess;
}
// Runs the recorded work in order; into a capturing stream it is recorded as one step. The first
// failure is returned (on a GPU it would surface at the next synchronisation).
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr) return record(cudaErrorInvalidResourceHandle);
  return on_stream(stream, [exec] { return run_all(exec->ops); });
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  if (exec == nullptr) return record(cudaErrorInvalidResourceHandle);
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  if (graph == nullptr) return record(cudaErrorInvalidResourceHandle);
  delete graph;
  return cudaSuccess;
}

}  // extern "C"
