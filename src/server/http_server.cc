// HttpServer on Boost.Beast: one acceptor and `io_threads` threads run one io_context; every
// accepted connection becomes a Session (server/http_session.h), whose steps all run on the
// connection's strand.
#include "server/http_server.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "server/http_session.h"
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

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
using tcp = net::ip::tcp;
using http_impl::ServerState;
using http_impl::Session;

// The destructor gives open connections this long to close before it stops the I/O loop.
constexpr auto kShutdownGrace = std::chrono::seconds(2);

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
