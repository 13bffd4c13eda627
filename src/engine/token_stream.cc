// TokenStream: the per-request event queue between the engine thread and a front end.
#include <exception>

#include "common/logging.h"
#include "moeserve/engine.h"

namespace moeserve {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kError: return "error";
  }
  return "unknown";
}

std::optional<TokenEvent> TokenStream::next(Clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_until(lock, deadline, [&] { return !events_.empty() || final_popped_; })) {
    return std::nullopt;
  }
  if (events_.empty()) return std::nullopt;  // done
  TokenEvent event = std::move(events_.front());
  events_.pop_front();
  if (event.usage.has_value()) final_popped_ = true;
  return event;
}

std::vector<TokenEvent> TokenStream::poll() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<TokenEvent> out;
  out.reserve(events_.size());
  while (!events_.empty()) {
    if (events_.front().usage.has_value()) final_popped_ = true;
    out.push_back(std::move(events_.front()));
    events_.pop_front();
  }
  return out;
}

void TokenStream::set_listener(std::function<void()> listener) {
  std::lock_guard<std::mutex> lock(mu_);
  listener_ = std::move(listener);
}

bool TokenStream::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return final_popped_;
}

void TokenStream::push(TokenEvent event) {
  std::function<void()> listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (final_pushed_) return;  // nothing follows the final event
    final_pushed_ = event.usage.has_value();
    events_.push_back(std::move(event));
    listener = listener_;
  }
  cv_.notify_all();
  if (!listener) return;
  // A throwing listener is a front-end bug; it must not take the engine thread down.
  try {
    listener();
  } catch (const std::exception& e) {
    MS_LOG_ERROR("TokenStream {}: listener threw: {}", id_, e.what());
  }
}

}  // namespace moeserve
