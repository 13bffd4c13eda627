// serve_bench's network side: a small blocking HTTP/1.1 client (Boost.Beast; one connection per
// request, every step under one deadline) and run_benchmark(), which sends the workload of
// serve_bench_lib.h at its arrival times through at most max_concurrency worker threads and
// measures each streamed response.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "serve_bench_lib.h"
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace moeserve::bench {

using Clock = std::chrono::steady_clock;

// Worker threads when max_concurrency is 0 (unlimited): requests beyond this many in flight
// wait for a free worker.
constexpr int kMaxWorkers = 256;

struct HttpCall {
  std::string method = "POST";
  std::string target;
  std::string body;     // sent as application/json when not empty
  std::string api_key;  // "" = no Authorization header
  Clock::time_point deadline;
};

// Called with the status code and each piece of the response body as it arrives (de-chunked);
// returns false to stop reading (the connection is then closed).
using BodyFn = std::function<bool(int status, std::string_view piece)>;

// One HTTP exchange on a fresh connection to `endpoints`. Returns the status code, or an error
// when connecting, writing or reading fails or the deadline passes (DeadlineExceeded).
inline StatusOr<int> http_exchange(const boost::asio::ip::tcp::resolver::results_type& endpoints,
                                   const std::string& host_header, const HttpCall& call,
                                   const BodyFn& on_body) {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  namespace http = beast::http;
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_at(call.deadline);  // covers every asynchronous step below

  // Runs one asynchronous operation to completion on this thread.
  auto run = [&](auto start) {
    beast::error_code result;
    bool finished = false;
    start([&](beast::error_code ec, auto&&...) {
      result = ec;
      finished = true;
    });
    ioc.restart();
    while (!finished && ioc.run_one() > 0) {
    }
    return result;
  };
  auto failed = [&](const char* step, beast::error_code ec) -> Status {
    if (ec == beast::error::timeout) {
      return absl::DeadlineExceededError(absl::StrCat("timeout (", step, ")"));
    }
    return absl::UnavailableError(absl::StrCat(step, ": ", ec.message()));
  };

  beast::error_code ec = run([&](auto h) { stream.async_connect(endpoints, h); });
  if (ec) return failed("connect", ec);

  http::request<http::string_body> req{http::string_to_verb(call.method), call.target, 11};
  req.set(http::field::host, host_header);
  req.set(http::field::user_agent, "moeserve-serve-bench");
  req.set(http::field::accept, "text/event-stream, application/json");
  if (!call.api_key.empty()) req.set(http::field::authorization, "Bearer " + call.api_key);
  if (!call.body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = call.body;
  }
  req.prepare_payload();
  ec = run([&](auto h) { http::async_write(stream, req, h); });
  if (ec) return failed("write", ec);

  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  ec = run([&](auto h) { http::async_read_header(stream, buffer, parser, h); });
  if (ec) return failed("read header", ec);
  const int status = parser.get().result_int();

  char piece[16384];
  bool stopped = false;
  while (!parser.is_done() && !stopped) {
    parser.get().body().data = piece;
    parser.get().body().size = sizeof piece;
    // read_some returns as soon as the parser has made progress, so chunks are seen (and timed)
    // as they arrive, not when the buffer fills.
    ec = run([&](auto h) { http::async_read_some(stream, buffer, parser, h); });
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return failed("read body", ec);
    const size_t n = sizeof piece - parser.get().body().size;
    if (n > 0 && !on_body(status, std::string_view(piece, n))) stopped = true;
  }
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  return status;
}

// Sends one benchmark request and fills `r` (times relative to just before connecting).
inline void run_request(const boost::asio::ip::tcp::resolver::results_type& endpoints,
                        const ServeBenchOptions& o, const std::string& body,
                        Clock::time_point deadline, RequestResult& r) {
  const bool chat = is_chat_endpoint(o.endpoint);
  const Clock::time_point t0 = Clock::now();
  auto since_t0 = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  r.sent = true;
  SseParser sse;
  std::string error_body;  // the start of a non-200 body
  bool event_failed = false;
  auto on_event = [&](const SseEvent& event) {
    if (!event_failed && !r.done && !apply_event(event, since_t0(), chat, r)) event_failed = true;
  };
  HttpCall call{"POST", o.endpoint, body, o.api_key, deadline};
  StatusOr<int> got = http_exchange(
      endpoints, absl::StrCat(o.host, ":", o.port), call, [&](int status, std::string_view bytes) {
        if (status != 200) {
          if (error_body.size() < 512) error_body.append(bytes.substr(0, 512 - error_body.size()));
          return true;
        }
        sse.feed(bytes, on_event);
        return !event_failed && !r.done;
      });
  r.e2e_s = since_t0();
  if (!got.ok()) {
    r.error = std::string(got.status().message());
    return;
  }
  if (*got != 200) {
    r.error = absl::StrCat("HTTP ", *got, ": ", error_body);
    return;
  }
  if (!event_failed && !r.done) sse.finish(on_event);
  if (event_failed) return;  // apply_event set the error
  if (r.n_content_chunks == 0) {
    r.error = "the stream ended without generated text";
    return;
  }
  r.success = true;
}

// The first model id of GET /v1/models.
inline StatusOr<std::string> discover_model(
    const boost::asio::ip::tcp::resolver::results_type& endpoints, const ServeBenchOptions& o) {
  std::string body;
  HttpCall call{"GET", "/v1/models", "", o.api_key,
                Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(std::min(o.timeout_s, 30.0)))};
  ASSIGN_OR_RETURN(const int status, http_exchange(endpoints, absl::StrCat(o.host, ":", o.port),
                                                   call, [&](int, std::string_view bytes) {
                                                     body.append(bytes);
                                                     return body.size() < (16u << 20);
                                                   }));
  if (status != 200) {
    return absl::UnavailableError(
        absl::StrCat("GET /v1/models: HTTP ", status, ": ", body.substr(0, 300)));
  }
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.contains("data") || !j["data"].is_array() || j["data"].empty() ||
      !j["data"][0].contains("id") || !j["data"][0]["id"].is_string()) {
    return absl::UnavailableError(
        absl::StrCat("GET /v1/models: no model id in ", body.substr(0, 300)));
  }
  return j["data"][0]["id"].get<std::string>();
}

inline Status validate(const ServeBenchOptions& o) {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (o.port <= 0 || o.port > 65535) return bad("--port must be in [1, 65535]");
  if (o.endpoint.empty() || o.endpoint[0] != '/') return bad("--endpoint must start with '/'");
  if (o.n_prompts < 1) return bad("--num-prompts must be >= 1");
  if (o.random_input_len < 1) return bad("--random-input-len must be >= 1");
  if (o.random_output_len < 1) return bad("--random-output-len must be >= 1");
  if (!(o.random_range_ratio >= 0 && o.random_range_ratio < 1)) {
    return bad("--random-range-ratio must be in [0, 1)");
  }
  if (o.random_vocab_size <= kMinPromptId) {
    return bad(absl::StrCat("--random-vocab-size must be > ", kMinPromptId));
  }
  if (!(o.request_rate > 0)) return bad("--request-rate must be > 0 (or inf)");
  if (!(o.burstiness > 0) || std::isinf(o.burstiness)) return bad("--burstiness must be > 0");
  if (o.max_concurrency < 0) return bad("--max-concurrency must be >= 0");
  if (!(o.timeout_s > 0)) return bad("--timeout-s must be > 0");
  if (!(o.max_duration_s > 0)) return bad("--max-duration-s must be > 0");
  return absl::OkStatus();
}

struct BenchmarkResult {
  std::string model;                    // as sent (given or discovered)
  std::vector<RequestResult> requests;  // in workload order
  BenchmarkMetrics metrics;
};

// Runs the whole benchmark against o.host:o.port. Errors: invalid options, the host cannot be
// resolved, model discovery fails, or the warm-up request fails; failures of measured requests
// are counted in the result instead.
inline StatusOr<BenchmarkResult> run_benchmark(const ServeBenchOptions& o) {
  namespace asio = boost::asio;
  RETURN_IF_ERROR(validate(o));
  asio::ip::tcp::resolver::results_type endpoints;
  {
    asio::io_context ioc;
    asio::ip::tcp::resolver resolver(ioc);
    boost::system::error_code ec;
    endpoints = resolver.resolve(o.host, std::to_string(o.port), ec);
    if (ec) return absl::UnavailableError(absl::StrCat("resolve ", o.host, ": ", ec.message()));
  }
  auto after = [](double seconds) {
    return Clock::now() +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  };

  BenchmarkResult result;
  result.model = o.model;
  if (result.model.empty()) {
    ASSIGN_OR_RETURN(result.model, discover_model(endpoints, o));
  }
  const std::vector<BenchRequest> workload = make_workload(o, result.model);

  if (o.warmup) {
    RequestResult warm;
    run_request(endpoints, o, workload[0].body, after(o.timeout_s), warm);
    if (!warm.success) {
      return absl::UnavailableError(absl::StrCat("warm-up request failed: ", warm.error));
    }
  }

  result.requests.resize(workload.size());
  for (size_t i = 0; i < workload.size(); ++i) result.requests[i].input_len = workload[i].input_len;

  // The dispatcher (this thread) queues each request at its arrival time; workers take them in
  // order, so at most n_workers are in flight and a late worker never delays later arrivals'
  // queueing (vLLM's semaphore semantics).
  const Clock::time_point start = Clock::now();
  const Clock::time_point run_deadline = after(o.max_duration_s);
  std::mutex mu;
  std::condition_variable cv;
  std::deque<size_t> ready;
  bool dispatch_done = false;
  auto worker = [&] {
    for (;;) {
      size_t i;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return !ready.empty() || dispatch_done; });
        if (ready.empty()) return;
        i = ready.front();
        ready.pop_front();
      }
      const Clock::time_point now = Clock::now();
      if (now >= run_deadline) continue;  // stays "not sent"
      const Clock::time_point deadline = std::min(after(o.timeout_s), run_deadline);
      run_request(endpoints, o, workload[i].body, deadline, result.requests[i]);
    }
  };
  const int n_workers = std::min<int>(static_cast<int>(workload.size()),
                                      o.max_concurrency > 0 ? o.max_concurrency : kMaxWorkers);
  std::vector<std::thread> workers;
  workers.reserve(n_workers);
  for (int w = 0; w < n_workers; ++w) workers.emplace_back(worker);
  for (size_t i = 0; i < workload.size(); ++i) {
    const Clock::time_point at = start + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(workload[i].arrival_s));
    if (at >= run_deadline) break;
    std::this_thread::sleep_until(at);
    {
      std::lock_guard lock(mu);
      ready.push_back(i);
    }
    cv.notify_one();
  }
  {
    std::lock_guard lock(mu);
    dispatch_done = true;
  }
  cv.notify_all();
  for (std::thread& t : workers) t.join();
  const double duration_s = std::chrono::duration<double>(Clock::now() - start).count();

  result.metrics = compute_metrics(result.requests, duration_s);
  return result;
}

}  // namespace moeserve::bench
