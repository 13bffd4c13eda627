// Weight memory and load time of `moeserve generate` on a DeepSeek-V2-Lite-
// shaped checkpoint cut to a few layers (random weights, written here once):
// peak resident memory (the child's ru_maxrss) against the checkpoint's
// size, wall time to load and run one token, and the decode speed a second
// run reports. Point --moeserve at two builds to compare them.
//
//   weight_load_bench --moeserve build/src/server/moeserve [--dir /tmp/v2lite3]
//                     [--layers 3] [--fp8] [--tokens 32] [--runs 3]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/random_checkpoint.h"
#include <sys/resource.h>
#include <sys/wait.h>

namespace {

struct Run {
  double seconds = 0;
  double peak_rss = 0;      // bytes
  double decode_tok_s = 0;  // from generate's "generated N tokens in T s (R tokens/s)" line
};

// The rate in generate's log line, or 0.
double decode_rate(const std::string& log_path) {
  std::FILE* f = std::fopen(log_path.c_str(), "r");
  if (f == nullptr) return 0;
  char line[4096];
  double rate = 0;
  while (std::fgets(line, sizeof line, f)) {
    const char* at = std::strstr(line, "generated ");
    const char* paren = at ? std::strrchr(line, '(') : nullptr;
    if (paren != nullptr) rate = std::atof(paren + 1);
  }
  std::fclose(f);
  return rate;
}

// Runs argv (stdout to /dev/null, stderr to a log); wall time, peak RSS, decode rate.
Run run(const std::vector<std::string>& args) {
  const std::string log_path = "/tmp/weight_load_bench." + std::to_string(getpid()) + ".log";
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    std::freopen("/dev/null", "w", stdout);
    std::freopen(log_path.c_str(), "w", stderr);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  rusage usage{};
  wait4(pid, &status, 0, &usage);
  Run r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.peak_rss = static_cast<double>(usage.ru_maxrss) * 1024.0;
  r.decode_tok_s = decode_rate(log_path);
  std::remove(log_path.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "weight_load_bench: %s failed (status %d)\n", args[0].c_str(), status);
    std::exit(1);
  }
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string bin, dir = "/tmp/moeserve_v2lite_bench";
  int layers = 3, tokens = 32, runs = 3;
  bool fp8 = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--moeserve")
      bin = value();
    else if (a == "--dir")
      dir = value();
    else if (a == "--layers")
      layers = std::atoi(value().c_str());
    else if (a == "--tokens")
      tokens = std::atoi(value().c_str());
    else if (a == "--runs")
      runs = std::atoi(value().c_str());
    else if (a == "--fp8")
      fp8 = true;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (bin.empty() || layers < 2 || tokens < 1 || runs < 1) {
    std::fprintf(stderr,
                 "usage: weight_load_bench --moeserve BIN [--dir D] [--layers N>=2] "
                 "[--fp8] [--tokens N] [--runs N]\n");
    return 2;
  }
  namespace fs = std::filesystem;
  const fs::path weights = fs::path(dir) / "model.safetensors";
  if (!fs::exists(weights)) {
    moeserve::RandomCheckpointSpec spec = moeserve::v2_lite_spec(layers);
    spec.fp8 = fp8;
    std::printf("writing a %d-layer V2-Lite-shaped %s checkpoint to %s\n", layers,
                fp8 ? "FP8" : "BF16", dir.c_str());
    auto bytes = moeserve::write_random_checkpoint(dir, spec);
    if (!bytes.ok()) {
      std::fprintf(stderr, "%s\n", bytes.status().ToString().c_str());
      return 1;
    }
  }
  const double ckpt = static_cast<double>(fs::file_size(weights));
  auto generate = [&](int n) {
    return std::vector<std::string>{bin,
                                    "generate",
                                    "--model",
                                    dir,
                                    "--backend",
                                    "cpu",
                                    "--prompt-ids",
                                    "1,2,3,4,5,6,7,8",
                                    "--max-tokens",
                                    std::to_string(n),
                                    "--ignore-eos",
                                    "--log-level",
                                    "info"};
  };
  std::vector<double> t1, rate, rss;
  for (int r = 0; r < runs; ++r) {
    const Run a = run(generate(1));
    const Run b = run(generate(tokens));
    t1.push_back(a.seconds);
    rate.push_back(b.decode_tok_s);
    rss.push_back(std::max(a.peak_rss, b.peak_rss));
    std::printf("run %d: load + 1 token %.2f s; %d tokens at %.1f tokens/s; peak RSS %.2f GiB\n", r,
                a.seconds, tokens, b.decode_tok_s, std::max(a.peak_rss, b.peak_rss) / 1073741824.0);
  }
  const double load = median(t1), peak = median(rss);
  std::printf("\nbinary            %s\n", bin.c_str());
  std::printf("checkpoint        %.2f GiB (%s, %d layers)\n", ckpt / 1073741824.0,
              fp8 ? "FP8" : "BF16", layers);
  std::printf("peak RSS          %.2f GiB = %.3f x checkpoint (median of %d)\n",
              peak / 1073741824.0, peak / ckpt, runs);
  std::printf("load + 1 token    %.2f s (median; min %.2f, max %.2f)\n", load,
              *std::min_element(t1.begin(), t1.end()), *std::max_element(t1.begin(), t1.end()));
  std::printf("decode            %.1f tokens/s (median; generate's own timing of %d tokens)\n",
              median(rate), tokens);
  return 0;
}
