// Responder: the handler's HttpResponder, posting its calls onto the connection's strand
// (see http_responder.h).
#include "server/http_responder.h"

#include <mutex>

#include "common/logging.h"
#include <boost/asio/post.hpp>

namespace moeserve::http_impl {

Responder::~Responder() {
  std::lock_guard<std::mutex> lock(ex_->mu);
  if (ex_->closed || ex_->complete || state_->stopped) return;
  if (ex_->phase == Exchange::Phase::kWaiting) {
    MS_LOG_WARN("HTTP handler dropped a request without answering it");
    ex_->phase = Exchange::Phase::kSent;
    post_send(500, error_body("The server did not answer the request.", "server_error", 500), {});
  } else if (ex_->phase == Exchange::Phase::kStreaming) {
    MS_LOG_WARN("HTTP handler dropped a stream without ending it; closing the connection");
    net::post(session_->executor(), [s = session_, ex = ex_] { s->abort(ex); });
  }
}

void Responder::send(int status, std::string content_type, std::string body,
                     Headers extra_headers) {
  std::lock_guard<std::mutex> lock(ex_->mu);
  if (ex_->phase != Exchange::Phase::kWaiting) {
    MS_LOG_WARN("HttpResponder::send after the response was started: ignored");
    return;
  }
  ex_->phase = Exchange::Phase::kSent;
  if (ex_->closed) return;
  ex_->pending_bytes += body.size();
  net::post(session_->executor(),
            [s = session_, ex = ex_, status, type = std::move(content_type), body = std::move(body),
             extra = std::move(extra_headers)]() mutable {
              const size_t n = body.size();
              s->send_response(ex, status, std::move(type), std::move(body), std::move(extra), n);
            });
}

void Responder::start_stream(std::string content_type) {
  std::lock_guard<std::mutex> lock(ex_->mu);
  if (ex_->phase != Exchange::Phase::kWaiting) {
    MS_LOG_WARN("HttpResponder::start_stream after the response was started: ignored");
    return;
  }
  ex_->phase = Exchange::Phase::kStreaming;
  if (ex_->closed) return;
  net::post(session_->executor(), [s = session_, ex = ex_, type = std::move(content_type)] {
    s->start_stream(ex, type);
  });
}

bool Responder::write(std::string data) {
  std::lock_guard<std::mutex> lock(ex_->mu);
  if (ex_->phase != Exchange::Phase::kStreaming || ex_->closed || state_->stopped) return false;
  if (data.empty()) return true;  // an empty chunk would end the stream
  ex_->pending_bytes += data.size();
  // Posting under the lock keeps chunks in call order across threads.
  net::post(session_->executor(), [s = session_, ex = ex_, data = std::move(data)]() mutable {
    s->write_chunk(ex, std::move(data));
  });
  return true;
}

void Responder::end() {
  std::lock_guard<std::mutex> lock(ex_->mu);
  if (ex_->phase != Exchange::Phase::kStreaming) return;
  ex_->phase = Exchange::Phase::kEnded;
  if (ex_->closed) return;
  net::post(session_->executor(), [s = session_, ex = ex_] { s->end_stream(ex); });
}

bool Responder::closed() const {
  std::lock_guard<std::mutex> lock(ex_->mu);
  return ex_->closed || state_->stopped;
}

void Responder::on_close(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(ex_->mu);
    if (ex_->complete) return;  // answered in full: there is nothing left to cancel
    if (!ex_->closed) {
      ex_->on_close.swap(fn);  // a replaced callback dies after the lock is released
      return;
    }
  }
  fn();
}

void Responder::post(std::function<void()> fn) { net::post(session_->executor(), std::move(fn)); }

void Responder::fail(const std::string& message) {
  std::lock_guard<std::mutex> lock(ex_->mu);
  if (ex_->phase != Exchange::Phase::kWaiting || ex_->closed) return;
  ex_->phase = Exchange::Phase::kSent;
  post_send(500, error_body(message, "server_error", 500), {});
}

void Responder::post_send(int status, std::string body, Headers extra) {
  ex_->pending_bytes += body.size();
  net::post(session_->executor(), [s = session_, ex = ex_, status, body = std::move(body),
                                   extra = std::move(extra)]() mutable {
    const size_t n = body.size();
    s->send_response(ex, status, "application/json", std::move(body), std::move(extra), n);
  });
}

}  // namespace moeserve::http_impl
