// serve_bench: measures an OpenAI-compatible server (moeserve, vLLM, SGLang, …) the way vLLM's
// `vllm bench serve --dataset-name random` does: N streamed requests with random prompts at a
// Poisson (or gamma) request rate, bounded concurrency, and the throughput and TTFT / TPOT / ITL
// / E2E latency figures of the responses. See docs/benchmarking.md.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "serve_bench_client.h"
#include "serve_bench_lib.h"

namespace moeserve::bench {
namespace {

constexpr const char* kUsage =
    "usage: serve_bench [options]\n"
    "\n"
    "  --host HOST               server address (default 127.0.0.1)\n"
    "  --port N                  server port (default 8000)\n"
    "  --endpoint PATH           /v1/completions (default) or /v1/chat/completions\n"
    "  --model NAME              model to ask for (default: first id of GET /v1/models)\n"
    "  --api-key KEY             bearer token (default: $OPENAI_API_KEY, else none)\n"
    "  --num-prompts N           requests to send (default 1000)\n"
    "  --random-input-len L      prompt length in tokens (default 1024)\n"
    "  --random-output-len L     max_tokens of each request (default 128)\n"
    "  --random-range-ratio R    lengths uniform in [L(1-R), L(1+R)], R in [0,1) (default 0)\n"
    "  --random-vocab-size V     token-id prompts use ids in [100, V) (default 32000)\n"
    "  --text-prompts            /v1/completions: random words instead of token ids\n"
    "  --request-rate R          requests/s, or inf (default): all at once\n"
    "  --burstiness B            gamma shape of inter-arrival times; 1 = Poisson (default)\n"
    "  --max-concurrency C       requests in flight at most (default: no limit, 256 threads)\n"
    "  --seed S                  workload seed (default 0)\n"
    "  --ignore-eos[=BOOL]       send ignore_eos: output length = max_tokens (default true)\n"
    "  --no-ignore-eos           do not send ignore_eos\n"
    "  --no-warmup               skip the unmeasured first request\n"
    "  --timeout-s S             per-request timeout (default 300)\n"
    "  --max-duration-s S        no request is sent after S seconds (default 600)\n"
    "  --json FILE               also write the results (and per-request lists) as JSON\n";

struct Args {
  ServeBenchOptions options;
  std::string json_path;
};

Status parse_double(const std::string& flag, const std::string& text, double* out) {
  if (text == "inf" || text == "infinity") {
    *out = std::numeric_limits<double>::infinity();
    return absl::OkStatus();
  }
  if (!absl::SimpleAtod(text, out) || std::isnan(*out)) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": '", text, "' is not a number"));
  }
  return absl::OkStatus();
}

template <typename T>
Status parse_int(const std::string& flag, const std::string& text, T* out) {
  if (!absl::SimpleAtoi(text, out)) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": '", text, "' is not an integer"));
  }
  return absl::OkStatus();
}

StatusOr<bool> parse_bool(const std::string& flag, const std::string& text) {
  if (text == "true" || text == "1" || text == "yes") return true;
  if (text == "false" || text == "0" || text == "no") return false;
  return absl::InvalidArgumentError(absl::StrCat(flag, ": '", text, "' is not true or false"));
}

StatusOr<Args> parse_args(int argc, char** argv) {
  Args a;
  ServeBenchOptions& o = a.options;
  if (const char* key = std::getenv("OPENAI_API_KEY")) o.api_key = key;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::string value;
    bool has_value = false;
    if (const size_t eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    if (flag == "--ignore-eos") {
      if (has_value) {
        ASSIGN_OR_RETURN(o.ignore_eos, parse_bool(flag, value));
      } else {
        o.ignore_eos = true;
      }
      continue;
    }
    if (flag == "--no-ignore-eos" || flag == "--text-prompts" || flag == "--no-warmup") {
      if (has_value) return absl::InvalidArgumentError(absl::StrCat(flag, " takes no value"));
      if (flag == "--no-ignore-eos") o.ignore_eos = false;
      if (flag == "--text-prompts") o.text_prompts = true;
      if (flag == "--no-warmup") o.warmup = false;
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
      value = argv[++i];
    }
    if (flag == "--host") {
      o.host = value;
    } else if (flag == "--port") {
      RETURN_IF_ERROR(parse_int(flag, value, &o.port));
    } else if (flag == "--endpoint") {
      o.endpoint = value;
    } else if (flag == "--model") {
      o.model = value;
    } else if (flag == "--api-key") {
      o.api_key = value;
    } else if (flag == "--num-prompts") {
      RETURN_IF_ERROR(parse_int(flag, value, &o.n_prompts));
    } else if (flag == "--random-input-len") {
      RETURN_IF_ERROR(parse_int(flag, value, &o.random_input_len));
    } else if (flag == "--random-output-len") {
      RETURN_IF_ERROR(parse_int(flag, value, &o.random_output_len));
    } else if (flag == "--random-range-ratio") {
      RETURN_IF_ERROR(parse_double(flag, value, &o.random_range_ratio));
    } else if (flag == "--random-vocab-size") {
      RETURN_IF_ERROR(parse_int(flag, value, &o.random_vocab_size));
    } else if (flag == "--request-rate") {
      RETURN_IF_ERROR(parse_double(flag, value, &o.request_rate));
    } else if (flag == "--burstiness") {
      RETURN_IF_ERROR(parse_double(flag, value, &o.burstiness));
    } else if (flag == "--max-concurrency") {
      RETURN_IF_ERROR(parse_int(flag, value, &o.max_concurrency));
    } else if (flag == "--seed") {
      RETURN_IF_ERROR(parse_int(flag, value, &o.seed));
    } else if (flag == "--timeout-s") {
      RETURN_IF_ERROR(parse_double(flag, value, &o.timeout_s));
    } else if (flag == "--max-duration-s") {
      RETURN_IF_ERROR(parse_double(flag, value, &o.max_duration_s));
    } else if (flag == "--json") {
      a.json_path = value;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", flag, "'"));
    }
  }
  RETURN_IF_ERROR(validate(o));
  return a;
}

int run(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  StatusOr<Args> args = parse_args(argc, argv);
  if (!args.ok()) {
    std::fprintf(stderr, "serve_bench: %s\n\n%s", std::string(args.status().message()).c_str(),
                 kUsage);
    return 2;
  }
  const ServeBenchOptions& o = args->options;
  std::printf("Target: http://%s:%d%s\n", o.host.c_str(), o.port, o.endpoint.c_str());
  std::printf("Traffic request rate: %s\n",
              std::isinf(o.request_rate) ? "inf" : absl::StrCat(o.request_rate).c_str());
  std::printf("Burstiness factor: %g%s\n", o.burstiness,
              o.burstiness == 1 ? " (Poisson process)" : "");
  std::printf("Maximum request concurrency: %s\n",
              o.max_concurrency > 0 ? absl::StrCat(o.max_concurrency).c_str() : "None");
  std::fflush(stdout);

  StatusOr<BenchmarkResult> result = run_benchmark(o);
  if (!result.ok()) {
    std::fprintf(stderr, "serve_bench: %s\n", std::string(result.status().message()).c_str());
    return 1;
  }
  std::printf("Model: %s\n%s", result->model.c_str(), format_report(result->metrics).c_str());
  const std::vector<std::string> errors = first_errors(result->requests, 5);
  if (!errors.empty()) {
    std::printf("First errors:\n");
    for (const std::string& e : errors) std::printf("  %s\n", e.c_str());
  }
  if (!args->json_path.empty()) {
    std::ofstream out(args->json_path);
    out << metrics_json(o, result->model, result->metrics, result->requests).dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "serve_bench: cannot write %s\n", args->json_path.c_str());
      return 1;
    }
  }
  return result->metrics.n_completed > 0 ? 0 : 1;
}

}  // namespace
}  // namespace moeserve::bench

int main(int argc, char** argv) { return moeserve::bench::run(argc, argv); }
