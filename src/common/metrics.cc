#include "common/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include "common/status.h"

namespace moeserve {
namespace {

bool valid_name(const std::string& name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// Label names: [a-zA-Z_][a-zA-Z0-9_]*, "__" prefixes reserved, each name once; `le` is the
// histogram bucket label.
void check_labels(const std::string& metric, const MetricLabels& labels, bool histogram) {
  std::set<std::string> seen;
  for (const auto& [key, value] : labels) {
    MS_CHECK(valid_name(key, false) && key.rfind("__", 0) != 0, "metric ", metric,
             ": invalid label name '", key, "'");
    MS_CHECK(!(histogram && key == "le"), "metric ", metric, ": 'le' is reserved for buckets");
    MS_CHECK(seen.insert(key).second, "metric ", metric, ": label '", key, "' given twice");
  }
}

// Label sets compare regardless of order: {a, b} and {b, a} are one series.
bool same_labels(MetricLabels a, MetricLabels b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

// atomic<double>::fetch_add is C++20 but not lock-free everywhere; a CAS loop always is.
void atomic_add(std::atomic<double>& target, double v) {
  double old = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(old, old + v, std::memory_order_relaxed)) {
  }
}

// Indexed by MetricsRegistry::Type (kCounter, kGauge, kHistogram).
const char* type_name(int type) {
  switch (type) {
    case 0: return "counter";
    case 1: return "gauge";
    default: return "histogram";
  }
}

void append_escaped(std::string& out, const std::string& s, bool escape_quote) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && escape_quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

// `{a="x",b="y"}` (or nothing without labels); `le` is appended last when given.
void append_labels(std::string& out, const MetricLabels& labels, const std::string* le) {
  if (labels.empty() && le == nullptr) return;
  out += '{';
  bool first = true;
  for (const auto& [key, value] : labels) {
    if (!first) out += ',';
    first = false;
    out += key;
    out += "=\"";
    append_escaped(out, value, true);
    out += '"';
  }
  if (le != nullptr) {
    if (!first) out += ',';
    out += "le=\"";
    out += *le;
    out += '"';
  }
  out += '}';
}

// Integers print as integers ("12", "1000000"), other values as the shortest text that reads
// back to the same double, in fixed notation where that stays short.
std::string format_metric_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[400];
  std::to_chars_result r;
  const double a = std::fabs(v);
  if (v == std::trunc(v) && a < 1e18) {
    r = std::to_chars(buf, buf + sizeof(buf), static_cast<int64_t>(v));
  } else if (a >= 1e-6 && a < 1e18) {
    r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  } else {
    r = std::to_chars(buf, buf + sizeof(buf), v);
  }
  MS_CHECK(r.ec == std::errc(), "formatting a metric value");
  return std::string(buf, r.ptr);
}

}  // namespace

void Counter::inc(double v) {
  MS_CHECK(v >= 0, "Counter::inc(", v, "): counters only go up");
  atomic_add(value_, v);
}

void Gauge::add(double v) { atomic_add(value_, v); }

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), counts_(upper_bounds_.size() + 1, 0) {
  for (size_t i = 0; i < upper_bounds_.size(); ++i) {
    MS_CHECK(std::isfinite(upper_bounds_[i]), "histogram bound ", i, " is not finite");
    MS_CHECK(i == 0 || upper_bounds_[i - 1] < upper_bounds_[i],
             "histogram bounds must be strictly ascending (bound ", i, ")");
  }
}

void Histogram::observe(double v) {
  // Bucket i counts bound[i-1] < v <= bound[i]: the first bound >= v. NaN goes to +Inf.
  const size_t bucket =
      std::isnan(v)
          ? upper_bounds_.size()
          : static_cast<size_t>(std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), v) -
                                upper_bounds_.begin());
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[bucket];
  sum_ += v;
  ++count_;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.upper_bounds = upper_bounds_;
  s.cumulative.resize(counts_.size());
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t running = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    running += counts_[i];
    s.cumulative[i] = running;
  }
  s.sum = sum_;
  s.count = count_;
  return s;
}

MetricsRegistry::Series& MetricsRegistry::series(const std::string& name, const std::string& help,
                                                 Type type, const MetricLabels& labels) {
  MS_CHECK(valid_name(name, true), "invalid metric name '", name, "'");
  check_labels(name, labels, type == Type::kHistogram);
  auto it = families_.find(name);
  if (it == families_.end()) {
    it = families_.emplace(name, Family{type, help, {}}).first;
    order_.push_back(name);
  }
  Family& family = it->second;
  MS_CHECK(family.type == type, "metric ", name, " registered as a ",
           type_name(static_cast<int>(family.type)), " and again as a ",
           type_name(static_cast<int>(type)));
  for (auto& s : family.series) {
    if (same_labels(s->labels, labels)) return *s;
  }
  family.series.push_back(std::make_unique<Series>());
  family.series.back()->labels = labels;
  return *family.series.back();
}

Counter& MetricsRegistry::counter(const std::string& name, const std::string& help,
                                  MetricLabels labels) {
  std::lock_guard<std::mutex> lock(mu_);
  Series& s = series(name, help, Type::kCounter, labels);
  if (!s.counter) s.counter = std::make_unique<Counter>();
  return *s.counter;
}

Gauge& MetricsRegistry::gauge(const std::string& name, const std::string& help,
                              MetricLabels labels) {
  std::lock_guard<std::mutex> lock(mu_);
  Series& s = series(name, help, Type::kGauge, labels);
  MS_CHECK(!s.fn, "gauge ", name, " with these labels is computed (gauge_fn)");
  if (!s.gauge) s.gauge = std::make_unique<Gauge>();
  return *s.gauge;
}

Histogram& MetricsRegistry::histogram(const std::string& name, const std::string& help,
                                      std::vector<double> upper_bounds, MetricLabels labels) {
  std::lock_guard<std::mutex> lock(mu_);
  Series& s = series(name, help, Type::kHistogram, labels);
  if (!s.histogram) {
    // Every series of one histogram has the same buckets, or quantiles across them mislead.
    const Family& family = families_.at(name);
    for (const auto& other : family.series) {
      if (other->histogram) {
        MS_CHECK(other->histogram->snapshot().upper_bounds == upper_bounds, "histogram ", name,
                 ": buckets differ from its first registration");
        break;
      }
    }
    s.histogram = std::make_unique<Histogram>(std::move(upper_bounds));
  } else {
    MS_CHECK(s.histogram->snapshot().upper_bounds == upper_bounds, "histogram ", name,
             ": buckets differ from its first registration");
  }
  return *s.histogram;
}

void MetricsRegistry::gauge_fn(const std::string& name, const std::string& help,
                               MetricLabels labels, std::function<double()> fn) {
  MS_CHECK(fn != nullptr, "gauge_fn ", name, ": no function");
  std::lock_guard<std::mutex> lock(mu_);
  Series& s = series(name, help, Type::kGauge, labels);
  MS_CHECK(!s.gauge, "gauge ", name, " with these labels is already a plain gauge");
  s.fn = std::move(fn);  // a second registration replaces the function
}

std::string MetricsRegistry::render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const std::string& name : order_) {
    const Family& family = families_.at(name);
    std::string exposed = name;
    if (family.type == Type::kCounter &&
        !(name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0)) {
      exposed += "_total";
    }
    out += "# HELP ";
    out += exposed;
    out += ' ';
    append_escaped(out, family.help, false);
    out += "\n# TYPE ";
    out += exposed;
    out += ' ';
    out += type_name(static_cast<int>(family.type));
    out += '\n';
    for (const auto& s : family.series) {
      if (family.type != Type::kHistogram) {
        const double v = s->counter ? s->counter->value()
                         : s->gauge ? s->gauge->value()
                         : s->fn    ? s->fn()
                                    : 0.0;
        out += exposed;
        append_labels(out, s->labels, nullptr);
        out += ' ';
        out += format_metric_value(v);
        out += '\n';
        continue;
      }
      const Histogram::Snapshot snap = s->histogram->snapshot();
      for (size_t i = 0; i < snap.cumulative.size(); ++i) {
        const std::string le = i < snap.upper_bounds.size()
                                   ? format_metric_value(snap.upper_bounds[i])
                                   : std::string("+Inf");
        out += name;
        out += "_bucket";
        append_labels(out, s->labels, &le);
        out += ' ';
        out += std::to_string(snap.cumulative[i]);
        out += '\n';
      }
      out += name;
      out += "_sum";
      append_labels(out, s->labels, nullptr);
      out += ' ';
      out += format_metric_value(snap.sum);
      out += '\n';
      out += name;
      out += "_count";
      append_labels(out, s->labels, nullptr);
      out += ' ';
      out += std::to_string(snap.count);
      out += '\n';
    }
  }
  return out;
}

}  // namespace moeserve
