// Session: one HTTP connection: reading requests, the disconnect watch and the write queue
// (see http_session.h).
#include "server/http_session.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <exception>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "server/api_key.h"
#include "server/http_responder.h"
#include <boost/asio/dispatch.hpp>
#include <boost/asio/write.hpp>

namespace moeserve::http_impl {
namespace {

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

std::string to_string(beast::string_view s) { return std::string(s.data(), s.size()); }

}  // namespace

std::string error_body(const std::string& message, const std::string& type, nlohmann::json code) {
  nlohmann::json body = {
      {"error",
       {{"message", message}, {"type", type}, {"param", nullptr}, {"code", std::move(code)}}}};
  return body.dump();
}

template <class Body>
void Session::set_common_headers(http::response<Body>& res, const std::string& content_type) {
  res.set(http::field::server, kServerName);
  if (!content_type.empty()) res.set(http::field::content_type, content_type);
  const std::string& origin = state_->options.cors_allow_origin;
  if (!origin.empty()) {
    res.set(http::field::access_control_allow_origin, origin);
    if (origin != "*") res.set(http::field::vary, "Origin");
  }
}

Session::Session(tcp::socket socket, std::shared_ptr<ServerState> state,
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

Session::~Session() {
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

void Session::start() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    id_ = state_->next_id++;
    state_->sessions[id_] = weak_from_this();
  }
  state_->n_connections++;
  net::dispatch(executor_, [self = shared_from_this()] { self->read_header(); });
}

void Session::close() {
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

void Session::send_response(const std::shared_ptr<Exchange>& ex, int status,
                            std::string content_type, std::string body, Headers extra,
                            size_t n_accounted) {
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

void Session::start_stream(const std::shared_ptr<Exchange>& ex, std::string content_type) {
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

void Session::write_chunk(const std::shared_ptr<Exchange>& ex, std::string data) {
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

void Session::end_stream(const std::shared_ptr<Exchange>& ex) {
  if (closed_ || ex != exchange_) return;
  OutItem item;
  item.kind = OutItem::Kind::kLastChunk;
  item.exchange = ex;
  enqueue(std::move(item));
}

void Session::abort(const std::shared_ptr<Exchange>& ex) {
  if (ex == exchange_) close();
}

void Session::unregister() {
  state_->n_connections--;
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->sessions.erase(id_);
}

void Session::read_header() {
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

void Session::on_header(beast::error_code ec, size_t) {
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

void Session::read_body() {
  if (parser_->is_done()) return on_request();
  stream_.expires_after(state_->options.idle_timeout);
  reading_ = true;
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&Session::on_body, shared_from_this()));
}

void Session::on_body(beast::error_code ec, size_t) {
  reading_ = false;
  if (closed_) return;
  if (ec) return on_read_error(ec);
  on_request();
}

void Session::on_read_error(beast::error_code ec) {
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

void Session::respond_error(int status, const std::string& message) {
  auto ex = std::make_shared<Exchange>();
  ex->keep_alive = false;
  ex->close_after = true;
  ex->linger = true;
  ex->phase = Exchange::Phase::kSent;
  exchange_ = ex;
  send_response(ex, status, "application/json",
                error_body(message, "invalid_request_error", status), {}, 0);
}

void Session::on_request() {
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

bool Session::authorized(const HttpRequest& request) const {
  const HttpServerOptions& options = state_->options;
  if (options.api_key.empty()) return true;
  // Exact comparison on the raw path: "//health" or "/%68ealth" are not "/health".
  for (const std::string& path : options.public_paths) {
    if (request.path == path) return true;
  }
  const std::string* value = request.header("authorization");
  return value != nullptr && bearer_matches(*value, options.api_key);
}

void Session::respond_preflight(const std::shared_ptr<Exchange>& ex, const HttpRequest& request) {
  ex->phase = Exchange::Phase::kSent;
  const std::string* asked = request.header("access-control-request-headers");
  send_response(
      ex, 204, "", "",
      {{"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
       {"Access-Control-Allow-Headers", asked != nullptr ? *asked : "Authorization, Content-Type"},
       {"Access-Control-Max-Age", "600"}},
      0);
}

void Session::start_watch() {
  if (reading_ || closed_ || buffer_.size() >= kMaxBufferedWhileBusy) return;
  stream_.expires_never();  // clients are silent while they wait; only the read timer is idle
  reading_ = watching_ = true;
  stream_.async_read_some(buffer_.prepare(kWatchReadBytes),
                          beast::bind_front_handler(&Session::on_watch, shared_from_this()));
}

void Session::on_watch(beast::error_code ec, size_t n) {
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

void Session::enqueue(OutItem item) {
  if (item.kind == OutItem::Kind::kResponse || item.kind == OutItem::Kind::kLastChunk) {
    item.exchange->final_queued = true;
  }
  out_.push_back(std::move(item));
  write_next();
}

void Session::write_next() {
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

void Session::on_write(beast::error_code ec, size_t) {
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

void Session::finish(const std::shared_ptr<Exchange>& ex) {
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

void Session::linger() {
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.expires_after(kLingerTime);  // one deadline for the whole drain
  read_discard();
}

void Session::read_discard() {
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

}  // namespace moeserve::http_impl
