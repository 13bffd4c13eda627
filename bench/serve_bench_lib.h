// serve_bench's logic that needs no network: the synthetic workload (random prompts, Poisson or
// gamma arrivals), the Server-Sent Events parser, the fold of one streamed response into a
// RequestResult, and the metrics over all of them (vLLM's `vllm bench serve` definitions).
// Header-only so that the tool and its tests share one copy; serve_bench_client.h adds the HTTP
// client and the run loop.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace moeserve::bench {

// ---- options -------------------------------------------------------------------------------

struct ServeBenchOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string endpoint = "/v1/completions";  // or /v1/chat/completions
  std::string model;                         // "" = the first id listed by GET /v1/models
  std::string api_key;                       // "" = no Authorization header
  int n_prompts = 1000;
  int random_input_len = 1024;    // prompt tokens (ids) or words (text prompts)
  int random_output_len = 128;    // max_tokens
  double random_range_ratio = 0;  // lengths uniform in [L(1-R), L(1+R)], R in [0, 1)
  int random_vocab_size = 32000;  // token-id prompts draw ids from [kMinPromptId, this)
  bool text_prompts = false;      // /v1/completions with random words instead of ids
  double request_rate = std::numeric_limits<double>::infinity();  // req/s; inf = all at t=0
  double burstiness = 1;    // gamma shape of inter-arrival times; 1 = Poisson
  int max_concurrency = 0;  // requests in flight at most; 0 = no limit (see kMaxWorkers)
  uint64_t seed = 0;
  bool ignore_eos = true;       // sends ignore_eos so every request makes max_tokens tokens
  double timeout_s = 300;       // per request, from connect to the end of the stream
  double max_duration_s = 600;  // no request is sent after this; in-flight ones are cut here
  bool warmup = true;           // one request before the run (not measured) to fail fast
};

// Token ids below this are left out of random prompts: most vocabularies put special tokens
// there, and a prompt made of them may be rejected or stop at once.
constexpr int kMinPromptId = 100;

inline bool is_chat_endpoint(const std::string& endpoint) {
  return endpoint.find("chat/completions") != std::string::npos;
}

// ---- statistics ----------------------------------------------------------------------------

// The p-th percentile (p in [0, 100]) with linear interpolation between closest ranks, as numpy's
// default: rank = p/100 · (n − 1). 0 for an empty list.
inline double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = p / 100 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (rank - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

inline double mean(const std::vector<double>& values) {
  if (values.empty()) return 0;
  double sum = 0;
  for (double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

// Population standard deviation (numpy's default, ddof = 0).
inline double stddev(const std::vector<double>& values) {
  if (values.empty()) return 0;
  const double m = mean(values);
  double sum = 0;
  for (double v : values) sum += (v - m) * (v - m);
  return std::sqrt(sum / static_cast<double>(values.size()));
}

// ---- workload ------------------------------------------------------------------------------

// Inter-arrival times of a gamma process with mean 1/rate: shape = burstiness, scale =
// 1/(rate · burstiness). Burstiness 1 is a Poisson process; below 1 burstier, above 1 steadier.
// An infinite rate gives 0 (every request at once).
class InterArrivalGenerator {
 public:
  InterArrivalGenerator(double rate, double burstiness, uint64_t seed)
      : infinite_(std::isinf(rate)),
        gamma_(burstiness, infinite_ ? 1.0 : 1.0 / (rate * burstiness)),
        rng_(seed) {}
  double next() { return infinite_ ? 0.0 : gamma_(rng_); }

 private:
  bool infinite_;
  std::gamma_distribution<double> gamma_;
  std::mt19937_64 rng_;
};

struct BenchRequest {
  int input_len = 0;     // prompt tokens asked for: exact for id prompts, words for text prompts
  int output_len = 0;    // max_tokens
  double arrival_s = 0;  // send time, from the start of the run
  std::string body;      // the JSON request body
};

// Short common English words: most tokenizers make each (with its leading space) one token, so
// a prompt of N words is roughly N tokens; the server's usage.prompt_tokens gives the real count.
inline const std::vector<std::string>& prompt_words() {
  static const std::vector<std::string> words = {
      "time",     "year",    "people",   "way",    "day",    "man",     "thing",   "woman",
      "life",     "child",   "world",    "school", "state",  "family",  "student", "group",
      "country",  "problem", "hand",     "part",   "place",  "case",    "week",    "company",
      "system",   "program", "question", "work",   "number", "night",   "point",   "home",
      "water",    "room",    "mother",   "area",   "money",  "story",   "fact",    "month",
      "lot",      "right",   "study",    "book",   "eye",    "job",     "word",    "business",
      "issue",    "side",    "kind",     "head",   "house",  "service", "friend",  "father",
      "power",    "hour",    "game",     "line",   "end",    "member",  "law",     "car",
      "city",     "name",    "team",     "minute", "idea",   "kid",     "body",    "back",
      "parent",   "face",    "others",   "level",  "office", "door",    "health",  "person",
      "art",      "war",     "history",  "party",  "result", "change",  "morning", "reason",
      "research", "girl",    "guy",      "moment", "air",    "teacher", "force"};
  return words;
}

// The n_prompts requests of a "random" dataset run, deterministic in options.seed: lengths
// uniform in [⌊L(1−R)⌋, ⌈L(1+R)⌉] (outputs at least 1), prompts of random token ids in
// [kMinPromptId, vocab) for /v1/completions (the input length is then exact) or random words
// (chat, or text_prompts), arrival times from InterArrivalGenerator (the first at 0).
inline std::vector<BenchRequest> make_workload(const ServeBenchOptions& o,
                                               const std::string& model) {
  std::mt19937_64 rng(o.seed);
  auto uniform_len = [&](int len, int min) {
    const int lo = std::max(min, static_cast<int>(std::floor(len * (1 - o.random_range_ratio))));
    const int hi = std::max(lo, static_cast<int>(std::ceil(len * (1 + o.random_range_ratio))));
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  const bool chat = is_chat_endpoint(o.endpoint);
  const auto& words = prompt_words();
  std::uniform_int_distribution<int> pick_id(kMinPromptId,
                                             std::max(kMinPromptId, o.random_vocab_size - 1));
  std::uniform_int_distribution<size_t> pick_word(0, words.size() - 1);
  InterArrivalGenerator arrivals(o.request_rate, o.burstiness, o.seed + 1);

  std::vector<BenchRequest> requests(o.n_prompts);
  double t = 0;
  for (int i = 0; i < o.n_prompts; ++i) {
    BenchRequest& r = requests[i];
    r.input_len = uniform_len(o.random_input_len, 1);
    r.output_len = uniform_len(o.random_output_len, 1);
    r.arrival_s = t;
    t += arrivals.next();

    nlohmann::json body = {{"model", model},
                           {"max_tokens", r.output_len},
                           {"temperature", 0.0},
                           {"stream", true},
                           {"stream_options", {{"include_usage", true}}}};
    if (o.ignore_eos) body["ignore_eos"] = true;
    if (chat || o.text_prompts) {
      std::string text;
      for (int k = 0; k < r.input_len; ++k) {
        if (k > 0) text += ' ';
        text += words[pick_word(rng)];
      }
      if (chat) {
        body["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", text}}});
      } else {
        body["prompt"] = text;
      }
    } else {
      std::vector<int> ids(r.input_len);
      for (int& id : ids) id = pick_id(rng);
      body["prompt"] = ids;
    }
    r.body = body.dump();
  }
  return requests;
}

// ---- Server-Sent Events ---------------------------------------------------------------------

struct SseEvent {
  std::string event;  // the "event:" field; "" when absent (a plain message)
  std::string data;   // the "data:" lines joined by '\n'
};

// Splits a text/event-stream body, fed in pieces of any size, into events (the WHATWG rules:
// lines end in LF, CRLF or CR; a blank line ends an event; ":" lines are comments; one space
// after "field:" is dropped; events without data are not dispatched).
class SseParser {
 public:
  template <typename OnEvent>  // void(const SseEvent&)
  void feed(std::string_view bytes, OnEvent&& on_event) {
    for (char c : bytes) {
      if (after_cr_ && c == '\n') {  // the LF of a CRLF
        after_cr_ = false;
        continue;
      }
      after_cr_ = c == '\r';
      if (c == '\r' || c == '\n') {
        end_line(on_event);
      } else {
        line_ += c;
      }
    }
  }
  // At the end of the body: dispatches an event that lacked its closing blank line (lenient:
  // the standard would drop it).
  template <typename OnEvent>
  void finish(OnEvent&& on_event) {
    if (!line_.empty()) end_line(on_event);
    end_line(on_event);
  }

 private:
  template <typename OnEvent>
  void end_line(OnEvent& on_event) {
    if (line_.empty()) {
      if (has_data_) {
        if (!current_.data.empty() && current_.data.back() == '\n') current_.data.pop_back();
        on_event(current_);
      }
      current_ = SseEvent{};
      has_data_ = false;
      return;
    }
    if (line_[0] != ':') {
      const size_t colon = line_.find(':');
      const std::string field = line_.substr(0, colon);
      std::string value = colon == std::string::npos ? "" : line_.substr(colon + 1);
      if (!value.empty() && value[0] == ' ') value.erase(0, 1);
      if (field == "data") {
        current_.data += value;
        current_.data += '\n';
        has_data_ = true;
      } else if (field == "event") {
        current_.event = value;
      }
    }
    line_.clear();
  }

  std::string line_;
  SseEvent current_;
  bool has_data_ = false;
  bool after_cr_ = false;
};

// ---- one request's outcome -----------------------------------------------------------------

struct RequestResult {
  bool sent = false;           // false: the run ended (max duration) before its turn
  bool success = false;        // sent, HTTP 200, no error event, at least one content chunk, ended
  std::string error;           // why not, for a sent request that failed
  int input_len = 0;           // from the workload
  int prompt_tokens = -1;      // usage.prompt_tokens; -1 = not reported
  int completion_tokens = -1;  // usage.completion_tokens; -1 = not reported
  int n_content_chunks = 0;    // chunks carrying generated text
  bool done = false;           // "[DONE]" seen
  // Seconds from just before connecting.
  double ttft_s = -1;          // first content chunk; -1 = none yet
  double last_content_s = -1;  // latest content chunk
  double e2e_s = 0;            // end of the stream
  std::vector<double> itl_s;   // gaps between consecutive content chunks

  // What the figures count: the server's usage when it sent one, else the workload / chunks.
  int input_tokens() const { return prompt_tokens >= 0 ? prompt_tokens : input_len; }
  int output_tokens() const {
    return completion_tokens >= 0 ? completion_tokens : n_content_chunks;
  }
};

// Folds one event of a completions (chat = false) or chat-completions stream, received at t_s,
// into `r`. Content is choices[0].text, or for chat delta.content / reasoning_content /
// reasoning (a role-only first delta is not content). Returns false on an error event.
inline bool apply_event(const SseEvent& event, double t_s, bool chat, RequestResult& r) {
  if (event.data == "[DONE]") {
    r.done = true;
    return true;
  }
  const nlohmann::json j = nlohmann::json::parse(event.data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    r.error = "stream: not JSON: " + event.data.substr(0, 200);
    return false;
  }
  if (event.event == "error" || j.contains("error")) {
    const nlohmann::json& e = j.contains("error") ? j["error"] : j;
    r.error = "error event: " + (e.is_object() && e.contains("message") && e["message"].is_string()
                                     ? e["message"].get<std::string>()
                                     : e.dump());
    return false;
  }
  if (auto it = j.find("usage"); it != j.end() && it->is_object()) {
    if (auto c = it->find("completion_tokens"); c != it->end() && c->is_number_integer()) {
      r.completion_tokens = c->get<int>();
    }
    if (auto p = it->find("prompt_tokens"); p != it->end() && p->is_number_integer()) {
      r.prompt_tokens = p->get<int>();
    }
  }
  auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array() || choices->empty()) return true;
  const nlohmann::json& choice = (*choices)[0];
  bool has_content = false;
  auto non_empty = [](const nlohmann::json& obj, const char* key) {
    auto v = obj.find(key);
    return v != obj.end() && v->is_string() && !v->get_ref<const std::string&>().empty();
  };
  if (chat) {
    auto delta = choice.find("delta");
    has_content = delta != choice.end() && delta->is_object() &&
                  (non_empty(*delta, "content") || non_empty(*delta, "reasoning_content") ||
                   non_empty(*delta, "reasoning"));
  } else {
    has_content = non_empty(choice, "text");
  }
  if (has_content) {
    if (r.ttft_s < 0) {
      r.ttft_s = t_s;
    } else {
      r.itl_s.push_back(t_s - r.last_content_s);
    }
    r.last_content_s = t_s;
    ++r.n_content_chunks;
  }
  return true;
}

// ---- metrics -------------------------------------------------------------------------------

struct LatencySummary {  // milliseconds
  double mean = 0, median = 0, std = 0, p90 = 0, p99 = 0;
};

inline LatencySummary summarize_ms(const std::vector<double>& seconds) {
  std::vector<double> ms;
  ms.reserve(seconds.size());
  for (double s : seconds) ms.push_back(s * 1000);
  return {mean(ms), percentile(ms, 50), stddev(ms), percentile(ms, 90), percentile(ms, 99)};
}

struct BenchmarkMetrics {
  int n_completed = 0;  // successful requests
  int n_failed = 0;     // sent and failed
  int n_not_sent = 0;   // cut by max_duration_s
  double duration_s = 0;
  int64_t total_input = 0;            // over successful requests
  int64_t total_output = 0;           // over successful requests
  double request_throughput = 0;      // successful requests / duration
  double output_throughput = 0;       // generated tokens / duration
  double total_token_throughput = 0;  // (input + generated tokens) / duration
  LatencySummary ttft_ms;             // time to first token
  LatencySummary tpot_ms;  // (E2E − TTFT) / (output tokens − 1), per request with > 1 token
  LatencySummary itl_ms;   // every gap between content chunks, all requests together
  LatencySummary e2el_ms;  // request sent → stream ended
};

inline BenchmarkMetrics compute_metrics(const std::vector<RequestResult>& results,
                                        double duration_s) {
  BenchmarkMetrics m;
  m.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2el;
  for (const RequestResult& r : results) {
    if (!r.sent) {
      ++m.n_not_sent;
      continue;
    }
    if (!r.success) {
      ++m.n_failed;
      continue;
    }
    ++m.n_completed;
    const int n_out = r.output_tokens();
    m.total_input += r.input_tokens();
    m.total_output += n_out;
    ttft.push_back(r.ttft_s);
    e2el.push_back(r.e2e_s);
    if (n_out > 1) tpot.push_back((r.e2e_s - r.ttft_s) / (n_out - 1));
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
  }
  if (duration_s > 0) {
    m.request_throughput = m.n_completed / duration_s;
    m.output_throughput = static_cast<double>(m.total_output) / duration_s;
    m.total_token_throughput = static_cast<double>(m.total_input + m.total_output) / duration_s;
  }
  m.ttft_ms = summarize_ms(ttft);
  m.tpot_ms = summarize_ms(tpot);
  m.itl_ms = summarize_ms(itl);
  m.e2el_ms = summarize_ms(e2el);
  return m;
}

// The first `n` distinct error messages of failed requests.
inline std::vector<std::string> first_errors(const std::vector<RequestResult>& results, size_t n) {
  std::vector<std::string> errors;
  for (const RequestResult& r : results) {
    if (errors.size() >= n) break;
    if (r.sent && !r.success && std::find(errors.begin(), errors.end(), r.error) == errors.end()) {
      errors.push_back(r.error);
    }
  }
  return errors;
}

// The report in vLLM's layout.
inline std::string format_report(const BenchmarkMetrics& m) {
  std::string out;
  char line[160];
  auto row = [&](const char* name, double v, bool integer = false) {
    if (integer) {
      std::snprintf(line, sizeof line, "%-40s %-10.0f\n", name, v);
    } else {
      std::snprintf(line, sizeof line, "%-40s %-10.2f\n", name, v);
    }
    out += line;
  };
  auto title = [&](const char* text, char fill) {
    const int width = 50, n = static_cast<int>(std::string_view(text).size());
    const int left = (width - n) / 2;
    out += std::string(left, fill) + text + std::string(width - n - left, fill) + "\n";
  };
  title(" Serving Benchmark Result ", '=');
  row("Successful requests:", m.n_completed, true);
  row("Failed requests:", m.n_failed, true);
  if (m.n_not_sent > 0) row("Not sent (max duration reached):", m.n_not_sent, true);
  row("Benchmark duration (s):", m.duration_s);
  row("Total input tokens:", static_cast<double>(m.total_input), true);
  row("Total generated tokens:", static_cast<double>(m.total_output), true);
  row("Request throughput (req/s):", m.request_throughput);
  row("Output token throughput (tok/s):", m.output_throughput);
  row("Total token throughput (tok/s):", m.total_token_throughput);
  auto section = [&](const char* heading, const char* name, const LatencySummary& s) {
    title(heading, '-');
    const std::string n = name;
    row(("Mean " + n + " (ms):").c_str(), s.mean);
    row(("Median " + n + " (ms):").c_str(), s.median);
    row(("P90 " + n + " (ms):").c_str(), s.p90);
    row(("P99 " + n + " (ms):").c_str(), s.p99);
  };
  section("Time to First Token", "TTFT", m.ttft_ms);
  section("Time per Output Token (excl. 1st token)", "TPOT", m.tpot_ms);
  section("Inter-token Latency", "ITL", m.itl_ms);
  section("End-to-end Latency", "E2EL", m.e2el_ms);
  out += std::string(50, '=') + "\n";
  return out;
}

// Results as JSON, with vLLM's field names where it has one (mean_ttft_ms, p99_itl_ms, …) and
// the per-request lists (seconds) for later analysis.
inline nlohmann::json metrics_json(const ServeBenchOptions& o, const std::string& model,
                                   const BenchmarkMetrics& m,
                                   const std::vector<RequestResult>& results) {
  nlohmann::json j;
  j["model_id"] = model;
  j["endpoint"] = o.endpoint;
  j["num_prompts"] = o.n_prompts;
  j["random_input_len"] = o.random_input_len;
  j["random_output_len"] = o.random_output_len;
  j["random_range_ratio"] = o.random_range_ratio;
  j["request_rate"] =
      std::isinf(o.request_rate) ? nlohmann::json("inf") : nlohmann::json(o.request_rate);
  j["burstiness"] = o.burstiness;
  j["max_concurrency"] =
      o.max_concurrency > 0 ? nlohmann::json(o.max_concurrency) : nlohmann::json();
  j["seed"] = o.seed;
  j["completed"] = m.n_completed;
  j["failed"] = m.n_failed;
  j["not_sent"] = m.n_not_sent;
  j["duration"] = m.duration_s;
  j["total_input_tokens"] = m.total_input;
  j["total_output_tokens"] = m.total_output;
  j["request_throughput"] = m.request_throughput;
  j["output_throughput"] = m.output_throughput;
  j["total_token_throughput"] = m.total_token_throughput;
  auto put = [&](const std::string& name, const LatencySummary& s) {
    j["mean_" + name + "_ms"] = s.mean;
    j["median_" + name + "_ms"] = s.median;
    j["std_" + name + "_ms"] = s.std;
    j["p90_" + name + "_ms"] = s.p90;
    j["p99_" + name + "_ms"] = s.p99;
  };
  put("ttft", m.ttft_ms);
  put("tpot", m.tpot_ms);
  put("itl", m.itl_ms);
  put("e2el", m.e2el_ms);
  nlohmann::json input_lens = nlohmann::json::array(), output_lens = nlohmann::json::array(),
                 ttfts = nlohmann::json::array(), e2els = nlohmann::json::array(),
                 itls = nlohmann::json::array(), errors = nlohmann::json::array();
  for (const RequestResult& r : results) {
    if (!r.sent) continue;
    input_lens.push_back(r.input_tokens());
    output_lens.push_back(r.success ? r.output_tokens() : 0);
    ttfts.push_back(r.success ? r.ttft_s : 0.0);
    e2els.push_back(r.success ? r.e2e_s : 0.0);
    itls.push_back(r.itl_s);
    errors.push_back(r.error);
  }
  j["input_lens"] = input_lens;
  j["output_lens"] = output_lens;
  j["ttfts"] = ttfts;
  j["e2els"] = e2els;
  j["itls"] = itls;
  j["errors"] = errors;
  return j;
}

}  // namespace moeserve::bench
