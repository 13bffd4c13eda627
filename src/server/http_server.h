// An asynchronous HTTP/1.1 server (Boost.Beast) that knows nothing about OpenAI: it accepts
// connections, enforces transport limits (header and body size, idle timeouts), checks the API
// key, and hands each request to a handler with an HttpResponder for the answer, which may be
// one response or a stream of chunks (Server-Sent Events).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moeserve/status.h"

namespace moeserve {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                        // 0: pick a free port (see HttpServer::port())
  int io_threads = 2;                     // threads running the I/O loop
  size_t max_body_bytes = 8u << 20;       // larger bodies: 413
  size_t max_header_bytes = 16u << 10;    // larger request line + headers: 431
  std::chrono::seconds idle_timeout{60};  // a connection silent this long (reading) is closed
  std::string api_key;                    // "" = no auth; else "Authorization: Bearer <key>"
  std::vector<std::string> public_paths = {"/health", "/metrics"};  // exempt from auth
  std::string cors_allow_origin;  // "" = no CORS headers (default); "*" or an origin
};

struct HttpRequest {
  std::string method;  // "GET", "POST", …
  std::string target;  // as sent, e.g. "/v1/models?x=1"
  std::string path;    // target without the query string, not decoded or normalised
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string remote;  // "ip:port" of the client, for logs

  // The first header called `name` (lower-case), or nullptr.
  const std::string* header(std::string_view name) const;
};

// The handler's way to answer. Thread-safe: any thread may call it; calls are serialised onto
// the connection. Exactly one of send() or start_stream() … end() per request.
class HttpResponder {
 public:
  virtual ~HttpResponder() = default;
  // A whole response. `content_type` e.g. "application/json".
  virtual void send(int status, std::string content_type, std::string body,
                    std::vector<std::pair<std::string, std::string>> extra_headers = {}) = 0;
  // Starts a chunked response (status 200) with this content type ("text/event-stream").
  virtual void start_stream(std::string content_type) = 0;
  // Queues `data` as the next chunk. Returns false when the client is gone (the data is dropped).
  virtual bool write(std::string data) = 0;
  // Ends the stream (the terminating chunk); the connection then serves its next request.
  virtual void end() = 0;
  // Bytes queued and not yet written to the socket (a slow reader makes this grow).
  virtual size_t pending_bytes() const = 0;
  // True once the client has disconnected or the connection failed.
  virtual bool closed() const = 0;
  // Called once, on an I/O thread, when the client disconnects before end()/send() completed.
  // If the connection is already closed, `fn` runs at once on the calling thread.
  virtual void on_close(std::function<void()> fn) = 0;
  // Runs `fn` later on the connection's executor (where its I/O and on_close run, one at a
  // time), never inline: producers on other threads (the engine's) hand their formatting and
  // writes over with it. Once the server's I/O threads have stopped, `fn` is dropped
  // without running, so it should not own what it would finish (the responder included).
  virtual void post(std::function<void()> fn) = 0;
};

using HttpHandler = std::function<void(HttpRequest, std::shared_ptr<HttpResponder>)>;

class HttpServer {
 public:
  // Binds and starts the I/O threads. Errors: the address cannot be bound (names host:port).
  static StatusOr<std::unique_ptr<HttpServer>> start(const HttpServerOptions& options,
                                                     HttpHandler handler);
  virtual ~HttpServer() = default;  // stops accepting, closes connections, joins threads

  virtual int port() const = 0;  // the bound port
  // Stops accepting new connections; open connections go on (for draining).
  virtual void stop_accepting() = 0;
  // Connections currently open.
  virtual int n_connections() const = 0;
};

}  // namespace moeserve
