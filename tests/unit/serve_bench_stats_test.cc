// serve_bench's offline logic (bench/serve_bench_lib.h): percentiles, the SSE parser, arrival
// times, the random workload, the fold of stream events and the metrics. Expected values are
// worked out by hand in the comments.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../../bench/serve_bench_lib.h"
#include "gtest/gtest.h"
#include "seeded_test.h"

namespace moeserve::bench {
namespace {

TEST(ServeBenchStats, PercentileInterpolatesLinearlyBetweenRanks) {
  // {1, 2, 3, 4} (given unsorted): rank = p/100 · 3.
  const std::vector<double> v = {3, 1, 4, 2};
  EXPECT_DOUBLE_EQ(percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(percentile(v, 50), 2.5);   // rank 1.5: 2 + 0.5·1
  EXPECT_DOUBLE_EQ(percentile(v, 90), 3.7);   // rank 2.7: 3 + 0.7·1
  EXPECT_DOUBLE_EQ(percentile(v, 99), 3.97);  // rank 2.97
  EXPECT_DOUBLE_EQ(percentile(v, 100), 4);
  EXPECT_DOUBLE_EQ(percentile({0, 10}, 90), 9);  // rank 0.9
  EXPECT_DOUBLE_EQ(percentile({7}, 99), 7);
  EXPECT_DOUBLE_EQ(percentile({}, 50), 0);
  // Five values, rank 0.25 · 4 = 1: exactly the second smallest.
  EXPECT_DOUBLE_EQ(percentile({50, 10, 40, 20, 30}, 25), 20);
}

TEST(ServeBenchStats, MeanAndPopulationStddev) {
  // {2, 4, 4, 4, 5, 5, 7, 9}: mean 5, squared deviations sum 32, population variance 4.
  const std::vector<double> v = {2, 4, 4, 4, 5, 5, 7, 9};
  EXPECT_DOUBLE_EQ(mean(v), 5);
  EXPECT_DOUBLE_EQ(stddev(v), 2);
  EXPECT_DOUBLE_EQ(mean({}), 0);
  EXPECT_DOUBLE_EQ(stddev({}), 0);
}

std::vector<SseEvent> parse_in_pieces(const std::string& body, size_t piece) {
  std::vector<SseEvent> events;
  SseParser p;
  auto collect = [&](const SseEvent& e) { events.push_back(e); };
  for (size_t i = 0; i < body.size(); i += piece) p.feed(body.substr(i, piece), collect);
  p.finish(collect);
  return events;
}

TEST(ServeBenchStats, SseParserHandlesAnySplitAndLineEnding) {
  const std::string body =
      ": keep-alive comment\n\n"
      "data: {\"a\":1}\n\n"
      "data:{\"b\":2}\r\n\r\n"              // no space after the colon, CRLF
      "event: error\rdata: x\rdata: y\r\r"  // CR only, two data lines, a named event
      "id: 7\n\n"                           // an event without data: not dispatched
      "data: [DONE]\n\n";
  for (size_t piece = 1; piece <= body.size(); ++piece) {
    SCOPED_TRACE(piece);
    const std::vector<SseEvent> events = parse_in_pieces(body, piece);
    ASSERT_EQ(events.size(), 4u);
    EXPECT_EQ(events[0].data, "{\"a\":1}");
    EXPECT_EQ(events[0].event, "");
    EXPECT_EQ(events[1].data, "{\"b\":2}");
    EXPECT_EQ(events[2].event, "error");
    EXPECT_EQ(events[2].data, "x\ny");
    EXPECT_EQ(events[3].data, "[DONE]");
  }
}

TEST(ServeBenchStats, SseParserFinishDispatchesAnUnterminatedEvent) {
  const std::vector<SseEvent> events = parse_in_pieces("data: last", 3);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "last");
}

using ServeBenchArrivals = test::SeededTest;

// Gamma(k, θ = 1/(rate·k)) has mean 1/rate and coefficient of variation 1/√k.
TEST_F(ServeBenchArrivals, MeanIsOneOverRateAndBurstinessSetsTheSpread) {
  struct Case {
    double rate, burstiness;
  };
  for (const Case c : {Case{4, 1}, Case{50, 0.25}, Case{0.5, 4}}) {
    SCOPED_TRACE(testing::Message() << "rate " << c.rate << " burstiness " << c.burstiness);
    InterArrivalGenerator gen(c.rate, c.burstiness, seed_);
    std::vector<double> gaps(50000);
    for (double& g : gaps) {
      g = gen.next();
      ASSERT_GE(g, 0);
    }
    const double m = mean(gaps), cv = stddev(gaps) / m;
    // Standard error of the mean is (1/rate)·CV/√n ≤ 0.9 %; of the CV, under 2 % for k = 0.25.
    EXPECT_NEAR(m * c.rate, 1.0, 0.05);
    EXPECT_NEAR(cv, 1 / std::sqrt(c.burstiness), 0.1 / std::sqrt(c.burstiness));
  }
}

TEST(ServeBenchWorkload, InfiniteRateSendsEverythingAtOnce) {
  ServeBenchOptions o;
  o.n_prompts = 20;
  o.random_input_len = 8;
  o.random_output_len = 4;
  for (const BenchRequest& r : make_workload(o, "m")) EXPECT_EQ(r.arrival_s, 0);
}

TEST_F(ServeBenchArrivals, WorkloadArrivalsIncreaseFromZero) {
  ServeBenchOptions o;
  o.n_prompts = 400;
  o.random_input_len = 2;
  o.random_output_len = 2;
  o.request_rate = 10;
  o.seed = seed_;
  const std::vector<BenchRequest> w = make_workload(o, "m");
  EXPECT_EQ(w[0].arrival_s, 0);
  for (size_t i = 1; i < w.size(); ++i) EXPECT_GE(w[i].arrival_s, w[i - 1].arrival_s);
  // 399 gaps of mean 0.1 s, standard deviation 0.1 s each: the sum is 39.9 ± 2 s (1 σ).
  EXPECT_NEAR(w.back().arrival_s, 39.9, 10);
}

TEST(ServeBenchWorkload, TokenIdPromptsHaveExactLengthsInRange) {
  ServeBenchOptions o;
  o.n_prompts = 200;
  o.random_input_len = 40;
  o.random_output_len = 10;
  o.random_range_ratio = 0.5;  // inputs in [20, 60], outputs in [5, 15]
  o.random_vocab_size = 150;   // ids in [100, 150)
  o.seed = 7;
  std::vector<int> seen_inputs, seen_outputs;
  for (const BenchRequest& r : make_workload(o, "the-model")) {
    const nlohmann::json j = nlohmann::json::parse(r.body);
    EXPECT_EQ(j["model"], "the-model");
    EXPECT_EQ(j["stream"], true);
    EXPECT_EQ(j["stream_options"]["include_usage"], true);
    EXPECT_EQ(j["ignore_eos"], true);
    EXPECT_EQ(j["max_tokens"], r.output_len);
    ASSERT_TRUE(j["prompt"].is_array());
    EXPECT_EQ(static_cast<int>(j["prompt"].size()), r.input_len);
    for (const auto& id : j["prompt"]) {
      EXPECT_GE(id.get<int>(), 100);
      EXPECT_LT(id.get<int>(), 150);
    }
    EXPECT_GE(r.input_len, 20);
    EXPECT_LE(r.input_len, 60);
    EXPECT_GE(r.output_len, 5);
    EXPECT_LE(r.output_len, 15);
    seen_inputs.push_back(r.input_len);
    seen_outputs.push_back(r.output_len);
  }
  // 200 draws from 41 (11) equally likely lengths reach near both ends.
  EXPECT_LE(*std::min_element(seen_inputs.begin(), seen_inputs.end()), 23);
  EXPECT_GE(*std::max_element(seen_inputs.begin(), seen_inputs.end()), 57);
  EXPECT_EQ(*std::min_element(seen_outputs.begin(), seen_outputs.end()), 5);
  EXPECT_EQ(*std::max_element(seen_outputs.begin(), seen_outputs.end()), 15);
  // Same seed, same workload; another seed, another.
  EXPECT_EQ(make_workload(o, "the-model")[3].body, make_workload(o, "the-model")[3].body);
  ServeBenchOptions other = o;
  other.seed = 8;
  EXPECT_NE(make_workload(o, "the-model")[3].body, make_workload(other, "the-model")[3].body);
}

TEST(ServeBenchWorkload, ChatPromptsAreWordsAndRatioZeroIsExact) {
  ServeBenchOptions o;
  o.endpoint = "/v1/chat/completions";
  o.n_prompts = 5;
  o.random_input_len = 12;
  o.random_output_len = 3;
  o.ignore_eos = false;
  for (const BenchRequest& r : make_workload(o, "m")) {
    const nlohmann::json j = nlohmann::json::parse(r.body);
    EXPECT_FALSE(j.contains("ignore_eos"));
    EXPECT_EQ(r.output_len, 3);
    EXPECT_EQ(j["messages"][0]["role"], "user");
    const std::string text = j["messages"][0]["content"];
    EXPECT_EQ(std::count(text.begin(), text.end(), ' '), 11);  // 12 words
  }
}

TEST(ServeBenchEvents, CompletionChunksTimeContentAndReadUsage) {
  RequestResult r;
  const auto event = [](std::string data) { return SseEvent{"", std::move(data)}; };
  EXPECT_TRUE(apply_event(event(R"({"choices":[{"text":""}]})"), 0.05, false, r));
  EXPECT_EQ(r.ttft_s, -1);  // an empty text is not content
  EXPECT_TRUE(apply_event(event(R"({"choices":[{"text":"a"}]})"), 0.10, false, r));
  EXPECT_TRUE(apply_event(event(R"({"choices":[{"text":"b"}]})"), 0.13, false, r));
  EXPECT_TRUE(apply_event(event(R"({"choices":[{"text":"c"}]})"), 0.20, false, r));
  EXPECT_TRUE(
      apply_event(event(R"({"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":5}})"),
                  0.21, false, r));
  EXPECT_TRUE(apply_event(event("[DONE]"), 0.22, false, r));
  EXPECT_TRUE(r.done);
  EXPECT_DOUBLE_EQ(r.ttft_s, 0.10);
  ASSERT_EQ(r.itl_s.size(), 2u);
  EXPECT_NEAR(r.itl_s[0], 0.03, 1e-12);
  EXPECT_NEAR(r.itl_s[1], 0.07, 1e-12);
  EXPECT_EQ(r.n_content_chunks, 3);
  EXPECT_EQ(r.output_tokens(), 5);  // usage wins over the chunk count
  EXPECT_EQ(r.input_tokens(), 9);
}

TEST(ServeBenchEvents, ChatRoleChunkIsNotContentAndReasoningIs) {
  RequestResult r;
  r.input_len = 4;
  EXPECT_TRUE(apply_event({"", R"({"choices":[{"delta":{"role":"assistant","content":""}}]})"},
                          0.01, true, r));
  EXPECT_EQ(r.ttft_s, -1);
  EXPECT_TRUE(
      apply_event({"", R"({"choices":[{"delta":{"reasoning_content":"hm"}}]})"}, 0.02, true, r));
  EXPECT_TRUE(apply_event({"", R"({"choices":[{"delta":{"content":"ok"}}]})"}, 0.05, true, r));
  EXPECT_DOUBLE_EQ(r.ttft_s, 0.02);
  EXPECT_EQ(r.output_tokens(), 2);  // no usage: the content chunks
  EXPECT_EQ(r.input_tokens(), 4);   // no usage: the workload's length
}

TEST(ServeBenchEvents, ErrorsAreReported) {
  RequestResult a, b, c;
  EXPECT_FALSE(
      apply_event({"", R"({"error":{"message":"out of memory","code":500}})"}, 0, false, a));
  EXPECT_NE(a.error.find("out of memory"), std::string::npos);
  EXPECT_FALSE(apply_event({"error", R"({"detail":"x"})"}, 0, false, b));
  EXPECT_NE(b.error.find("detail"), std::string::npos);
  EXPECT_FALSE(apply_event({"", "not json"}, 0, false, c));
  EXPECT_NE(c.error.find("not JSON"), std::string::npos);
}

TEST(ServeBenchMetrics, FiguresFromHandMadeResults) {
  RequestResult a;  // 5 tokens: TTFT 0.1 s, E2E 0.5 s → TPOT (0.5 − 0.1)/4 = 0.1 s
  a.sent = a.success = true;
  a.input_len = 10;
  a.ttft_s = 0.1;
  a.e2e_s = 0.5;
  a.itl_s = {0.1, 0.1, 0.1, 0.1};
  a.completion_tokens = 5;
  RequestResult b;  // one token: no TPOT, no ITL
  b.sent = b.success = true;
  b.input_len = 20;
  b.prompt_tokens = 30;  // the server's count is used
  b.ttft_s = 0.3;
  b.e2e_s = 0.3;
  b.n_content_chunks = 1;
  RequestResult failed;
  failed.sent = true;
  failed.error = "HTTP 500";
  failed.ttft_s = 9;
  RequestResult unsent;
  const BenchmarkMetrics m = compute_metrics({a, b, failed, unsent}, 2.0);
  EXPECT_EQ(m.n_completed, 2);
  EXPECT_EQ(m.n_failed, 1);
  EXPECT_EQ(m.n_not_sent, 1);
  EXPECT_EQ(m.total_input, 40);                      // 10 + 30
  EXPECT_EQ(m.total_output, 6);                      // 5 + 1
  EXPECT_DOUBLE_EQ(m.request_throughput, 1.0);       // 2 / 2 s
  EXPECT_DOUBLE_EQ(m.output_throughput, 3.0);        // 6 / 2 s
  EXPECT_DOUBLE_EQ(m.total_token_throughput, 23.0);  // 46 / 2 s
  EXPECT_DOUBLE_EQ(m.ttft_ms.mean, 200);             // (100 + 300) / 2
  EXPECT_DOUBLE_EQ(m.ttft_ms.median, 200);
  EXPECT_DOUBLE_EQ(m.ttft_ms.p99, 298);  // 100 + 0.99 · 200
  EXPECT_DOUBLE_EQ(m.ttft_ms.std, 100);
  EXPECT_DOUBLE_EQ(m.tpot_ms.mean, 100);
  EXPECT_DOUBLE_EQ(m.itl_ms.mean, 100);
  EXPECT_DOUBLE_EQ(m.itl_ms.p99, 100);
  EXPECT_DOUBLE_EQ(m.e2el_ms.mean, 400);  // (500 + 300) / 2
  EXPECT_DOUBLE_EQ(m.e2el_ms.p90, 480);   // 300 + 0.9 · 200
  EXPECT_EQ(first_errors({a, failed, failed}, 5), std::vector<std::string>{"HTTP 500"});

  const std::string report = format_report(m);
  EXPECT_NE(report.find("Successful requests:"), std::string::npos);
  EXPECT_NE(report.find("Mean TTFT (ms):"), std::string::npos);
  const nlohmann::json j = metrics_json(ServeBenchOptions{}, "m", m, {a, b, failed, unsent});
  EXPECT_EQ(j["completed"], 2);
  EXPECT_EQ(j["request_rate"], "inf");
  EXPECT_DOUBLE_EQ(j["p99_ttft_ms"].get<double>(), 298);
  EXPECT_EQ(j["input_lens"].size(), 3u);  // the sent requests
}

}  // namespace
}  // namespace moeserve::bench
