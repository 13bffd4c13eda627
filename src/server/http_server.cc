// HttpServer on Boost.Beast. One acceptor and `io_threads` threads run one io_context; every
// connection is a Session whose steps all run on the connection's strand. A request is read
// header first (limits are enforced before the body is read), checked for the API key, and
// handed to the handler with a Responder. Responder calls come from any thread; they only flip
// the request's Exchange state under its mutex and post the work onto the strand, where a write
// queue sends one item at a time. While a response is pending or streaming, a small read stays
// armed on the socket so that a client that hangs up is noticed (on_close) at once.
#include "server/http_server.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "server/api_key.h"
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace moeserve {

const std::string* HttpRequest::header(std::string_view name) const {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  for (const auto& [key, value] : headers) {
    if (key.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < key.size() && same; ++i) same = key[i] == lower(name[i]);
    if (same) return &value;
  }
  return nullptr;
}

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr char kServerName[] = "moeserve";
constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
// After an error that leaves part of a request unread, the connection reads and drops what the
// client still sends for at most this long before closing, so that the client reads the error
// response instead of a connection reset.
constexpr auto kLingerTime = std::chrono::seconds(2);
// While a response is in progress, the disconnect watch reads this much at a time and stops
// reading (until the response ends) once this much of a next request is buffered.
constexpr size_t kWatchReadBytes = 512;
constexpr size_t kMaxBufferedWhileBusy = 64u << 10;
// The destructor gives open connections this long to close before it stops the I/O loop.
constexpr auto kShutdownGrace = std::chrono::seconds(2);

std::string to_string(beast::string_view s) { return std::string(s.data(), s.size()); }

// An OpenAI-style error body.
std::string error_body(const std::string& message, const std::string& type, nlohmann::json code) {
  nlohmann::json body = {
      {"error",
       {{"message", message}, {"type", type}, {"param", nullptr}, {"code", std::move(code)}}}};
  return body.dump();
}

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

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<ServerState> state,
          std::weak_ptr<net::io_context> ioc)
      : state_(std::move(state)), ioc_(std::move(ioc)), stream_(std::move(socket)) {
    executor_ = stream_.get_executor();
    beast::error_code ec;
    // Stream chunks are small and latency matters: no Nagle delay behind a delayed ACK.
    stream_.socket().set_option(tcp::no_delay(true), ec);
    const tcp::endpoint peer = stream_.socket().remote_endpoint(ec);
    if (!ec) {
      const std::string ip = peer.address().to_string();
      remote_ =
          absl::StrCat(peer.address().is_v6() ? absl::StrCat("[", ip, "]") : ip, ":", peer.port());
    }
  }

  ~Session() {
    if (closed_) return;
    // Destroyed without close(): the I/O loop was stopped under it. Mark the request closed, but
    // call no user callback from here.
    if (exchange_) {
      std::function<void()> dropped;  // destroyed after the lock is released
      std::lock_guard<std::mutex> lock(exchange_->mu);
      if (!exchange_->complete) exchange_->closed = true;
      dropped.swap(exchange_->on_close);
    }
    unregister();
  }

  const net::any_io_executor& executor() const { return executor_; }

  void start() {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      id_ = state_->next_id++;
      state_->sessions[id_] = weak_from_this();
    }
    state_->n_connections++;
    net::dispatch(executor_, [self = shared_from_this()] { self->read_header(); });
  }

  // ---- the rest runs on the strand only ----

  void close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    // Drop what is queued, except the item being written: its completion will drop it.
    while (out_.size() > (writing_ ? 1u : 0u)) {
      if (out_.back().exchange) out_.back().exchange->pending_bytes -= out_.back().n_accounted;
      out_.pop_back();
    }
    if (exchange_) {
      std::function<void()> on_close;  // called, or destroyed, after the lock is released
      bool notify = false;
      {
        std::lock_guard<std::mutex> lock(exchange_->mu);
        notify = !exchange_->complete;
        if (notify) exchange_->closed = true;
        on_close.swap(exchange_->on_close);
      }
      exchange_.reset();
      if (notify && on_close) {
        try {
          on_close();
        } catch (const std::exception& e) {
          MS_LOG_WARN("HTTP on_close callback threw: {}", e.what());
        }
      }
    }
    unregister();
  }

  void send_response(const std::shared_ptr<Exchange>& ex, int status, std::string content_type,
                     std::string body, Headers extra, size_t n_accounted) {
    if (closed_ || ex != exchange_) {
      ex->pending_bytes -= n_accounted;
      return;
    }
    if (status < 100 || status > 599) status = 500;
    auto res = std::make_unique<http::response<http::string_body>>();
    res->version(ex->version);
    res->result(static_cast<unsigned>(status));
    set_common_headers(*res, content_type);
    for (auto& [name, value] : extra) res->set(name, value);
    // These statuses carry no body (and Beast refuses to frame one).
    if (status < 200 || status == 204 || status == 304)
      res->body().clear();
    else
      res->body() = std::move(body);
    res->keep_alive(ex->keep_alive && !ex->close_after);
    res->prepare_payload();
    if (ex->head) res->body().clear();  // Content-Length stays that of the full body
    OutItem item;
    item.kind = OutItem::Kind::kResponse;
    item.exchange = ex;
    item.response = std::move(res);
    item.n_accounted = n_accounted;
    enqueue(std::move(item));
  }

  void start_stream(const std::shared_ptr<Exchange>& ex, std::string content_type) {
    if (closed_ || ex != exchange_) return;
    auto header = std::make_unique<http::response<http::empty_body>>(http::status::ok, ex->version);
    set_common_headers(*header, content_type);
    header->set(http::field::cache_control, "no-cache");
    header->set("X-Accel-Buffering", "no");
    if (ex->version >= 11) {
      header->chunked(true);
      header->keep_alive(ex->keep_alive);
    } else {
      // HTTP/1.0 has no chunked encoding: the body runs until the connection closes.
      ex->close_after = true;
      header->keep_alive(false);
    }
    OutItem item;
    item.kind = OutItem::Kind::kStreamHeader;
    item.exchange = ex;
    item.serializer = std::make_unique<http::response_serializer<http::empty_body>>(*header);
    item.header = std::move(header);
    enqueue(std::move(item));
  }

  void write_chunk(const std::shared_ptr<Exchange>& ex, std::string data) {
    if (closed_ || ex != exchange_) {
      ex->pending_bytes -= data.size();
      return;
    }
    OutItem item;
    item.kind = OutItem::Kind::kChunk;
    item.exchange = ex;
    item.n_accounted = data.size();
    item.data = std::move(data);
    enqueue(std::move(item));
  }

  void end_stream(const std::shared_ptr<Exchange>& ex) {
    if (closed_ || ex != exchange_) return;
    OutItem item;
    item.kind = OutItem::Kind::kLastChunk;
    item.exchange = ex;
    enqueue(std::move(item));
  }

  // The handler let go of a stream it never ended: the response cannot be completed.
  void abort(const std::shared_ptr<Exchange>& ex) {
    if (ex == exchange_) close();
  }

 private:
  template <class Body>
  void set_common_headers(http::response<Body>& res, const std::string& content_type) {
    res.set(http::field::server, kServerName);
    if (!content_type.empty()) res.set(http::field::content_type, content_type);
    const std::string& origin = state_->options.cors_allow_origin;
    if (!origin.empty()) {
      res.set(http::field::access_control_allow_origin, origin);
      if (origin != "*") res.set(http::field::vary, "Origin");
    }
  }

  void unregister() {
    state_->n_connections--;
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->sessions.erase(id_);
  }

  // ---- reading a request ----

  void read_header() {
    if (closed_) return;
    const HttpServerOptions& options = state_->options;
    if (buffer_.size() == 0 && buffer_.capacity() > kMaxBufferedWhileBusy) buffer_.shrink_to_fit();
    parser_.emplace();
    parser_->header_limit(
        static_cast<std::uint32_t>(std::min<size_t>(options.max_header_bytes, UINT32_MAX)));
    parser_->body_limit(static_cast<std::uint64_t>(options.max_body_bytes));
    stream_.expires_after(options.idle_timeout);
    reading_ = true;
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, size_t) {
    reading_ = false;
    if (closed_) return;
    if (ec) return on_read_error(ec);
    const auto content_length = parser_->content_length();
    if (content_length && *content_length > state_->options.max_body_bytes) {
      return on_read_error(http::error::body_limit);
    }
    const auto expect = parser_->get()[http::field::expect];
    if (!parser_->is_done() && beast::iequals(expect, "100-continue")) {
      stream_.expires_after(state_->options.idle_timeout);
      net::async_write(stream_, net::buffer(kContinue, sizeof(kContinue) - 1),
                       [self = shared_from_this()](beast::error_code ec, size_t) {
                         if (self->closed_) return;
                         if (ec) return self->close();
                         self->read_body();
                       });
      return;
    }
    read_body();
  }

  void read_body() {
    if (parser_->is_done()) return on_request();
    stream_.expires_after(state_->options.idle_timeout);
    reading_ = true;
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::on_body, shared_from_this()));
  }

  void on_body(beast::error_code ec, size_t) {
    reading_ = false;
    if (closed_) return;
    if (ec) return on_read_error(ec);
    on_request();
  }

  void on_read_error(beast::error_code ec) {
    const HttpServerOptions& options = state_->options;
    if (ec == http::error::header_limit) {
      return respond_error(431, absl::StrCat("Request header fields too large (limit ",
                                             options.max_header_bytes, " bytes)"));
    }
    if (ec == http::error::body_limit) {
      return respond_error(
          413, absl::StrCat("Request body too large (limit ", options.max_body_bytes, " bytes)"));
    }
    const bool parse_error =
        ec.category() == http::make_error_code(http::error::bad_method).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message;
    if (parse_error) {
      return respond_error(400, absl::StrCat("Malformed HTTP request: ", ec.message()));
    }
    // The client closed, went silent past the idle timeout, or the socket failed.
    close();
  }

  // A transport-level error: answered here, then the connection closes.
  void respond_error(int status, const std::string& message) {
    auto ex = std::make_shared<Exchange>();
    ex->keep_alive = false;
    ex->close_after = true;
    ex->linger = true;
    ex->phase = Exchange::Phase::kSent;
    exchange_ = ex;
    send_response(ex, status, "application/json",
                  error_body(message, "invalid_request_error", status), {}, 0);
  }

  void on_request() {
    http::request<http::string_body> message = parser_->release();
    parser_.reset();
    auto ex = std::make_shared<Exchange>();
    ex->version = message.version();
    ex->keep_alive = message.keep_alive();
    ex->head = message.method() == http::verb::head;
    exchange_ = ex;

    HttpRequest request;
    request.method = to_string(message.method_string());
    request.target = to_string(message.target());
    request.path = request.target.substr(0, request.target.find('?'));
    for (const auto& field : message) {
      std::string name = to_string(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      request.headers.emplace_back(std::move(name), to_string(field.value()));
    }
    request.body = std::move(message.body());
    request.remote = remote_;

    const HttpServerOptions& options = state_->options;
    if (!options.cors_allow_origin.empty() && message.method() == http::verb::options) {
      return respond_preflight(ex, request);
    }
    if (!authorized(request)) {
      ex->phase = Exchange::Phase::kSent;
      return send_response(
          ex, 401, "application/json",
          error_body("Incorrect or missing API key: send 'Authorization: Bearer <key>'.",
                     "invalid_request_error", "invalid_api_key"),
          {{"WWW-Authenticate", "Bearer"}}, 0);
    }
    std::shared_ptr<net::io_context> ioc = ioc_.lock();
    if (!ioc || state_->stopped) return close();
    start_watch();
    call_handler(std::move(request), std::move(ioc), ex);
  }

  bool authorized(const HttpRequest& request) const {
    const HttpServerOptions& options = state_->options;
    if (options.api_key.empty()) return true;
    // Exact comparison on the raw path: "//health" or "/%68ealth" are not "/health".
    for (const std::string& path : options.public_paths) {
      if (request.path == path) return true;
    }
    const std::string* value = request.header("authorization");
    return value != nullptr && bearer_matches(*value, options.api_key);
  }

  void respond_preflight(const std::shared_ptr<Exchange>& ex, const HttpRequest& request) {
    ex->phase = Exchange::Phase::kSent;
    const std::string* asked = request.header("access-control-request-headers");
    send_response(ex, 204, "", "",
                  {{"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
                   {"Access-Control-Allow-Headers",
                    asked != nullptr ? *asked : "Authorization, Content-Type"},
                   {"Access-Control-Max-Age", "600"}},
                  0);
  }

  void call_handler(HttpRequest request, std::shared_ptr<net::io_context> ioc,
                    const std::shared_ptr<Exchange>& ex);

  // ---- the disconnect watch ----

  // While a response is pending, a small read stays armed: EOF or an error means the client is
  // gone. Bytes that arrive (a pipelined next request) stay in buffer_ for the parser.
  void start_watch() {
    if (reading_ || closed_ || buffer_.size() >= kMaxBufferedWhileBusy) return;
    stream_.expires_never();  // clients are silent while they wait; only the read timer is idle
    reading_ = watching_ = true;
    stream_.async_read_some(buffer_.prepare(kWatchReadBytes),
                            beast::bind_front_handler(&Session::on_watch, shared_from_this()));
  }

  void on_watch(beast::error_code ec, size_t n) {
    reading_ = watching_ = false;
    if (closed_) return;
    if (!ec) buffer_.commit(n);
    if (exchange_) {  // the response is still in progress
      if (ec && exchange_->final_queued) {
        // The client may have read the whole response already (its write completion has not
        // run yet) or may have only half-closed: finish writing, then close.
        peer_gone_ = true;
        return;
      }
      if (ec) {
        MS_LOG_DEBUG("HTTP client {} went away: {}", remote_, ec.message());
        return close();
      }
      return start_watch();
    }
    // The response finished and cancelled the watch (or data came): read the next request.
    if (ec && ec != net::error::operation_aborted) return close();
    read_header();
  }

  // ---- writing ----

  void enqueue(OutItem item) {
    if (item.kind == OutItem::Kind::kResponse || item.kind == OutItem::Kind::kLastChunk) {
      item.exchange->final_queued = true;
    }
    out_.push_back(std::move(item));
    write_next();
  }

  void write_next() {
    if (writing_ || out_.empty() || closed_) return;
    writing_ = true;
    OutItem& item = out_.front();
    const bool chunked = item.exchange->version >= 11;
    stream_.expires_after(state_->options.idle_timeout);  // a pending read keeps its own timer
    auto done = beast::bind_front_handler(&Session::on_write, shared_from_this());
    switch (item.kind) {
      case OutItem::Kind::kResponse:
        http::async_write(stream_, *item.response, std::move(done));
        break;
      case OutItem::Kind::kStreamHeader:
        http::async_write_header(stream_, *item.serializer, std::move(done));
        break;
      case OutItem::Kind::kChunk:
        if (chunked) {
          net::async_write(stream_, http::make_chunk(net::buffer(item.data)), std::move(done));
        } else {
          net::async_write(stream_, net::buffer(item.data), std::move(done));
        }
        break;
      case OutItem::Kind::kLastChunk:
        if (chunked) {
          net::async_write(stream_, http::make_chunk_last(), std::move(done));
        } else {
          net::async_write(stream_, net::const_buffer(), std::move(done));
        }
        break;
    }
  }

  void on_write(beast::error_code ec, size_t) {
    writing_ = false;
    OutItem item = std::move(out_.front());
    out_.pop_front();
    item.exchange->pending_bytes -= item.n_accounted;
    if (closed_) return;
    if (ec) {
      MS_LOG_DEBUG("HTTP write to {} failed: {}", remote_, ec.message());
      return close();
    }
    if (item.kind == OutItem::Kind::kResponse || item.kind == OutItem::Kind::kLastChunk) {
      finish(item.exchange);
      if (closed_) return;
    }
    write_next();
  }

  // The whole response of `ex` is written.
  void finish(const std::shared_ptr<Exchange>& ex) {
    std::function<void()> dropped;  // destroyed after the lock is released
    {
      std::lock_guard<std::mutex> lock(ex->mu);
      ex->complete = true;
      dropped.swap(ex->on_close);
    }
    if (exchange_ == ex) exchange_.reset();
    if (peer_gone_) return close();
    if (ex->linger && !reading_) return linger();
    if (ex->close_after || !ex->keep_alive) return close();
    if (watching_) {
      // on_watch runs next (cancelled, or with data that came meanwhile) and reads on.
      beast::error_code ignored;
      stream_.socket().cancel(ignored);
      return;
    }
    if (!reading_) read_header();
  }

  // Stops sending, reads and drops what the client still sends for a while, then closes.
  void linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(kLingerTime);  // one deadline for the whole drain
    read_discard();
  }

  void read_discard() {
    buffer_.consume(buffer_.size());
    reading_ = true;
    stream_.async_read_some(buffer_.prepare(16u << 10),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              self->reading_ = false;
                              if (self->closed_) return;
                              if (ec) return self->close();
                              self->read_discard();
                            });
  }

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

// The handler's view of one exchange. It holds the io_context so that posting to the strand
// stays valid however long the handler keeps it, even past the server.
class Responder final : public HttpResponder {
 public:
  Responder(std::shared_ptr<net::io_context> ioc, std::shared_ptr<Session> session,
            std::shared_ptr<Exchange> exchange, std::shared_ptr<ServerState> state)
      : ioc_(std::move(ioc)),
        session_(std::move(session)),
        ex_(std::move(exchange)),
        state_(std::move(state)) {}

  ~Responder() override {
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

  void send(int status, std::string content_type, std::string body,
            Headers extra_headers) override {
    std::lock_guard<std::mutex> lock(ex_->mu);
    if (ex_->phase != Exchange::Phase::kWaiting) {
      MS_LOG_WARN("HttpResponder::send after the response was started: ignored");
      return;
    }
    ex_->phase = Exchange::Phase::kSent;
    if (ex_->closed) return;
    ex_->pending_bytes += body.size();
    net::post(session_->executor(),
              [s = session_, ex = ex_, status, type = std::move(content_type),
               body = std::move(body), extra = std::move(extra_headers)]() mutable {
                const size_t n = body.size();
                s->send_response(ex, status, std::move(type), std::move(body), std::move(extra), n);
              });
  }

  void start_stream(std::string content_type) override {
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

  bool write(std::string data) override {
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

  void end() override {
    std::lock_guard<std::mutex> lock(ex_->mu);
    if (ex_->phase != Exchange::Phase::kStreaming) return;
    ex_->phase = Exchange::Phase::kEnded;
    if (ex_->closed) return;
    net::post(session_->executor(), [s = session_, ex = ex_] { s->end_stream(ex); });
  }

  size_t pending_bytes() const override { return ex_->pending_bytes.load(); }

  bool closed() const override {
    std::lock_guard<std::mutex> lock(ex_->mu);
    return ex_->closed || state_->stopped;
  }

  void on_close(std::function<void()> fn) override {
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

  void post(std::function<void()> fn) override { net::post(session_->executor(), std::move(fn)); }

  // For the server: answer after a handler threw, if it had not answered yet.
  void fail(const std::string& message) {
    std::lock_guard<std::mutex> lock(ex_->mu);
    if (ex_->phase != Exchange::Phase::kWaiting || ex_->closed) return;
    ex_->phase = Exchange::Phase::kSent;
    post_send(500, error_body(message, "server_error", 500), {});
  }

 private:
  // Called with ex_->mu held.
  void post_send(int status, std::string body, Headers extra) {
    ex_->pending_bytes += body.size();
    net::post(session_->executor(), [s = session_, ex = ex_, status, body = std::move(body),
                                     extra = std::move(extra)]() mutable {
      const size_t n = body.size();
      s->send_response(ex, status, "application/json", std::move(body), std::move(extra), n);
    });
  }

  std::shared_ptr<net::io_context> ioc_;  // first member: released last
  std::shared_ptr<Session> session_;
  std::shared_ptr<Exchange> ex_;
  std::shared_ptr<ServerState> state_;
};

void Session::call_handler(HttpRequest request, std::shared_ptr<net::io_context> ioc,
                           const std::shared_ptr<Exchange>& ex) {
  const std::string what = absl::StrCat(request.method, " ", request.target);
  auto responder = std::make_shared<Responder>(std::move(ioc), shared_from_this(), ex, state_);
  try {
    state_->handler(std::move(request), responder);
  } catch (const std::exception& e) {
    MS_LOG_ERROR("HTTP handler threw on {}: {}", what, e.what());
    responder->fail("Internal server error.");
  } catch (...) {
    MS_LOG_ERROR("HTTP handler threw a non-exception on {}", what);
    responder->fail("Internal server error.");
  }
}

class HttpServerImpl final : public HttpServer {
 public:
  HttpServerImpl(const HttpServerOptions& options, HttpHandler handler)
      : state_(std::make_shared<ServerState>()),
        ioc_(std::make_shared<net::io_context>(options.io_threads)),
        work_(net::make_work_guard(*ioc_)),
        accept_strand_(net::make_strand(*ioc_)),
        acceptor_(accept_strand_),
        accept_retry_(accept_strand_) {
    state_->options = options;
    state_->handler = std::move(handler);
  }

  ~HttpServerImpl() override {
    stop_accepting();
    state_->stopped = true;
    std::vector<std::shared_ptr<Session>> live;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      for (auto& [id, session] : state_->sessions) {
        if (auto s = session.lock()) live.push_back(std::move(s));
      }
    }
    for (auto& s : live) net::post(s->executor(), [s] { s->close(); });
    live.clear();
    const auto deadline = std::chrono::steady_clock::now() + kShutdownGrace;
    while (!threads_.empty() && state_->n_connections.load() > 0 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    work_.reset();
    ioc_->stop();
    for (std::thread& t : threads_) {
      if (t.get_id() == std::this_thread::get_id()) {
        t.detach();  // destroyed from a handler: this thread returns into a stopped loop
      } else {
        t.join();
      }
    }
  }

  Status listen(const tcp::endpoint& endpoint, const std::string& name) {
    beast::error_code ec;
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (!ec) port_ = acceptor_.local_endpoint(ec).port();
    if (ec)
      return absl::UnavailableError(absl::StrCat("cannot listen on ", name, ": ", ec.message()));
    return absl::OkStatus();
  }

  void run(int n_threads) {
    net::dispatch(accept_strand_, [this] { do_accept(); });
    for (int i = 0; i < n_threads; ++i) {
      threads_.emplace_back([ioc = ioc_] {
        for (;;) {
          try {
            ioc->run();
            return;
          } catch (const std::exception& e) {
            MS_LOG_ERROR("HTTP I/O thread: uncaught exception: {}", e.what());
          }
        }
      });
    }
  }

  int port() const override { return port_; }

  void stop_accepting() override {
    if (!accepting_.exchange(false)) return;
    if (threads_.empty()) {
      beast::error_code ignored;
      acceptor_.close(ignored);
      return;
    }
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> closed = done->get_future();
    net::post(accept_strand_, [this, done] {
      beast::error_code ignored;
      acceptor_.close(ignored);
      accept_retry_.cancel();
      done->set_value();
    });
    // From an I/O thread the close runs once the caller returns; elsewhere, wait for it.
    if (!ioc_->get_executor().running_in_this_thread()) {
      closed.wait_for(std::chrono::seconds(5));
    }
  }

  int n_connections() const override { return state_->n_connections.load(); }

 private:
  void do_accept() {
    acceptor_.async_accept(net::make_strand(*ioc_),
                           beast::bind_front_handler(&HttpServerImpl::on_accept, this));
  }

  void on_accept(beast::error_code ec, tcp::socket socket) {
    if (!accepting_ || !acceptor_.is_open()) return;
    if (ec) {
      // Out of file descriptors and the like: back off instead of spinning.
      MS_LOG_WARN("HTTP accept failed: {}", ec.message());
      accept_retry_.expires_after(std::chrono::milliseconds(100));
      accept_retry_.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec && accepting_) do_accept();
      });
      return;
    }
    std::make_shared<Session>(std::move(socket), state_, ioc_)->start();
    do_accept();
  }

  std::shared_ptr<ServerState> state_;
  std::shared_ptr<net::io_context> ioc_;  // before the I/O objects: destroyed after them
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  net::strand<net::io_context::executor_type> accept_strand_;
  tcp::acceptor acceptor_;
  net::steady_timer accept_retry_;
  std::atomic<bool> accepting_{true};
  std::vector<std::thread> threads_;
  int port_ = 0;
};

}  // namespace

StatusOr<std::unique_ptr<HttpServer>> HttpServer::start(const HttpServerOptions& options,
                                                        HttpHandler handler) {
  if (!handler) return absl::InvalidArgumentError("HttpServer: no handler");
  if (options.io_threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("HttpServer: io_threads must be >= 1, got ", options.io_threads));
  }
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("HttpServer: bad port ", options.port));
  }
  if (options.max_header_bytes < 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("HttpServer: max_header_bytes must be >= 64, got ", options.max_header_bytes));
  }
  if (options.idle_timeout.count() <= 0) {
    return absl::InvalidArgumentError("HttpServer: idle_timeout must be positive");
  }
  beast::error_code ec;
  const std::string host = options.host == "localhost" ? "127.0.0.1" : options.host;
  const net::ip::address address = net::ip::make_address(host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("HttpServer: host '", options.host, "' is not an IPv4 or IPv6 address"));
  }
  const std::string name =
      absl::StrCat(address.is_v6() ? absl::StrCat("[", host, "]") : host, ":", options.port);
  auto server = std::make_unique<HttpServerImpl>(options, std::move(handler));
  RETURN_IF_ERROR(
      server->listen(tcp::endpoint(address, static_cast<uint16_t>(options.port)), name));
  server->run(options.io_threads);
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace moeserve
