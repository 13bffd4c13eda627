// MetricsRegistry: the Prometheus text format (0.0.4) written out by hand, histogram buckets,
// escaping, number formatting, concurrency and the programming errors that abort.
#include "common/metrics.h"

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace moeserve {
namespace {

TEST(MetricsTest, RendersASmallRegistryExactly) {
  MetricsRegistry r;
  r.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", {{"model_name", "tiny"}})
      .inc(12);
  r.gauge("vllm:num_requests_running", "Requests in the running batch.", {{"model_name", "tiny"}})
      .set(3);
  Histogram& h = r.histogram("vllm:e2e_request_latency_seconds", "End-to-end latency.",
                             {0.5, 1, 2.5}, {{"model_name", "tiny"}});
  for (double v : {0.25, 0.5, 2.0, 7.0}) h.observe(v);
  r.gauge_fn("vllm:gpu_cache_usage_perc", "KV-cache usage, 1 = full.", {}, [] { return 0.25; });
  // A second series of the first family renders under that family, not at the end.
  r.counter("vllm:prompt_tokens", "ignored: the first help stays", {{"model_name", "other"}})
      .inc(0.5);

  const std::string expected =
      "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
      "# TYPE vllm:prompt_tokens_total counter\n"
      "vllm:prompt_tokens_total{model_name=\"tiny\"} 12\n"
      "vllm:prompt_tokens_total{model_name=\"other\"} 0.5\n"
      "# HELP vllm:num_requests_running Requests in the running batch.\n"
      "# TYPE vllm:num_requests_running gauge\n"
      "vllm:num_requests_running{model_name=\"tiny\"} 3\n"
      "# HELP vllm:e2e_request_latency_seconds End-to-end latency.\n"
      "# TYPE vllm:e2e_request_latency_seconds histogram\n"
      "vllm:e2e_request_latency_seconds_bucket{model_name=\"tiny\",le=\"0.5\"} 2\n"
      "vllm:e2e_request_latency_seconds_bucket{model_name=\"tiny\",le=\"1\"} 2\n"
      "vllm:e2e_request_latency_seconds_bucket{model_name=\"tiny\",le=\"2.5\"} 3\n"
      "vllm:e2e_request_latency_seconds_bucket{model_name=\"tiny\",le=\"+Inf\"} 4\n"
      "vllm:e2e_request_latency_seconds_sum{model_name=\"tiny\"} 9.75\n"
      "vllm:e2e_request_latency_seconds_count{model_name=\"tiny\"} 4\n"
      "# HELP vllm:gpu_cache_usage_perc KV-cache usage, 1 = full.\n"
      "# TYPE vllm:gpu_cache_usage_perc gauge\n"
      "vllm:gpu_cache_usage_perc 0.25\n";
  EXPECT_EQ(r.render(), expected);
}

TEST(MetricsTest, EmptyRegistryRendersNothing) { EXPECT_EQ(MetricsRegistry().render(), ""); }

TEST(MetricsTest, CounterAlreadyEndingInTotalIsNotSuffixedTwice) {
  MetricsRegistry r;
  r.counter("requests_total", "Requests.").inc();
  EXPECT_EQ(r.render(),
            "# HELP requests_total Requests.\n# TYPE requests_total counter\nrequests_total 1\n");
}

TEST(MetricsTest, ValueEqualToABoundGoesInThatBucket) {
  Histogram h({1, 2, 3});
  for (double v : {1.0, std::nextafter(1.0, 2.0), 2.0, 3.0, 3.5, -5.0}) h.observe(v);
  const Histogram::Snapshot s = h.snapshot();
  EXPECT_EQ(s.upper_bounds, (std::vector<double>{1, 2, 3}));
  // le=1: {1, -5}; le=2: + {1+ulp, 2}; le=3: + {3}; +Inf: + {3.5}.
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{2, 4, 5, 6}));
  EXPECT_EQ(s.count, 6u);
  EXPECT_DOUBLE_EQ(s.sum, 1.0 + std::nextafter(1.0, 2.0) + 2 + 3 + 3.5 - 5);
}

TEST(MetricsTest, HistogramWithoutBoundsHasOnlyInf) {
  MetricsRegistry r;
  r.histogram("h", "H.", {}).observe(4);
  EXPECT_EQ(r.render(),
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 4\nh_count 1\n");
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  MetricsRegistry r;
  r.gauge("g", "line one\nback\\slash \"quoted\"", {{"path", "a\\b\"c\nd"}, {"x", "plain"}}).set(1);
  // Help escapes backslash and newline; label values also escape the double quote.
  EXPECT_EQ(r.render(),
            "# HELP g line one\\nback\\\\slash \"quoted\"\n"
            "# TYPE g gauge\n"
            "g{path=\"a\\\\b\\\"c\\nd\",x=\"plain\"} 1\n");
}

// The value text of a gauge set to `v`.
std::string rendered_value(double v) {
  MetricsRegistry r;
  r.gauge("g", "G.").set(v);
  const std::string text = r.render();
  const std::string prefix = "# HELP g G.\n# TYPE g gauge\ng ";
  EXPECT_EQ(text.substr(0, prefix.size()), prefix);
  EXPECT_EQ(text.back(), '\n');
  return text.substr(prefix.size(), text.size() - prefix.size() - 1);
}

TEST(MetricsTest, FormatsNumbersWithoutExponentNoise) {
  EXPECT_EQ(rendered_value(0), "0");
  EXPECT_EQ(rendered_value(-0.0), "0");
  EXPECT_EQ(rendered_value(7), "7");
  EXPECT_EQ(rendered_value(1e6), "1000000");
  EXPECT_EQ(rendered_value(123456789012.0), "123456789012");
  EXPECT_EQ(rendered_value(-42), "-42");
  EXPECT_EQ(rendered_value(0.1), "0.1");
  EXPECT_EQ(rendered_value(-2.5), "-2.5");
  EXPECT_EQ(rendered_value(0.001), "0.001");
  EXPECT_EQ(rendered_value(1.0 / 3), "0.3333333333333333");
  EXPECT_EQ(rendered_value(1e-9), "1e-09");
  EXPECT_EQ(rendered_value(1e20), "1e+20");
  EXPECT_EQ(rendered_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(rendered_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(rendered_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(MetricsTest, SameNameAndLabelsReturnTheSameObject) {
  MetricsRegistry r;
  Counter& a = r.counter("c", "C.", {{"x", "1"}, {"y", "2"}});
  EXPECT_EQ(&a, &r.counter("c", "C.", {{"x", "1"}, {"y", "2"}}));
  EXPECT_EQ(&a, &r.counter("c", "C.", {{"y", "2"}, {"x", "1"}}));  // label order does not matter
  EXPECT_NE(&a, &r.counter("c", "C.", {{"x", "1"}, {"y", "3"}}));
  EXPECT_NE(&a, &r.counter("c", "C.", {{"x", "1"}}));
  Gauge& g = r.gauge("g", "G.");
  EXPECT_EQ(&g, &r.gauge("g", "G."));
  Histogram& h = r.histogram("h", "H.", {1, 2});
  EXPECT_EQ(&h, &r.histogram("h", "H.", {1, 2}));
  a.inc(2);
  r.counter("c", "C.", {{"y", "2"}, {"x", "1"}}).inc(3);
  EXPECT_EQ(a.value(), 5);
}

TEST(MetricsTest, GaugeFnIsEvaluatedAtRenderTimeAndCanBeReplaced) {
  MetricsRegistry r;
  int calls = 0;
  r.gauge_fn("waiting", "Waiting.", {}, [&calls] { return ++calls; });
  EXPECT_EQ(r.render(), "# HELP waiting Waiting.\n# TYPE waiting gauge\nwaiting 1\n");
  EXPECT_EQ(r.render(), "# HELP waiting Waiting.\n# TYPE waiting gauge\nwaiting 2\n");
  r.gauge_fn("waiting", "Waiting.", {}, [] { return 9.5; });
  EXPECT_EQ(r.render(), "# HELP waiting Waiting.\n# TYPE waiting gauge\nwaiting 9.5\n");
}

TEST(MetricsTest, GaugeAddsAndSets) {
  Gauge g;
  g.add(2.5);
  g.add(-1);
  EXPECT_EQ(g.value(), 1.5);
  g.set(-4);
  EXPECT_EQ(g.value(), -4);
}

TEST(MetricsTest, ConcurrentUpdatesAndRegistrationsLoseNothing) {
  MetricsRegistry r;
  constexpr int kThreads = 4;
  constexpr int kIters = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&r, t] {
      Counter& c = r.counter("c", "C.", {{"k", "shared"}});
      Gauge& g = r.gauge("g", "G.");
      Histogram& h = r.histogram("h", "H.", {0.5});
      for (int i = 0; i < kIters; ++i) {
        c.inc();
        g.add(i % 2 == 0 ? 2 : -1);
        h.observe(i % 2 == 0 ? 0.25 : 1);
        // Registration races with updates and renders, and always finds the same objects.
        if (i % 1000 == 0) {
          r.counter("c", "C.", {{"k", "shared"}}).inc(0);
          r.counter("per_thread", "P.", {{"t", std::to_string(t)}}).inc();
          (void)r.render();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(r.counter("c", "C.", {{"k", "shared"}}).value(), kThreads * kIters);
  EXPECT_EQ(r.gauge("g", "G.").value(), kThreads * kIters / 2);
  const Histogram::Snapshot s = r.histogram("h", "H.", {0.5}).snapshot();
  EXPECT_EQ(s.count, uint64_t{kThreads} * kIters);
  EXPECT_EQ(s.cumulative[0], uint64_t{kThreads} * kIters / 2);
  EXPECT_DOUBLE_EQ(s.sum, kThreads * kIters / 2 * 1.25);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(r.counter("per_thread", "P.", {{"t", std::to_string(t)}}).value(), kIters / 1000);
  }
}

using MetricsDeathTest = ::testing::Test;

TEST_F(MetricsDeathTest, InvalidNamesAbort) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  MetricsRegistry r;
  EXPECT_DEATH(r.counter("", "C."), "invalid metric name");
  EXPECT_DEATH(r.counter("1abc", "C."), "invalid metric name '1abc'");
  EXPECT_DEATH(r.gauge("a-b", "G."), "invalid metric name 'a-b'");
  EXPECT_DEATH(r.gauge("a b", "G."), "invalid metric name");
  EXPECT_DEATH(r.gauge("g", "G.", {{"bad-label", "x"}}), "invalid label name 'bad-label'");
  EXPECT_DEATH(r.gauge("g", "G.", {{"a:b", "x"}}), "invalid label name 'a:b'");
  EXPECT_DEATH(r.gauge("g", "G.", {{"__reserved", "x"}}), "invalid label name '__reserved'");
  EXPECT_DEATH(r.gauge("g", "G.", {{"a", "x"}, {"a", "y"}}), "label 'a' given twice");
  EXPECT_DEATH(r.histogram("h", "H.", {1}, {{"le", "1"}}), "'le' is reserved");
  // Valid names with colons, digits and underscores are fine.
  r.counter("_a:b_9", "C.").inc();
  r.gauge("g", "G.", {{"_l9", "x"}}).set(1);
}

TEST_F(MetricsDeathTest, MisuseAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  MetricsRegistry r;
  r.counter("c", "C.");
  EXPECT_DEATH(r.gauge("c", "G."), "registered as a counter and again as a gauge");
  EXPECT_DEATH(r.histogram("c", "H.", {1}), "registered as a counter and again as a histogram");
  EXPECT_DEATH(r.counter("c", "C.").inc(-1), "counters only go up");
  EXPECT_DEATH(Histogram({2, 1}), "strictly ascending");
  EXPECT_DEATH(Histogram({1, 1}), "strictly ascending");
  EXPECT_DEATH(Histogram({1, std::numeric_limits<double>::infinity()}), "not finite");
  r.histogram("h", "H.", {1, 2});
  EXPECT_DEATH(r.histogram("h", "H.", {1, 3}), "buckets differ");
  EXPECT_DEATH(r.histogram("h", "H.", {1, 3}, {{"x", "y"}}), "buckets differ");
  r.gauge_fn("f", "F.", {}, [] { return 1.0; });
  EXPECT_DEATH(r.gauge("f", "F."), "computed");
  r.gauge("plain", "P.");
  EXPECT_DEATH(r.gauge_fn("plain", "P.", {}, [] { return 1.0; }), "already a plain gauge");
}

}  // namespace
}  // namespace moeserve
