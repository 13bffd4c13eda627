// serve_bench end to end (bench/serve_bench_client.h): run_benchmark() against a fake
// OpenAI-compatible server in this process (127.0.0.1, a free port) that streams a known number of
// tokens with known delays, fails chosen requests, and records what it was sent.
#include "../../bench/serve_bench_client.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace moeserve::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using std::chrono::milliseconds;

struct FakeBehaviour {
  bool chat = false;
  int first_token_ms = 20;   // before the first content chunk
  int token_gap_ms = 3;      // between content chunks
  int tokens_per_chunk = 1;  // tokens a content chunk stands for
  bool send_usage = true;
  int status_500_every = 0;   // every k-th POST (1-based) answers HTTP 500
  int error_event_every = 0;  // every k-th POST sends an error event after two chunks
  int hang_every = 0;         // every k-th POST sends nothing for up to 5 s
  std::string api_key;        // "" = none required
};

// What the fake server saw of one POST.
struct Seen {
  nlohmann::json body;
  bool streamed_all = false;  // answered 200 and sent every token
  std::chrono::steady_clock::time_point received;
};

class FakeOpenAiServer {
 public:
  explicit FakeOpenAiServer(FakeBehaviour b) : b_(std::move(b)), acceptor_(ioc_) {
    const tcp::endpoint at(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(at.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(at);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~FakeOpenAiServer() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    // Wake the blocking accept() with one last connection.
    boost::system::error_code ec;
    asio::io_context ioc;
    tcp::socket poke(ioc);
    poke.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);
    accept_thread_.join();
    for (std::thread& t : connection_threads_) t.join();
  }

  int port() const { return port_; }
  std::vector<Seen> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  int peak_in_flight() const { return peak_in_flight_; }

 private:
  void accept_loop() {
    for (;;) {
      tcp::socket socket(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      std::lock_guard lock(mu_);
      if (stopping_) return;
      if (ec) continue;
      connection_threads_.emplace_back(
          [this, s = std::move(socket)]() mutable { serve_connection(std::move(s)); });
    }
  }

  // Sleeps up to `ms`, less when the server stops.
  void pause(int ms) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, milliseconds(ms), [&] { return stopping_; });
  }

  static void write_chunk(tcp::socket& s, const std::string& data) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    boost::system::error_code ec;
    asio::write(s, asio::buffer(std::string(size) + data + "\r\n"), ec);
  }

  void serve_connection(tcp::socket socket) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      boost::system::error_code ec;
      http::read(socket, buffer, req, ec);
      if (ec) return;
      if (req.method() == http::verb::get && req.target() == "/v1/models") {
        respond(socket, 200, R"({"object":"list","data":[{"id":"fake-model","object":"model"}]})");
        continue;
      }
      if (!b_.api_key.empty() && req[http::field::authorization] != "Bearer " + b_.api_key) {
        respond(socket, 401, R"({"error":{"message":"bad key"}})");
        continue;
      }
      stream_completion(socket, nlohmann::json::parse(req.body()));
    }
  }

  void respond(tcp::socket& socket, int status, const std::string& body) {
    http::response<http::string_body> res{static_cast<http::status>(status), 11};
    res.set(http::field::content_type, "application/json");
    res.body() = body;
    res.prepare_payload();
    boost::system::error_code ec;
    http::write(socket, res, ec);
  }

  void stream_completion(tcp::socket& socket, const nlohmann::json& body) {
    int k;
    size_t index;
    {
      std::lock_guard lock(mu_);
      k = ++n_posts_;
      index = seen_.size();
      seen_.push_back({body, false, std::chrono::steady_clock::now()});
    }
    if (b_.status_500_every > 0 && k % b_.status_500_every == 0) {
      respond(socket, 500, R"({"error":{"message":"planned failure"}})");
      return;
    }
    const int in_flight = ++in_flight_;
    for (int peak = peak_in_flight_; in_flight > peak;) {
      if (peak_in_flight_.compare_exchange_weak(peak, in_flight)) break;
    }
    const std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    boost::system::error_code ec;
    asio::write(socket, asio::buffer(head), ec);
    if (b_.hang_every > 0 && k % b_.hang_every == 0) {
      pause(5000);
      --in_flight_;
      socket.close(ec);
      return;
    }
    // A role-only chunk first, as chat servers send: it must not count as the first token.
    if (b_.chat)
      write_chunk(socket, R"(data: {"choices":[{"delta":{"role":"assistant"}}]})"
                          "\n\n");
    const int n_tokens = body.at("max_tokens").get<int>();
    const int n_chunks = (n_tokens + b_.tokens_per_chunk - 1) / b_.tokens_per_chunk;
    for (int c = 0; c < n_chunks; ++c) {
      pause(c == 0 ? b_.first_token_ms : b_.token_gap_ms);
      if (b_.error_event_every > 0 && k % b_.error_event_every == 0 && c == 2) {
        write_chunk(socket, "data: {\"error\":{\"message\":\"boom\",\"code\":500}}\n\n");
        break;
      }
      const std::string event = b_.chat
                                    ? R"(data: {"choices":[{"index":0,"delta":{"content":"t"}}]})"
                                      "\n\n"
                                    : R"(data: {"choices":[{"index":0,"text":"t"}]})"
                                      "\n\n";
      // Split each event over two HTTP chunks so the client must reassemble it.
      write_chunk(socket, event.substr(0, 9));
      write_chunk(socket, event.substr(9));
      if (c == n_chunks - 1) {
        std::lock_guard lock(mu_);
        seen_[index].streamed_all = true;
      }
    }
    const int n_prompt = body.contains("prompt") && body["prompt"].is_array()
                             ? static_cast<int>(body["prompt"].size())
                             : 1000;
    if (b_.send_usage) {
      write_chunk(socket, "data: " +
                              nlohmann::json{{"choices", nlohmann::json::array()},
                                             {"usage",
                                              {{"prompt_tokens", n_prompt},
                                               {"completion_tokens", n_tokens},
                                               {"total_tokens", n_prompt + n_tokens}}}}
                                  .dump() +
                              "\n\n");
    }
    // Counted out before the client can see the end of the stream: it may start its next
    // request as soon as it reads [DONE].
    --in_flight_;
    write_chunk(socket, "data: [DONE]\n\n");
    write_chunk(socket, "");  // the terminating chunk
  }

  FakeBehaviour b_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  int port_ = 0;
  std::thread accept_thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<std::thread> connection_threads_;
  std::vector<Seen> seen_;
  int n_posts_ = 0;
  std::atomic<int> in_flight_{0};
  std::atomic<int> peak_in_flight_{0};
};

ServeBenchOptions small_run(int port) {
  ServeBenchOptions o;
  o.port = port;
  o.n_prompts = 12;
  o.random_input_len = 32;
  o.random_output_len = 8;
  o.random_range_ratio = 0.5;  // inputs in [16, 48], outputs in [4, 12]
  o.random_vocab_size = 1000;
  o.timeout_s = 20;
  o.max_duration_s = 60;
  o.warmup = false;
  return o;
}

TEST(ServeBenchClient, CompletionsCountsEveryTokenAndTimesTheStream) {
  FakeBehaviour b;
  b.first_token_ms = 20;
  b.token_gap_ms = 3;
  FakeOpenAiServer server(b);
  ServeBenchOptions o = small_run(server.port());
  o.max_concurrency = 4;
  auto result = run_benchmark(o);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->model, "fake-model");  // discovered via GET /v1/models

  const std::vector<Seen> seen = server.seen();
  ASSERT_EQ(seen.size(), 12u);
  int64_t sent_input = 0, sent_output = 0;
  for (const Seen& s : seen) {
    EXPECT_EQ(s.body["model"], "fake-model");
    EXPECT_EQ(s.body["stream"], true);
    EXPECT_EQ(s.body["stream_options"]["include_usage"], true);
    EXPECT_EQ(s.body["ignore_eos"], true);
    const int n_in = static_cast<int>(s.body["prompt"].size());
    const int n_out = s.body["max_tokens"];
    EXPECT_GE(n_in, 16);
    EXPECT_LE(n_in, 48);
    EXPECT_GE(n_out, 4);
    EXPECT_LE(n_out, 12);
    sent_input += n_in;
    sent_output += n_out;
  }
  const BenchmarkMetrics& m = result->metrics;
  EXPECT_EQ(m.n_completed, 12);
  EXPECT_EQ(m.n_failed, 0);
  EXPECT_EQ(m.total_input, sent_input);
  EXPECT_EQ(m.total_output, sent_output);
  EXPECT_LE(server.peak_in_flight(), 4);

  for (const RequestResult& r : result->requests) {
    ASSERT_TRUE(r.success) << r.error;
    const int n_out = r.output_tokens();
    // The server waits 20 ms before the first token and ≥ 3 ms before each further one.
    EXPECT_GE(r.ttft_s, 0.020);
    EXPECT_GE(r.e2e_s, 0.020 + 0.003 * (n_out - 1));
    EXPECT_LE(r.ttft_s, r.e2e_s);
    ASSERT_EQ(static_cast<int>(r.itl_s.size()), n_out - 1);  // one chunk per token
    double itl_sum = 0;
    for (double g : r.itl_s) itl_sum += g;
    EXPECT_NEAR(r.ttft_s + itl_sum, r.last_content_s, 1e-9);
    EXPECT_LE(r.last_content_s, r.e2e_s);
  }
  // The mean TPOT from the per-request definition (E2E − TTFT) / (tokens − 1).
  double tpot_sum = 0;
  for (const RequestResult& r : result->requests) {
    tpot_sum += (r.e2e_s - r.ttft_s) / (r.output_tokens() - 1);
  }
  EXPECT_NEAR(m.tpot_ms.mean, 1000 * tpot_sum / 12, 1e-6);
  EXPECT_GT(m.duration_s, 0.020);
  EXPECT_NEAR(m.request_throughput, 12 / m.duration_s, 1e-9);
}

TEST(ServeBenchClient, ChatSkipsTheRoleChunkAndUsesUsage) {
  FakeBehaviour b;
  b.chat = true;
  b.first_token_ms = 50;
  b.tokens_per_chunk = 2;  // the usage count differs from the chunk count
  FakeOpenAiServer server(b);
  ServeBenchOptions o = small_run(server.port());
  o.endpoint = "/v1/chat/completions";
  o.n_prompts = 4;
  o.model = "given-model";
  auto result = run_benchmark(o);
  ASSERT_TRUE(result.ok()) << result.status();
  int64_t sent_output = 0;
  for (const Seen& s : server.seen()) {
    EXPECT_EQ(s.body["model"], "given-model");
    const std::string text = s.body["messages"][0]["content"];
    const auto n_words = std::count(text.begin(), text.end(), ' ') + 1;
    EXPECT_GE(n_words, 16);
    EXPECT_LE(n_words, 48);
    sent_output += s.body["max_tokens"].get<int>();
  }
  EXPECT_EQ(result->metrics.n_completed, 4);
  EXPECT_EQ(result->metrics.total_output, sent_output);
  EXPECT_EQ(result->metrics.total_input, 4 * 1000);  // the fake's usage.prompt_tokens for chat
  for (const RequestResult& r : result->requests) {
    // The role chunk comes at once, content after 50 ms: TTFT must be the latter.
    EXPECT_GE(r.ttft_s, 0.050);
    EXPECT_EQ(r.n_content_chunks, (r.output_tokens() + 1) / 2);
  }
}

TEST(ServeBenchClient, ChunksAreTimedAsTheyArrive) {
  FakeBehaviour b;
  b.first_token_ms = 10;
  b.token_gap_ms = 100;
  FakeOpenAiServer server(b);
  ServeBenchOptions o = small_run(server.port());
  o.n_prompts = 2;
  o.random_output_len = 3;
  o.random_range_ratio = 0;
  o.model = "m";
  auto result = run_benchmark(o);
  ASSERT_TRUE(result.ok()) << result.status();
  for (const RequestResult& r : result->requests) {
    ASSERT_TRUE(r.success) << r.error;
    // The server sends the three tokens 100 ms apart: a client that timed chunks when its buffer
    // filled or the body ended would see them together. 100 ms of the 200 are slack for a busy
    // machine.
    EXPECT_GE(r.last_content_s - r.ttft_s, 0.100);
    EXPECT_GE(r.e2e_s, 0.210);
  }
}

TEST(ServeBenchClient, WithoutUsageTheChunksAreCounted) {
  FakeBehaviour b;
  b.send_usage = false;
  b.tokens_per_chunk = 3;
  b.first_token_ms = 1;
  FakeOpenAiServer server(b);
  ServeBenchOptions o = small_run(server.port());
  o.n_prompts = 3;
  auto result = run_benchmark(o);
  ASSERT_TRUE(result.ok()) << result.status();
  int64_t chunks = 0, inputs = 0;
  for (const Seen& s : server.seen()) {
    chunks += (s.body["max_tokens"].get<int>() + 2) / 3;
    inputs += static_cast<int64_t>(s.body["prompt"].size());
  }
  EXPECT_EQ(result->metrics.total_output, chunks);
  EXPECT_EQ(result->metrics.total_input, inputs);  // the workload's exact id counts
}

TEST(ServeBenchClient, HttpErrorsAndErrorEventsAreFailures) {
  FakeBehaviour b;
  b.first_token_ms = 1;
  b.token_gap_ms = 1;
  b.status_500_every = 4;   // POSTs 4, 8, 12
  b.error_event_every = 3;  // POSTs 3, 6, 9 (12 already failed with 500)
  FakeOpenAiServer server(b);
  ServeBenchOptions o = small_run(server.port());
  o.max_concurrency = 1;  // POST k is request k
  o.model = "m";
  auto result = run_benchmark(o);
  ASSERT_TRUE(result.ok()) << result.status();
  const BenchmarkMetrics& m = result->metrics;
  EXPECT_EQ(m.n_completed, 6);
  EXPECT_EQ(m.n_failed, 6);
  int64_t ok_output = 0;
  for (const Seen& s : server.seen()) {
    if (s.streamed_all) ok_output += s.body["max_tokens"].get<int>();
  }
  EXPECT_EQ(m.total_output, ok_output);
  const std::vector<std::string> errors = first_errors(result->requests, 5);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors[0].find("boom"), std::string::npos);  // request 3 fails first
  EXPECT_NE(errors[1].find("HTTP 500"), std::string::npos);
  EXPECT_NE(errors[1].find("planned failure"), std::string::npos);
}

TEST(ServeBenchClient, TimeoutsAreFailuresAndBoundTheRun) {
  FakeBehaviour b;
  b.hang_every = 2;
  b.first_token_ms = 1;
  FakeOpenAiServer server(b);
  ServeBenchOptions o = small_run(server.port());
  o.n_prompts = 4;
  o.max_concurrency = 1;
  o.timeout_s = 0.3;
  o.model = "m";
  const auto t0 = std::chrono::steady_clock::now();
  auto result = run_benchmark(o);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->metrics.n_completed, 2);
  EXPECT_EQ(result->metrics.n_failed, 2);
  EXPECT_NE(first_errors(result->requests, 5).at(0).find("timeout"), std::string::npos);
  EXPECT_LT(wall, 4.0);  // two 0.3 s timeouts, not two 5 s hangs
}

TEST(ServeBenchClient, MaxDurationStopsSending) {
  FakeBehaviour b;
  b.first_token_ms = 1;
  FakeOpenAiServer server(b);
  ServeBenchOptions o = small_run(server.port());
  o.n_prompts = 50;
  o.request_rate = 4;  // 50 requests would take about 12 s
  o.max_duration_s = 0.5;
  o.model = "m";
  const auto t0 = std::chrono::steady_clock::now();
  auto result = run_benchmark(o);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(result.ok()) << result.status();
  const BenchmarkMetrics& m = result->metrics;
  EXPECT_EQ(m.n_completed + m.n_failed + m.n_not_sent, 50);
  EXPECT_GE(m.n_completed, 1);  // the first request goes at t = 0
  EXPECT_GE(m.n_not_sent, 35);  // at 4 req/s, ~3 arrive in 0.5 s
  EXPECT_EQ(static_cast<int>(server.seen().size()), m.n_completed + m.n_failed);
  EXPECT_LT(wall, 3.0);
}

TEST(ServeBenchClient, RequestRatePacesArrivals) {
  FakeBehaviour b;
  b.first_token_ms = 1;
  FakeOpenAiServer server(b);
  ServeBenchOptions o = small_run(server.port());
  o.n_prompts = 8;
  o.request_rate = 20;
  o.seed = 3;
  o.model = "m";
  const auto t0 = std::chrono::steady_clock::now();
  auto result = run_benchmark(o);
  ASSERT_TRUE(result.ok()) << result.status();
  const std::vector<BenchRequest> w = make_workload(o, "m");
  ASSERT_GT(w.back().arrival_s, 0.1);  // 7 gaps of mean 50 ms
  std::vector<Seen> seen = server.seen();
  ASSERT_EQ(seen.size(), 8u);
  // No request reaches the server before its arrival time.
  for (size_t i = 0; i < seen.size(); ++i) {
    const double at = std::chrono::duration<double>(seen[i].received - t0).count();
    EXPECT_GE(at, w[i].arrival_s);
  }
  EXPECT_GE(result->metrics.duration_s, w.back().arrival_s);
}

TEST(ServeBenchClient, ApiKeyIsSentAndAFailedWarmupIsAnError) {
  FakeBehaviour b;
  b.first_token_ms = 1;
  b.api_key = "sesame";
  FakeOpenAiServer server(b);
  ServeBenchOptions o = small_run(server.port());
  o.n_prompts = 2;
  o.model = "m";
  o.warmup = true;
  o.api_key = "sesame";
  auto good = run_benchmark(o);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->metrics.n_completed, 2);
  EXPECT_EQ(server.seen().size(), 3u);  // the warm-up and two measured requests

  o.api_key = "wrong";
  auto bad = run_benchmark(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("401"), std::string::npos) << bad.status();
}

TEST(ServeBenchClient, InvalidOptionsAndNoServerAreErrors) {
  ServeBenchOptions o;
  o.random_range_ratio = 1.0;
  EXPECT_EQ(run_benchmark(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = ServeBenchOptions{};
  o.request_rate = 0;
  EXPECT_EQ(run_benchmark(o).status().code(), absl::StatusCode::kInvalidArgument);

  // A port nobody listens on: discovery fails fast.
  int free_port;
  {
    asio::io_context ioc;
    tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    free_port = a.local_endpoint().port();
  }
  o = ServeBenchOptions{};
  o.port = free_port;
  o.timeout_s = 2;
  EXPECT_FALSE(run_benchmark(o).ok());
}

}  // namespace
}  // namespace moeserve::bench
