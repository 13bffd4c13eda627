// The connections of HttpServer (server/http_server.h) on Boost.Beast: what a server's
// connections share (ServerState), one request and its response (Exchange), the write queue's
// items (OutItem) and the Session that drives one connection. Every step of a Session runs on
// the connection's strand. A request is read header first (limits are enforced before the body
// is read), checked for the API key, and handed to the handler with a Responder
// (server/http_responder.h); the Responder's calls post their work onto the strand, where the
// write queue sends one item at a time. While a response is pending or streaming, a small read
// stays armed on the socket so that a client that hangs up is noticed (on_close) at once.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "server/http_server.h"
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace moeserve::http_impl {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Headers = std::vector<std::pair<std::string, std::string>>;

// An OpenAI-style error body, for the errors the transport answers itself.
std::string error_body(const std::string& message, const std::string& type, nlohmann::json code);

class Session;

// What every connection of one server shares. Sessions hold it; it holds them only weakly.
struct ServerState {
  HttpServerOptions options;
  HttpHandler handler;
  std::atomic<bool> stopped{false};
  std::atomic<int> n_connections{0};
  std::mutex mu;  // guards the two below
  uint64_t next_id = 0;
  std::unordered_map<uint64_t, std::weak_ptr<Session>> sessions;
};

// One request and its response, shared by the Session and the handler's Responder.
struct Exchange {
  enum class Phase { kWaiting, kSent, kStreaming, kEnded };
  // Fixed when the request has been read.
  unsigned version = 11;
  bool keep_alive = true;
  bool head = false;
  // The handler's side, guarded by mu.
  std::mutex mu;
  Phase phase = Phase::kWaiting;
  bool closed = false;    // the connection went away before the response was written
  bool complete = false;  // the whole response was written
  std::function<void()> on_close;
  std::atomic<size_t> pending_bytes{0};
  // Strand only.
  bool close_after = false;   // close the connection once the response is written
  bool linger = false;        // … after reading and dropping what the client still sends
  bool final_queued = false;  // the response's last piece is in the write queue
};

// One piece of output in a connection's write queue.
struct OutItem {
  enum class Kind { kResponse, kStreamHeader, kChunk, kLastChunk };
  Kind kind = Kind::kResponse;
  std::shared_ptr<Exchange> exchange;
  std::unique_ptr<http::response<http::string_body>> response;              // kResponse
  std::unique_ptr<http::response<http::empty_body>> header;                 // kStreamHeader
  std::unique_ptr<http::response_serializer<http::empty_body>> serializer;  // of `header`
  std::string data;                                                         // kChunk
  size_t n_accounted = 0;  // bytes of this item counted in exchange->pending_bytes
};

// One connection. Shared: queued handlers and the Responder of the request in progress hold it.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<ServerState> state,
          std::weak_ptr<net::io_context> ioc);
  ~Session();

  const net::any_io_executor& executor() const { return executor_; }  // the connection's strand
  // Registers the session with the server and starts reading the first request.
  void start();

  // ---- the rest runs on the strand only ----

  // Closes the socket, drops the queued output and tells the request in progress (on_close).
  void close();
  // The Responder's calls. Each does nothing once the connection closed or `ex` is no longer
  // the request in progress (only dropping its `n_accounted` / chunk bytes from pending_bytes).
  void send_response(const std::shared_ptr<Exchange>& ex, int status, std::string content_type,
                     std::string body, Headers extra, size_t n_accounted);
  void start_stream(const std::shared_ptr<Exchange>& ex, std::string content_type);
  void write_chunk(const std::shared_ptr<Exchange>& ex, std::string data);
  void end_stream(const std::shared_ptr<Exchange>& ex);
  // The handler let go of a stream it never ended: the response cannot be completed.
  void abort(const std::shared_ptr<Exchange>& ex);

 private:
  template <class Body>
  void set_common_headers(http::response<Body>& res, const std::string& content_type);
  void unregister();

  // ---- reading a request ----
  void read_header();
  void on_header(beast::error_code ec, size_t);
  void read_body();
  void on_body(beast::error_code ec, size_t);
  void on_read_error(beast::error_code ec);
  // A transport-level error: answered here, then the connection closes.
  void respond_error(int status, const std::string& message);
  void on_request();
  bool authorized(const HttpRequest& request) const;
  void respond_preflight(const std::shared_ptr<Exchange>& ex, const HttpRequest& request);
  void call_handler(HttpRequest request, std::shared_ptr<net::io_context> ioc,
                    const std::shared_ptr<Exchange>& ex);

  // ---- the disconnect watch ----
  // While a response is pending, a small read stays armed: EOF or an error means the client is
  // gone. Bytes that arrive (a pipelined next request) stay in buffer_ for the parser.
  void start_watch();
  void on_watch(beast::error_code ec, size_t n);

  // ---- writing ----
  void enqueue(OutItem item);
  void write_next();
  void on_write(beast::error_code ec, size_t);
  // The whole response of `ex` is written.
  void finish(const std::shared_ptr<Exchange>& ex);
  // Stops sending, reads and drops what the client still sends for a while, then closes.
  void linger();
  void read_discard();

  std::shared_ptr<ServerState> state_;
  std::weak_ptr<net::io_context> ioc_;  // weak: queued handlers hold sessions
  beast::tcp_stream stream_;
  net::any_io_executor executor_;  // the connection's strand
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Exchange> exchange_;  // the request being answered, if any
  std::deque<OutItem> out_;             // front: being written when writing_
  std::string remote_ = "?";
  uint64_t id_ = 0;
  bool reading_ = false;   // a read is pending (header, body, watch or discard)
  bool watching_ = false;  // … and it is the disconnect watch
  bool writing_ = false;
  bool peer_gone_ = false;  // the watch saw EOF or an error after the response was queued
  bool closed_ = false;
};

}  // namespace moeserve::http_impl
