// Stream capture state: one entry per capturing stream, behind one mutex (captures are rare
// and short; launches look their stream up once).
#include "kernels/simt/emu/capture.h"

#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

namespace simt::emu {
namespace {

struct Capture {
  cudaStreamCaptureMode mode;
  std::thread::id thread;  // that began it
  bool blocking;           // the stream synchronises with the legacy stream
  bool invalidated = false;
  std::vector<CapturedOp> ops;
};

std::mutex& mutex() {
  static std::mutex mu;
  return mu;
}
std::unordered_map<cudaStream_t, Capture>& captures() {
  static std::unordered_map<cudaStream_t, Capture> map;
  return map;
}

bool is_legacy(cudaStream_t s) { return s == nullptr || s == cudaStreamLegacy; }

// The runtime's rule for "potentially unsafe" calls: refused while this thread captures in a
// mode other than relaxed, or another thread captures in global mode.
bool forbids_unsafe_calls(const Capture& c) {
  return c.thread == std::this_thread::get_id() ? c.mode != cudaStreamCaptureModeRelaxed
                                                : c.mode == cudaStreamCaptureModeGlobal;
}

cudaError_t check_unsafe_call_locked() {
  cudaError_t e = cudaSuccess;
  for (auto& [stream, c] : captures()) {
    if (forbids_unsafe_calls(c)) {
      c.invalidated = true;
      e = cudaErrorStreamCaptureUnsupported;
    }
  }
  return e;
}

}  // namespace

cudaError_t begin_capture(cudaStream_t stream, cudaStreamCaptureMode mode, bool blocking) {
  if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
      mode != cudaStreamCaptureModeRelaxed) {
    return cudaErrorInvalidValue;
  }
  if (is_legacy(stream) || stream == cudaStreamPerThread) return cudaErrorStreamCaptureUnsupported;
  std::lock_guard lock(mutex());
  if (captures().contains(stream)) return cudaErrorIllegalState;
  captures().emplace(stream, Capture{mode, std::this_thread::get_id(), blocking, false, {}});
  return cudaSuccess;
}

cudaError_t end_capture(cudaStream_t stream, std::vector<CapturedOp>* ops) {
  std::lock_guard lock(mutex());
  const auto it = captures().find(stream);
  if (it == captures().end()) return cudaErrorIllegalState;
  if (it->second.mode != cudaStreamCaptureModeRelaxed &&
      it->second.thread != std::this_thread::get_id()) {
    return cudaErrorStreamCaptureWrongThread;
  }
  const bool invalidated = it->second.invalidated;
  if (!invalidated) *ops = std::move(it->second.ops);
  captures().erase(it);
  return invalidated ? cudaErrorStreamCaptureInvalidated : cudaSuccess;
}

cudaStreamCaptureStatus capture_status(cudaStream_t stream) {
  std::lock_guard lock(mutex());
  const auto it = captures().find(stream);
  if (it == captures().end()) return cudaStreamCaptureStatusNone;
  return it->second.invalidated ? cudaStreamCaptureStatusInvalidated
                                : cudaStreamCaptureStatusActive;
}

OnStream record_on_stream(cudaStream_t stream, CapturedOp op, cudaError_t* error) {
  std::lock_guard lock(mutex());
  if (is_legacy(stream)) {
    // Work on the legacy stream would join every blocking stream, and a capture cannot.
    for (auto& [s, c] : captures()) {
      if (c.blocking) {
        c.invalidated = true;
        *error = cudaErrorStreamCaptureImplicit;
      }
    }
    return *error == cudaSuccess ? OnStream::kRun : OnStream::kFail;
  }
  const auto it = captures().find(stream);
  if (it == captures().end()) return OnStream::kRun;
  if (it->second.invalidated) {
    *error = cudaErrorStreamCaptureInvalidated;
    return OnStream::kFail;
  }
  it->second.ops.push_back(std::move(op));
  return OnStream::kRecord;
}

cudaError_t check_unsafe_call() {
  std::lock_guard lock(mutex());
  return check_unsafe_call_locked();
}

cudaError_t check_stream_wait(cudaStream_t stream) {
  std::lock_guard lock(mutex());
  if (is_legacy(stream)) return check_unsafe_call_locked();
  const auto it = captures().find(stream);
  if (it == captures().end()) return cudaSuccess;
  it->second.invalidated = true;
  return cudaErrorStreamCaptureUnsupported;
}

void forget_stream(cudaStream_t stream) {
  std::lock_guard lock(mutex());
  captures().erase(stream);
}

}  // namespace simt::emu
