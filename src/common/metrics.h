// Prometheus metrics: counters, gauges and histograms in one registry, rendered in the text
// exposition format (version 0.0.4) for GET /metrics. Updates are lock-free (atomics) except
// histogram observations, which take a per-histogram mutex; registration takes the registry
// lock and returns a reference that stays valid for the registry's lifetime.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace moeserve {

// label name → value, e.g. {{"model_name", "tiny"}, {"finished_reason", "stop"}}.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void inc(double v = 1.0);  // v >= 0
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double v);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // sorted ascending, finite; +Inf implied
  void observe(double v);

  struct Snapshot {
    std::vector<double> upper_bounds;
    std::vector<uint64_t> cumulative;  // [upper_bounds.size() + 1], the last is +Inf (= count)
    double sum = 0.0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  std::vector<double> upper_bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; [bounds + 1]
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

class MetricsRegistry {
 public:
  // The same (name, labels) returns the same object. A name keeps the type and help of its
  // first registration; registering it as another type aborts (a programming error). Names
  // follow Prometheus rules ([a-zA-Z_:][a-zA-Z0-9_:]*), checked.
  Counter& counter(const std::string& name, const std::string& help, MetricLabels labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, MetricLabels labels = {});
  Histogram& histogram(const std::string& name, const std::string& help,
                       std::vector<double> upper_bounds, MetricLabels labels = {});
  // A gauge whose value is computed at render time (e.g. from engine stats). `fn` is called
  // under the registry lock, so it must not call back into the registry.
  void gauge_fn(const std::string& name, const std::string& help, MetricLabels labels,
                std::function<double()> fn);

  // Text exposition format: per name "# HELP", "# TYPE", then one line per label set (a
  // counter named x is exposed as x_total, as prometheus_client does; histograms as _bucket
  // with le, _sum, _count). Names in registration order; label values escaped.
  std::string render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series {
    MetricLabels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> fn;
  };
  struct Family {
    Type type;
    std::string help;
    std::vector<std::unique_ptr<Series>> series;
  };
  Series& series(const std::string& name, const std::string& help, Type type,
                 const MetricLabels& labels);

  mutable std::mutex mu_;
  std::vector<std::string> order_;
  std::map<std::string, Family> families_;
};

}  // namespace moeserve
