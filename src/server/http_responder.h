// The HttpResponder that HttpServer hands its handler: the handler's view of one Exchange of a
// Session (server/http_session.h). Its calls come from any thread; they only change the
// Exchange's state under its mutex and post the work onto the connection's strand, so the
// socket is touched by the Session alone.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "server/http_server.h"
#include "server/http_session.h"

namespace moeserve::http_impl {

// It holds the io_context so that posting to the strand stays valid however long the handler
// keeps it, even past the server.
class Responder final : public HttpResponder {
 public:
  Responder(std::shared_ptr<net::io_context> ioc, std::shared_ptr<Session> session,
            std::shared_ptr<Exchange> exchange, std::shared_ptr<ServerState> state)
      : ioc_(std::move(ioc)),
        session_(std::move(session)),
        ex_(std::move(exchange)),
        state_(std::move(state)) {}
  // A request dropped unanswered gets a 500; a stream dropped unended closes the connection.
  ~Responder() override;

  void send(int status, std::string content_type, std::string body, Headers extra_headers) override;
  void start_stream(std::string content_type) override;
  bool write(std::string data) override;
  void end() override;
  size_t pending_bytes() const override { return ex_->pending_bytes.load(); }
  bool closed() const override;
  void on_close(std::function<void()> fn) override;
  void post(std::function<void()> fn) override;

  // For the server: answer after a handler threw, if it had not answered yet.
  void fail(const std::string& message);

 private:
  // Called with ex_->mu held.
  void post_send(int status, std::string body, Headers extra);

  std::shared_ptr<net::io_context> ioc_;  // first member: released last
  std::shared_ptr<Session> session_;
  std::shared_ptr<Exchange> ex_;
  std::shared_ptr<ServerState> state_;
};

}  // namespace moeserve::http_impl
