// HttpServer over real loopback sockets: a plain POSIX client (every wait bounded by poll()
// timeouts) sends raw bytes and parses the responses itself, chunked framing included, so the
// checks do not rest on Beast's own parser. Covers request delivery, size limits (413/431),
// malformed requests (400), the API key and path tricks, keep-alive and pipelining, streaming,
// client disconnects, a slow reader, handler exceptions, CORS, idle timeouts and shutdown.
#include "server/http_server.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace moeserve {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::vector<std::string> chunks;  // the chunks of a chunked body, in order
  bool chunked = false;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  bool has_header(const std::string& name) const { return headers.count(name) > 0; }
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A blocking-free HTTP/1.1 client over one TCP connection to 127.0.0.1.
class Client {
 public:
  // `rcvbuf` > 0 shrinks the receive buffer (and so the TCP window) before connecting.
  explicit Client(int port, int rcvbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return;
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      connect_errno_ = errno;
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return fd_ >= 0; }
  int connect_errno() const { return connect_errno_; }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send(const std::string& data, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    size_t done = 0;
    while (done < data.size()) {
      if (!wait(POLLOUT, deadline)) return false;
      const ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads one whole response; nullopt on a timeout or a close before it is complete.
  std::optional<Response> read_response(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    Response r;
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill(deadline)) return std::nullopt;
    }
    const std::string head = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) return std::nullopt;
    r.status = std::stoi(status_line.substr(9, 3));
    while (line_end != std::string::npos) {
      const size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string line = head.substr(start, line_end - start);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) return std::nullopt;
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      r.headers[lower(line.substr(0, colon))] = value;
    }
    if (r.status == 100) return r;
    if (lower(r.header("transfer-encoding")) == "chunked") {
      r.chunked = true;
      for (;;) {
        size_t eol;
        while ((eol = buf_.find("\r\n")) == std::string::npos) {
          if (!fill(deadline)) return std::nullopt;
        }
        const size_t size = std::stoul(buf_.substr(0, eol), nullptr, 16);
        if (size == 0) {
          // The last chunk and an empty trailer.
          while (buf_.size() < eol + 4) {
            if (!fill(deadline)) return std::nullopt;
          }
          if (buf_.compare(eol, 4, "\r\n\r\n") != 0) return std::nullopt;
          buf_.erase(0, eol + 4);
          return r;
        }
        while (buf_.size() < eol + 2 + size + 2) {
          if (!fill(deadline)) return std::nullopt;
        }
        if (buf_.compare(eol + 2 + size, 2, "\r\n") != 0) return std::nullopt;
        r.chunks.push_back(buf_.substr(eol + 2, size));
        r.body += r.chunks.back();
        buf_.erase(0, eol + 2 + size + 2);
      }
    }
    const size_t length =
        r.has_header("content-length") ? std::stoul(r.header("content-length")) : 0;
    while (buf_.size() < length) {
      if (!fill(deadline)) return std::nullopt;
    }
    r.body = buf_.substr(0, length);
    buf_.erase(0, length);
    return r;
  }

  // Reads until `n` more bytes are buffered; they stay buffered for read_response.
  bool read_at_least(size_t n, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    while (buf_.size() < n) {
      if (!fill(deadline)) return false;
    }
    return true;
  }
  const std::string& buffered() const { return buf_; }

  // True when the server closes the connection (EOF or reset) within `timeout`.
  bool wait_closed(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (!wait(POLLIN, deadline)) return false;
      char tmp[4096];
      const ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return true;
    }
  }

 private:
  bool wait(short events, Clock::time_point deadline) {
    if (fd_ < 0) return false;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd_, events, 0};
      const int rc = ::poll(&p, 1, static_cast<int>(left));
      if (rc < 0 && errno == EINTR) continue;
      return rc > 0;
    }
  }

  bool fill(Clock::time_point deadline) {
    if (!wait(POLLIN, deadline)) return false;
    char tmp[65536];
    const ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  int connect_errno_ = 0;
  std::string buf_;
};

// Polls `cond` every few milliseconds until it holds or `timeout` passes.
template <class F>
bool eventually(F cond, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  while (!cond()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

std::string get(const std::string& path, const std::string& extra_headers = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n" + extra_headers + "\r\n";
}

std::string post(const std::string& path, const std::string& body) {
  return "POST " + path + " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Requests the handler saw, for assertions from the test thread.
struct Seen {
  std::mutex mu;
  std::vector<HttpRequest> requests;

  void add(const HttpRequest& r) {
    std::lock_guard<std::mutex> lock(mu);
    requests.push_back(r);
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return requests.size();
  }
  HttpRequest at(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    return requests.at(i);
  }
  bool saw_path(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu);
    return std::any_of(requests.begin(), requests.end(),
                       [&](const HttpRequest& r) { return r.path == path; });
  }
};

HttpServerOptions test_options() {
  HttpServerOptions options;
  options.port = 0;
  options.io_threads = 2;
  return options;
}

std::unique_ptr<HttpServer> start(const HttpServerOptions& options, HttpHandler handler) {
  auto server = HttpServer::start(options, std::move(handler));
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  return std::move(*server);
}

// Answers every request with 200 and "<method> <path> <body>", recording it.
HttpHandler echo_handler(Seen* seen) {
  return [seen](HttpRequest request, std::shared_ptr<HttpResponder> responder) {
    seen->add(request);
    responder->send(200, "text/plain", request.method + " " + request.path + " " + request.body,
                    {{"X-Test", "yes"}});
  };
}

TEST(HttpServerTest, GetReachesHandlerWithAllParts) {
  Seen seen;
  auto server = start(test_options(), echo_handler(&seen));
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  Client client(server->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.send(get("/v1/models?x=1&y=2", "X-Custom-Thing: Abc\r\nAccept: */*\r\n")));
  auto r = client.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "GET /v1/models ");
  EXPECT_EQ(r->header("content-type"), "text/plain");
  EXPECT_EQ(r->header("content-length"), "15");
  EXPECT_EQ(r->header("server"), "moeserve");
  EXPECT_EQ(r->header("x-test"), "yes");
  EXPECT_FALSE(r->has_header("access-control-allow-origin"));

  ASSERT_EQ(seen.size(), 1u);
  const HttpRequest req = seen.at(0);
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.target, "/v1/models?x=1&y=2");
  EXPECT_EQ(req.path, "/v1/models");
  ASSERT_NE(req.header("x-custom-thing"), nullptr);
  EXPECT_EQ(*req.header("x-custom-thing"), "Abc");
  ASSERT_NE(req.header("host"), nullptr);
  EXPECT_EQ(*req.header("host"), "localhost");
  EXPECT_EQ(req.header("authorization"), nullptr);
  for (const auto& [name, value] : req.headers) EXPECT_EQ(name, lower(name));
  EXPECT_TRUE(req.body.empty());
  EXPECT_EQ(req.remote.rfind("127.0.0.1:", 0), 0u) << req.remote;
}

TEST(HttpServerTest, PostBodyIsDelivered) {
  Seen seen;
  auto server = start(test_options(), echo_handler(&seen));
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  const std::string body = R"({"model":"m","prompt":"hello \u00e9 world"})";
  ASSERT_TRUE(client.send(post("/v1/completions", body)));
  auto r = client.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "POST /v1/completions " + body);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen.at(0).body, body);
}

TEST(HttpServerTest, BodyAtTheLimitIsAcceptedOverItIs413) {
  Seen seen;
  HttpServerOptions options = test_options();
  options.max_body_bytes = 1000;
  auto server = start(options, echo_handler(&seen));
  ASSERT_NE(server, nullptr);
  {
    Client client(server->port());
    ASSERT_TRUE(client.send(post("/a", std::string(1000, 'x'))));
    auto r = client.read_response();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
  }
  {
    // Content-Length over the limit: refused from the header alone, before any body is sent.
    Client client(server->port());
    ASSERT_TRUE(client.send("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n"));
    auto r = client.read_response();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 413);
    EXPECT_EQ(r->header("content-type"), "application/json");
    EXPECT_NE(r->body.find("\"error\""), std::string::npos) << r->body;
    EXPECT_NE(r->body.find("1000"), std::string::npos) << r->body;
    EXPECT_NE(r->body.find("\"code\":413"), std::string::npos) << r->body;
    EXPECT_TRUE(client.wait_closed());
  }
  {
    // A huge Content-Length with part of the body already on its way.
    Client client(server->port());
    ASSERT_TRUE(client.send("POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n" +
                            std::string(50000, 'y')));
    auto r = client.read_response();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 413);
  }
  {
    // Chunked: no length up front; the parser stops once the chunks pass the limit.
    Client client(server->port());
    std::string request = "POST /d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 5; ++i) request += "12c\r\n" + std::string(300, 'z') + "\r\n";
    request += "0\r\n\r\n";
    ASSERT_TRUE(client.send(request));
    auto r = client.read_response();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 413);
    EXPECT_TRUE(client.wait_closed());
  }
  {
    // Chunked within the limit is delivered whole.
    Client client(server->port());
    ASSERT_TRUE(client.send(
        "POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n"
        "0\r\n\r\n"));
    auto r = client.read_response();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "POST /e abcde");
  }
  EXPECT_FALSE(seen.saw_path("/b"));
  EXPECT_FALSE(seen.saw_path("/c"));
  EXPECT_FALSE(seen.saw_path("/d"));
}

TEST(HttpServerTest, HugeHeaderIs431) {
  Seen seen;
  HttpServerOptions options = test_options();
  options.max_header_bytes = 2048;
  auto server = start(options, echo_handler(&seen));
  ASSERT_NE(server, nullptr);
  {
    Client client(server->port());
    ASSERT_TRUE(client.send(get("/big", "X-Big: " + std::string(4000, 'h') + "\r\n")));
    auto r = client.read_response();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 431);
    EXPECT_NE(r->body.find("\"type\":\"invalid_request_error\""), std::string::npos) << r->body;
    EXPECT_NE(r->body.find("\"code\":431"), std::string::npos) << r->body;
    EXPECT_NE(r->body.find("\"param\":null"), std::string::npos) << r->body;
    EXPECT_TRUE(client.wait_closed());
  }
  {
    // A long header under the limit is fine.
    Client client(server->port());
    ASSERT_TRUE(client.send(get("/small", "X-Big: " + std::string(1500, 'h') + "\r\n")));
    auto r = client.read_response();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
  }
  EXPECT_FALSE(seen.saw_path("/big"));
  EXPECT_TRUE(seen.saw_path("/small"));
}

TEST(HttpServerTest, MalformedRequestsAre400) {
  Seen seen;
  auto server = start(test_options(), echo_handler(&seen));
  ASSERT_NE(server, nullptr);
  const std::vector<std::string> bad = {
      "NOT A REQUEST\r\n\r\n",
      "GET /x HTTP/1.1\r\nHost: x\r\nNo colon in this line\r\n\r\n",
      "GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
      "GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
      "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
  };
  for (const std::string& request : bad) {
    SCOPED_TRACE(request);
    Client client(server->port());
    ASSERT_TRUE(client.send(request));
    auto r = client.read_response();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("\"code\":400"), std::string::npos) << r->body;
    EXPECT_TRUE(client.wait_closed());
  }
  EXPECT_EQ(seen.size(), 0u);
  // The server still serves.
  Client client(server->port());
  ASSERT_TRUE(client.send(get("/ok")));
  auto r = client.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

TEST(HttpServerTest, ApiKeyIsRequiredExceptOnExactPublicPaths) {
  Seen seen;
  HttpServerOptions options = test_options();
  options.api_key = "sk-secret-42";
  auto server = start(options, echo_handler(&seen));
  ASSERT_NE(server, nullptr);

  auto status_of = [&](const std::string& path, const std::string& headers) {
    Client client(server->port());
    if (!client.send(get(path, headers))) return std::make_pair(-1, Response{});
    auto r = client.read_response();
    return r ? std::make_pair(r->status, *r) : std::make_pair(-1, Response{});
  };

  const std::vector<std::string> refused = {
      "",
      "Authorization: Bearer wrong-key-42\r\n",
      "Authorization: Bearer sk-secret-4\r\n",
      "Authorization: Bearer sk-secret-421\r\n",
      "Authorization: bearer sk-secret-42\r\n",
      "Authorization: Basic sk-secret-42\r\n",
      "Authorization: sk-secret-42\r\n",
      "Authorization: Bearer\r\n",
  };
  for (const std::string& headers : refused) {
    SCOPED_TRACE(headers);
    auto [status, r] = status_of("/v1/models", headers);
    EXPECT_EQ(status, 401);
    EXPECT_EQ(r.header("www-authenticate"), "Bearer");
    EXPECT_NE(r.body.find("\"code\":\"invalid_api_key\""), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("\"type\":\"invalid_request_error\""), std::string::npos) << r.body;
  }
  EXPECT_EQ(seen.size(), 0u);

  EXPECT_EQ(status_of("/v1/models", "Authorization: Bearer sk-secret-42\r\n").first, 200);
  EXPECT_EQ(status_of("/health", "").first, 200);
  EXPECT_EQ(status_of("/metrics", "").first, 200);
  EXPECT_EQ(status_of("/health?verbose=1", "").first, 200);
  EXPECT_EQ(seen.size(), 4u);

  for (const std::string path : {"//health", "/health/", "/%68ealth", "/v1/../health", "/HEALTH",
                                 "/health/../v1/models", "/metrics%00"}) {
    SCOPED_TRACE(path);
    EXPECT_EQ(status_of(path, "").first, 401);
    EXPECT_FALSE(seen.saw_path(path));
  }
  EXPECT_EQ(seen.size(), 4u);

  // A 401 keeps the connection: the next request on it, with the key, goes through.
  Client client(server->port());
  ASSERT_TRUE(client.send(get("/v1/x")));
  auto r1 = client.read_response();
  ASSERT_TRUE(r1.has_value());
  EXPECT_EQ(r1->status, 401);
  ASSERT_TRUE(client.send(get("/v1/x", "Authorization: Bearer sk-secret-42\r\n")));
  auto r2 = client.read_response();
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->status, 200);
}

TEST(HttpServerTest, KeepAliveAndPipelining) {
  Seen seen;
  auto server = start(test_options(), echo_handler(&seen));
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  ASSERT_TRUE(client.send(get("/one")));
  auto r1 = client.read_response();
  ASSERT_TRUE(r1.has_value());
  EXPECT_EQ(r1->body, "GET /one ");
  ASSERT_TRUE(client.send(post("/two", "payload")));
  auto r2 = client.read_response();
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->body, "POST /two payload");
  // Three requests in one write come back in order.
  ASSERT_TRUE(client.send(get("/p1") + post("/p2", "b2") + get("/p3")));
  for (const std::string expected : {"GET /p1 ", "POST /p2 b2", "GET /p3 "}) {
    auto r = client.read_response();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->body, expected);
  }
  EXPECT_EQ(server->n_connections(), 1);
  // "Connection: close" is honoured.
  ASSERT_TRUE(client.send(get("/last", "Connection: close\r\n")));
  auto r3 = client.read_response();
  ASSERT_TRUE(r3.has_value());
  EXPECT_EQ(r3->status, 200);
  EXPECT_EQ(lower(r3->header("connection")), "close");
  EXPECT_TRUE(client.wait_closed());
  EXPECT_TRUE(eventually([&] { return server->n_connections() == 0; }));
  EXPECT_EQ(seen.size(), 6u);
}

TEST(HttpServerTest, Expect100ContinueGetsAnInterimResponse) {
  Seen seen;
  auto server = start(test_options(), echo_handler(&seen));
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  ASSERT_TRUE(client.send(
      "POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
  auto interim = client.read_response();
  ASSERT_TRUE(interim.has_value());
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(client.send("hello"));
  auto r = client.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "POST /up hello");
}

TEST(HttpServerTest, StreamsChunksInOrderThenServesTheNextRequest) {
  std::vector<std::thread> producers;
  std::mutex producers_mu;
  auto server =
      start(test_options(), [&](HttpRequest request, std::shared_ptr<HttpResponder> responder) {
        if (request.path != "/stream") {
          responder->send(200, "text/plain", "after");
          return;
        }
        responder->start_stream("text/event-stream");
        std::lock_guard<std::mutex> lock(producers_mu);
        // Another thread produces, as the engine does.
        producers.emplace_back([responder] {
          for (int i = 1; i <= 3; ++i) {
            std::this_thread::sleep_for(20ms);
            EXPECT_TRUE(responder->write("data: " + std::to_string(i) + "\n\n"));
          }
          responder->end();
          EXPECT_FALSE(responder->write("data: late\n\n"));
        });
      });
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  ASSERT_TRUE(client.send(get("/stream")));
  auto r = client.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(r->chunked);
  EXPECT_EQ(r->header("content-type"), "text/event-stream");
  EXPECT_EQ(r->header("cache-control"), "no-cache");
  EXPECT_EQ(r->header("x-accel-buffering"), "no");
  EXPECT_FALSE(r->has_header("content-length"));
  EXPECT_EQ(r->chunks, (std::vector<std::string>{"data: 1\n\n", "data: 2\n\n", "data: 3\n\n"}));
  ASSERT_TRUE(client.send(get("/next")));
  auto r2 = client.read_response();
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->body, "after");
  std::lock_guard<std::mutex> lock(producers_mu);
  for (auto& t : producers) t.join();
}

// The handler's responder and what its on_close callback saw.
struct Held {
  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<HttpResponder> responder;
  int n_on_close = 0;

  void set(std::shared_ptr<HttpResponder> r) {
    std::lock_guard<std::mutex> lock(mu);
    responder = std::move(r);
    cv.notify_all();
  }
  std::shared_ptr<HttpResponder> wait_responder() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, 5s, [&] { return responder != nullptr; });
    return responder;
  }
  void closed() {
    std::lock_guard<std::mutex> lock(mu);
    ++n_on_close;
    cv.notify_all();
  }
  bool wait_on_close(std::chrono::milliseconds timeout = 5s) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, [&] { return n_on_close > 0; });
  }
};

// post() hands work to the connection: it runs later, on an I/O thread, and may answer.
TEST(HttpServerTest, PostedWorkRunsOnTheConnection) {
  Held held;
  auto server = start(test_options(), [&](HttpRequest, std::shared_ptr<HttpResponder> responder) {
    responder->start_stream("text/event-stream");
    held.set(responder);
  });
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  ASSERT_TRUE(client.send(get("/stream")));
  auto responder = held.wait_responder();
  ASSERT_NE(responder, nullptr);
  std::mutex mu;
  std::optional<std::thread::id> ran_on;
  HttpResponder* r = responder.get();  // the posted work must not own the responder
  responder->post([&mu, &ran_on, r] {
    {
      std::lock_guard<std::mutex> lock(mu);
      ran_on = std::this_thread::get_id();
    }
    EXPECT_TRUE(r->write("data: posted\n\n"));
    r->end();
  });
  auto response = client.read_response();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->chunks, std::vector<std::string>{"data: posted\n\n"});
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_TRUE(ran_on.has_value());
  EXPECT_NE(*ran_on, std::this_thread::get_id());
}

TEST(HttpServerTest, ClientDisconnectMidStreamFiresOnCloseOnce) {
  Held held;
  auto server = start(test_options(), [&](HttpRequest, std::shared_ptr<HttpResponder> responder) {
    responder->on_close([&held] { held.closed(); });
    responder->start_stream("text/event-stream");
    responder->write("data: first\n\n");
    held.set(responder);
  });
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  ASSERT_TRUE(client.send(get("/stream")));
  ASSERT_TRUE(client.read_at_least(10));  // the header (and maybe the first chunk) arrived
  auto responder = held.wait_responder();
  ASSERT_NE(responder, nullptr);
  EXPECT_FALSE(responder->closed());
  client.close();
  ASSERT_TRUE(held.wait_on_close());
  EXPECT_TRUE(responder->closed());
  EXPECT_FALSE(responder->write("data: after close\n\n"));
  // Registered after the close: runs at once, on this thread.
  bool ran = false;
  responder->on_close([&ran] { ran = true; });
  EXPECT_TRUE(ran);
  EXPECT_TRUE(eventually([&] { return server->n_connections() == 0; }));
  std::this_thread::sleep_for(50ms);
  std::lock_guard<std::mutex> lock(held.mu);
  EXPECT_EQ(held.n_on_close, 1);
}

TEST(HttpServerTest, ClientDisconnectWhileWaitingForANonStreamedAnswer) {
  Held held;
  auto server = start(test_options(), [&](HttpRequest, std::shared_ptr<HttpResponder> responder) {
    responder->on_close([&held] { held.closed(); });
    held.set(responder);  // answered later, or never
  });
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  ASSERT_TRUE(client.send(post("/v1/completions", "{}")));
  auto responder = held.wait_responder();
  ASSERT_NE(responder, nullptr);
  client.close();
  ASSERT_TRUE(held.wait_on_close());
  EXPECT_TRUE(responder->closed());
  responder->send(200, "application/json", "{}");  // dropped, harmlessly
}

TEST(HttpServerTest, CompletedResponseDoesNotFireOnClose) {
  Held held;
  auto server = start(test_options(), [&](HttpRequest, std::shared_ptr<HttpResponder> responder) {
    responder->on_close([&held] { held.closed(); });
    responder->send(200, "text/plain", "done");
    held.set(responder);
  });
  ASSERT_NE(server, nullptr);
  {
    Client client(server->port());
    ASSERT_TRUE(client.send(get("/x")));
    auto r = client.read_response();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->body, "done");
  }
  EXPECT_TRUE(eventually([&] { return server->n_connections() == 0; }));
  EXPECT_FALSE(held.wait_on_close(100ms));
}

TEST(HttpServerTest, SlowReaderBuffersWhileTheServerStaysResponsive) {
  constexpr size_t kChunk = 64u << 10;
  constexpr int kChunks = 128;  // 8 MiB
  Held held;
  auto server =
      start(test_options(), [&](HttpRequest request, std::shared_ptr<HttpResponder> responder) {
        if (request.path == "/health") {
          responder->send(200, "text/plain", "ok");
          return;
        }
        responder->start_stream("application/octet-stream");
        for (int i = 0; i < kChunks; ++i) {
          std::string chunk(kChunk, static_cast<char>('a' + i % 26));
          ASSERT_TRUE(responder->write(std::move(chunk)));
        }
        responder->end();
        held.set(responder);
      });
  ASSERT_NE(server, nullptr);
  Client slow(server->port(), /*rcvbuf=*/16 << 10);
  ASSERT_TRUE(slow.send(get("/big")));
  auto responder = held.wait_responder();
  ASSERT_NE(responder, nullptr);
  std::this_thread::sleep_for(300ms);
  // The kernel holds a few MiB at most; the rest waits in the server's queue.
  const size_t pending = responder->pending_bytes();
  EXPECT_GT(pending, 1u << 20);
  EXPECT_LE(pending, kChunk * kChunks);
  EXPECT_FALSE(responder->closed());

  for (int i = 0; i < 3; ++i) {
    Client other(server->port());
    const auto t0 = Clock::now();
    ASSERT_TRUE(other.send(get("/health")));
    auto r = other.read_response(2s);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->body, "ok");
    EXPECT_LT(Clock::now() - t0, 1s);
  }

  auto r = slow.read_response(30s);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->body.size(), kChunk * kChunks);
  for (int i = 0; i < kChunks; ++i) {
    const char expected = static_cast<char>('a' + i % 26);
    const std::string_view piece(r->body.data() + static_cast<size_t>(i) * kChunk, kChunk);
    ASSERT_EQ(std::count(piece.begin(), piece.end(), expected), static_cast<long>(kChunk))
        << "chunk " << i;
  }
  EXPECT_TRUE(eventually([&] { return responder->pending_bytes() == 0; }));
}

TEST(HttpServerTest, HandlerExceptionBecomes500AndTheServerLivesOn) {
  auto server =
      start(test_options(), [](HttpRequest request, std::shared_ptr<HttpResponder> responder) {
        if (request.path == "/throw") throw std::runtime_error("boom");
        if (request.path == "/drop") return;  // never answers
        responder->send(200, "text/plain", "fine");
      });
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  ASSERT_TRUE(client.send(get("/throw")));
  auto r = client.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("\"error\""), std::string::npos);
  EXPECT_EQ(r->body.find("boom"), std::string::npos) << "internal details leaked: " << r->body;
  // A handler that drops the responder without answering also yields a 500.
  ASSERT_TRUE(client.send(get("/drop")));
  auto r2 = client.read_response();
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->status, 500);
  ASSERT_TRUE(client.send(get("/fine")));
  auto r3 = client.read_response();
  ASSERT_TRUE(r3.has_value());
  EXPECT_EQ(r3->status, 200);
  EXPECT_EQ(r3->body, "fine");
}

TEST(HttpServerTest, StartErrors) {
  Seen seen;
  auto first = start(test_options(), echo_handler(&seen));
  ASSERT_NE(first, nullptr);
  HttpServerOptions taken = test_options();
  taken.port = first->port();
  auto second = HttpServer::start(taken, echo_handler(&seen));
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find(std::to_string(first->port())), std::string::npos)
      << second.status();

  HttpServerOptions bad_host = test_options();
  bad_host.host = "not-an-address";
  EXPECT_FALSE(HttpServer::start(bad_host, echo_handler(&seen)).ok());
  HttpServerOptions no_threads = test_options();
  no_threads.io_threads = 0;
  EXPECT_FALSE(HttpServer::start(no_threads, echo_handler(&seen)).ok());
  EXPECT_FALSE(HttpServer::start(test_options(), nullptr).ok());
}

TEST(HttpServerTest, Ipv6LoopbackWhereAvailable) {
  Seen seen;
  HttpServerOptions options = test_options();
  options.host = "::1";
  auto server = HttpServer::start(options, echo_handler(&seen));
  if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << server.status();
  EXPECT_GT((*server)->port(), 0);
}

TEST(HttpServerTest, StopAcceptingRefusesNewConnectionsButServesOpenOnes) {
  Seen seen;
  auto server = start(test_options(), echo_handler(&seen));
  ASSERT_NE(server, nullptr);
  Client open(server->port());
  ASSERT_TRUE(open.send(get("/before")));
  ASSERT_TRUE(open.read_response().has_value());
  server->stop_accepting();
  Client refused(server->port());
  EXPECT_FALSE(refused.connected());
  EXPECT_EQ(refused.connect_errno(), ECONNREFUSED);
  ASSERT_TRUE(open.send(get("/after")));
  auto r = open.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "GET /after ");
  server->stop_accepting();  // idempotent
}

TEST(HttpServerTest, DestructionWithOpenConnectionsDoesNotHang) {
  Held held;
  HttpServerOptions options = test_options();
  auto server = start(options, [&](HttpRequest, std::shared_ptr<HttpResponder> responder) {
    responder->on_close([&held] { held.closed(); });
    responder->start_stream("text/event-stream");
    responder->write("data: x\n\n");
    held.set(responder);
  });
  ASSERT_NE(server, nullptr);
  Client streaming(server->port());
  ASSERT_TRUE(streaming.send(get("/stream")));
  auto responder = held.wait_responder();
  ASSERT_NE(responder, nullptr);
  Client idle(server->port());
  Client partial(server->port());
  ASSERT_TRUE(partial.send("POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc"));
  ASSERT_TRUE(eventually([&] { return server->n_connections() == 3; }));

  const auto t0 = Clock::now();
  server.reset();
  EXPECT_LT(Clock::now() - t0, 4s);
  EXPECT_TRUE(streaming.wait_closed());
  EXPECT_TRUE(idle.wait_closed());
  EXPECT_TRUE(partial.wait_closed());
  // The responder outlives the server safely.
  EXPECT_TRUE(responder->closed());
  EXPECT_FALSE(responder->write("data: y\n\n"));
  responder->end();
  EXPECT_TRUE(held.wait_on_close(1s));
  // With the I/O threads gone, posted work is dropped, never run here.
  responder->post([] { ADD_FAILURE() << "posted work ran after shutdown"; });
}

TEST(HttpServerTest, IdleConnectionsAreClosed) {
  Seen seen;
  HttpServerOptions options = test_options();
  options.idle_timeout = std::chrono::seconds(1);
  auto server = start(options, echo_handler(&seen));
  ASSERT_NE(server, nullptr);
  Client silent(server->port());
  Client slowloris(server->port());
  ASSERT_TRUE(slowloris.send("GET / HTTP/1.1\r\nHost: x\r\n"));  // never finishes the header
  const auto t0 = Clock::now();
  EXPECT_TRUE(silent.wait_closed(5s));
  EXPECT_TRUE(slowloris.wait_closed(5s));
  EXPECT_GT(Clock::now() - t0, 500ms);
  EXPECT_TRUE(eventually([&] { return server->n_connections() == 0; }));
  EXPECT_EQ(seen.size(), 0u);
}

TEST(HttpServerTest, CorsHeadersOnlyWhenConfigured) {
  Seen seen;
  const std::string preflight =
      "OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example\r\n"
      "Access-Control-Request-Method: POST\r\n"
      "Access-Control-Request-Headers: authorization, content-type\r\n\r\n";
  {
    // Off: no CORS headers, and OPTIONS is just another request for the handler.
    auto server = start(test_options(), echo_handler(&seen));
    ASSERT_NE(server, nullptr);
    Client client(server->port());
    ASSERT_TRUE(client.send(get("/v1/models", "Origin: http://app.example\r\n")));
    auto r = client.read_response();
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(r->has_header("access-control-allow-origin"));
    ASSERT_TRUE(client.send(preflight));
    auto r2 = client.read_response();
    ASSERT_TRUE(r2.has_value());
    EXPECT_EQ(r2->body, "OPTIONS /v1/chat/completions ");
    EXPECT_FALSE(r2->has_header("access-control-allow-origin"));
  }
  const size_t n_before = seen.size();
  {
    HttpServerOptions options = test_options();
    options.cors_allow_origin = "*";
    options.api_key = "k";
    auto server = start(options, echo_handler(&seen));
    ASSERT_NE(server, nullptr);
    Client client(server->port());
    // The preflight needs no key and does not reach the handler.
    ASSERT_TRUE(client.send(preflight));
    auto r = client.read_response();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 204);
    EXPECT_EQ(r->header("access-control-allow-origin"), "*");
    EXPECT_NE(r->header("access-control-allow-methods").find("POST"), std::string::npos);
    EXPECT_EQ(lower(r->header("access-control-allow-headers")), "authorization, content-type");
    ASSERT_TRUE(client.send(get("/v1/models", "Authorization: Bearer k\r\n")));
    auto r2 = client.read_response();
    ASSERT_TRUE(r2.has_value());
    EXPECT_EQ(r2->status, 200);
    EXPECT_EQ(r2->header("access-control-allow-origin"), "*");
    // Error responses carry it too, so browsers can read them.
    ASSERT_TRUE(client.send(get("/v1/models")));
    auto r3 = client.read_response();
    ASSERT_TRUE(r3.has_value());
    EXPECT_EQ(r3->status, 401);
    EXPECT_EQ(r3->header("access-control-allow-origin"), "*");
  }
  EXPECT_EQ(seen.size(), n_before + 1);
}

TEST(HttpServerTest, CountsConnections) {
  Seen seen;
  auto server = start(test_options(), echo_handler(&seen));
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->n_connections(), 0);
  {
    Client a(server->port());
    Client b(server->port());
    EXPECT_TRUE(eventually([&] { return server->n_connections() == 2; }));
  }
  EXPECT_TRUE(eventually([&] { return server->n_connections() == 0; }));
}

TEST(HttpServerTest, HeaderLookupIsCaseInsensitiveOnTheQuery) {
  HttpRequest request;
  request.headers = {{"content-type", "a"}, {"x-dup", "1"}, {"x-dup", "2"}};
  ASSERT_NE(request.header("content-type"), nullptr);
  EXPECT_EQ(*request.header("Content-Type"), "a");
  EXPECT_EQ(*request.header("x-dup"), "1");
  EXPECT_EQ(request.header("content"), nullptr);
  EXPECT_EQ(request.header(""), nullptr);
}

}  // namespace
}  // namespace moeserve
