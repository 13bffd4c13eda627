// Stream capture on the emulator (host compiler only): while a stream captures, the launches
// (simt::launch) and async copies and sets issued on it are recorded instead of run, and
// cudaGraphLaunch replays them in order (emu/cuda_runtime.cc implements the runtime calls on
// this). Calls the real runtime refuses during a capture are refused here too, so host code
// that would break a capture on a GPU breaks under emulation.
#pragma once

#include <driver_types.h>

#include <functional>
#include <vector>

namespace simt::emu {

// One recorded operation; replaying it returns its error (cudaSuccess when it ran).
using CapturedOp = std::function<cudaError_t()>;

// `blocking`: the stream was created without cudaStreamNonBlocking, so work on the legacy
// stream would have to wait for it (refused while it captures).
cudaError_t begin_capture(cudaStream_t stream, cudaStreamCaptureMode mode, bool blocking);
// Ends the capture of `stream`: its operations, or cudaErrorStreamCaptureInvalidated if a
// refused call broke it (nothing is returned then), or cudaErrorIllegalState if it was not
// capturing.
cudaError_t end_capture(cudaStream_t stream, std::vector<CapturedOp>* ops);
cudaStreamCaptureStatus capture_status(cudaStream_t stream);

// What an operation issued on `stream` should do.
enum class OnStream {
  kRun,     // not capturing: run it now
  kRecord,  // capturing: recorded by record_on_stream
  kFail,    // refused (the error is returned): an invalidated capture, or the legacy stream
            // while a capture would have to join it
};
// Records `op` when `stream` captures (kRecord); `*error` is set when it returns kFail.
// `*error` must be cudaSuccess on entry.
OnStream record_on_stream(cudaStream_t stream, CapturedOp op, cudaError_t* error);

// A call that synchronises or allocates (cudaMalloc, cudaMemcpy, cudaDeviceSynchronize, ...):
// refused with cudaErrorStreamCaptureUnsupported, invalidating the capture that forbids it,
// while this thread captures in global or thread-local mode or another thread in global mode.
cudaError_t check_unsafe_call();
// cudaStreamSynchronize / cudaStreamQuery of `stream`: refused (and the capture invalidated)
// while that stream captures; otherwise as check_unsafe_call for the legacy stream.
cudaError_t check_stream_wait(cudaStream_t stream);
// Drops any capture of a stream being destroyed.
void forget_stream(cudaStream_t stream);

}  // namespace simt::emu
