// `moeserve generate`: one prompt through a model directory, on any backend.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/process_memory.h"
#include "engine/memory_plan.h"
#include "engine/model_runner.h"
#include "engine/sampler.h"
#include "model/checkpoint.h"
#include "tokenizer/tokenizer.h"
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

constexpr const char* kUsage =
    "usage: moeserve generate --model DIR (--prompt TEXT | --prompt-ids ID,ID,...) [options]\n"
    "\n"
    "  --model DIR          Hugging Face model directory (config.json + *.safetensors)\n"
    "  --prompt TEXT        prompt text, encoded with DIR/tokenizer.json\n"
    "  --prompt-ids LIST    prompt as comma-separated token ids\n"
    "  --max-tokens N       tokens to generate (default 16)\n"
    "  --temperature T      0 (default) is greedy\n"
    "  --top-k K            sample from the K most likely tokens (0: all)\n"
    "  --top-p P            nucleus sampling mass (default 1)\n"
    "  --seed S             sampling seed (default 0)\n"
    "  --top-logprobs K     with --json: the K most likely tokens per step (default 0)\n"
    "  --ignore-eos         keep generating after the end-of-sequence token\n"
    "  --json               print ids and per-step log-probabilities as JSON\n"
    "  --backend NAME       cpu, cuda or auto (default auto)\n"
    "  --threads N          CPU threads (default: all)\n"
    "  --block-size N       KV-cache block size in tokens (default 64)\n"
    "  --kv-cache-dtype D   bf16 (default) or f32\n"
    "  --memory-limit-gb G  memory the model must fit in (default: cgroup limit or RAM)\n"
    "  --log-level LEVEL    trace, debug, info (default), warn, error, off\n";

struct GenerateArgs {
  std::string model;
  std::vector<int32_t> prompt_ids;
  std::optional<std::string> prompt_text;
  bool ignore_eos = false;
  int max_tokens = 16;
  SamplingParams sampling;
  int top_logprobs = 0;
  bool json = false;
  std::string backend = "auto";
  int threads = 0;
  int block_size = 64;
  double memory_limit_gb = 0;
  std::string kv_cache_dtype = "bf16";
  std::string log_level = "info";
};

template <typename T>
Status parse_number(const std::string& flag, const std::string& text, T* out) {
  bool ok;
  if constexpr (std::is_same_v<T, double>) {
    ok = absl::SimpleAtod(text, out);
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = absl::SimpleAtof(text, out);
  } else {
    ok = absl::SimpleAtoi(text, out);
  }
  if (!ok) return absl::InvalidArgumentError(absl::StrCat(flag, ": '", text, "' is not a number"));
  return absl::OkStatus();
}

StatusOr<GenerateArgs> parse_args(int argc, char** argv) {
  GenerateArgs a;
  a.sampling.seed = 0;  // reproducible by default
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--json" || flag == "--ignore-eos") {
      (flag == "--json" ? a.json : a.ignore_eos) = true;
      continue;
    }
    if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
    const std::string v = argv[++i];
    if (flag == "--model") {
      a.model = v;
    } else if (flag == "--prompt") {
      a.prompt_text = v;
    } else if (flag == "--prompt-ids") {
      for (absl::string_view part : absl::StrSplit(v, ',', absl::SkipWhitespace())) {
        int32_t id;
        RETURN_IF_ERROR(parse_number(flag, std::string(part), &id));
        a.prompt_ids.push_back(id);
      }
    } else if (flag == "--max-tokens") {
      RETURN_IF_ERROR(parse_number(flag, v, &a.max_tokens));
    } else if (flag == "--temperature") {
      RETURN_IF_ERROR(parse_number(flag, v, &a.sampling.temperature));
    } else if (flag == "--top-k") {
      RETURN_IF_ERROR(parse_number(flag, v, &a.sampling.top_k));
    } else if (flag == "--top-p") {
      RETURN_IF_ERROR(parse_number(flag, v, &a.sampling.top_p));
    } else if (flag == "--seed") {
      uint64_t seed;
      RETURN_IF_ERROR(parse_number(flag, v, &seed));
      a.sampling.seed = seed;
    } else if (flag == "--top-logprobs") {
      RETURN_IF_ERROR(parse_number(flag, v, &a.top_logprobs));
    } else if (flag == "--backend") {
      a.backend = v;
    } else if (flag == "--threads") {
      RETURN_IF_ERROR(parse_number(flag, v, &a.threads));
    } else if (flag == "--block-size") {
      RETURN_IF_ERROR(parse_number(flag, v, &a.block_size));
    } else if (flag == "--kv-cache-dtype") {
      a.kv_cache_dtype = v;
    } else if (flag == "--memory-limit-gb") {
      RETURN_IF_ERROR(parse_number(flag, v, &a.memory_limit_gb));
    } else if (flag == "--log-level") {
      a.log_level = v;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", flag, "'"));
    }
  }
  if (a.model.empty()) return absl::InvalidArgumentError("--model is required");
  if (a.prompt_ids.empty() == !a.prompt_text.has_value()) {
    return absl::InvalidArgumentError("give exactly one of --prompt and --prompt-ids");
  }
  if (a.max_tokens < 0) return absl::InvalidArgumentError("--max-tokens must be >= 0");
  if (a.sampling.temperature < 0) return absl::InvalidArgumentError("--temperature must be >= 0");
  if (a.sampling.top_k < 0) return absl::InvalidArgumentError("--top-k must be >= 0");
  if (!(a.sampling.top_p > 0 && a.sampling.top_p <= 1)) {
    return absl::InvalidArgumentError("--top-p must be in (0, 1]");
  }
  if (a.top_logprobs < 0 || a.top_logprobs > 20) {
    return absl::InvalidArgumentError("--top-logprobs must be in [0, 20]");
  }
  if (a.block_size <= 0 || a.block_size > 4096) {
    return absl::InvalidArgumentError("--block-size must be in [1, 4096]");
  }
  if (a.kv_cache_dtype != "bf16" && a.kv_cache_dtype != "f32") {
    return absl::InvalidArgumentError("--kv-cache-dtype must be bf16 or f32");
  }
  if (!(a.memory_limit_gb >= 0 && a.memory_limit_gb < 1e6)) {
    return absl::InvalidArgumentError("--memory-limit-gb must be in [0, 1e6)");
  }
  return a;
}

// The model directory's tokenizer, or nullptr when it has no tokenizer.json.
StatusOr<std::unique_ptr<Tokenizer>> load_tokenizer(const std::string& dir, int vocab_size) {
  if (!std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json")) {
    return std::unique_ptr<Tokenizer>();
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, Tokenizer::load(dir));
  if (tokenizer->vocab_size() > vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/tokenizer.json has ", tokenizer->vocab_size(),
                     " tokens but config.json vocab_size is ", vocab_size));
  }
  return tokenizer;
}

Status generate(const GenerateArgs& a) {
  ASSIGN_OR_RETURN(auto backend, create_backend(a.backend, a.threads));
  ASSIGN_OR_RETURN(ModelConfig config, load_model_config(a.model));
  ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::open(a.model));
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                   load_tokenizer(a.model, config.vocab_size));
  std::vector<int32_t> prompt_ids = a.prompt_ids;
  if (a.prompt_text.has_value()) {
    if (tokenizer == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--prompt needs ", a.model, "/tokenizer.json; use --prompt-ids for this model"));
    }
    prompt_ids = tokenizer->encode(*a.prompt_text);
    if (prompt_ids.empty()) return absl::InvalidArgumentError("--prompt encodes to no tokens");
  }
  int32_t eos = config.eos_token_id.value_or(tokenizer ? tokenizer->eos_id() : -1);
  if (a.ignore_eos) eos = -1;

  const int64_t n_total = static_cast<int64_t>(prompt_ids.size()) + a.max_tokens;
  if (n_total > config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", prompt_ids.size(), " tokens) + --max-tokens (", a.max_tokens,
        ") exceeds the model's context of ", config.max_position_embeddings, " tokens"));
  }
  const int n_blocks = static_cast<int>((n_total + a.block_size - 1) / a.block_size) + 1;

  ASSIGN_OR_RETURN(const WeightBytes planned, plan_deepseek_weights(config, checkpoint));
  MemoryUsage mem;
  mem.weights = planned.total();
  const DType kv_dtype = a.kv_cache_dtype == "f32" ? DType::kF32 : DType::kBF16;
  mem.kv_cache = n_blocks * KvCache::block_bytes(config.num_hidden_layers, a.block_size,
                                                 config.kv_lora_rank + config.qk_rope_head_dim,
                                                 kv_dtype);
  mem.activations = DeepseekV2Model::activation_bytes(
      config, std::max<int64_t>(static_cast<int64_t>(prompt_ids.size()), 1), 1);
  mem.other = resident_bytes();
  RETURN_IF_ERROR(check_memory_fits(a.memory_limit_gb, mem));
  const auto t0 = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(auto model, DeepseekV2Model::load(std::move(config), checkpoint, *backend,
                                                     periodic_load_log()));
  const auto t1 = std::chrono::steady_clock::now();
  MS_LOG_INFO("loaded {} on {} in {:.2f} s: {}", a.model, backend->name(),
              std::chrono::duration<double>(t1 - t0).count(), model->config().summary());
  ModelRunner runner(*model, n_blocks, a.block_size, kv_dtype);
  mem.weights = model->weight_bytes().total();
  mem.weights_detail = model->weight_bytes().describe();
  mem.rss_after_load = resident_bytes();
  MS_LOG_INFO("memory: {}", describe_memory(mem));
  const int seq = runner.create_sequence();
  Sampler sampler(a.sampling);

  nlohmann::json steps = nlohmann::json::array();
  std::vector<int32_t> generated;
  std::vector<int32_t> feed = prompt_ids;
  const auto t2 = std::chrono::steady_clock::now();
  for (int i = 0; i < a.max_tokens; ++i) {
    ASSIGN_OR_RETURN(auto logits, runner.step({SequenceChunk{seq, feed, false}}));
    const std::vector<float>& row = logits.back();
    ASSIGN_OR_RETURN(const SampledToken sampled, sampler.sample(row));
    const int32_t next = sampled.token;
    generated.push_back(next);
    if (a.json) {
      nlohmann::json step = {{"token", next}, {"logprob", sampled.logprob}};
      if (a.top_logprobs > 0) {
        nlohmann::json top = nlohmann::json::array();
        for (auto [id, lp] : top_logprobs(row, a.top_logprobs)) {
          top.push_back({{"token", id}, {"logprob", lp}});
        }
        step["top_logprobs"] = top;
      }
      steps.push_back(step);
    }
    if (next == eos) break;
    feed = {next};
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count();
  MS_LOG_INFO("generated {} tokens in {:.3f} s ({:.1f} tokens/s)", generated.size(), secs,
              secs > 0 ? static_cast<double>(generated.size()) / secs : 0.0);
  DecodeOptions decode_options;
  decode_options.skip_special_tokens = true;
  // The text ends before the end-of-sequence token, as in OpenAI's API.
  std::vector<int32_t> text_ids = generated;
  if (!text_ids.empty() && text_ids.back() == eos) text_ids.pop_back();
  if (a.json) {
    nlohmann::json out = {
        {"prompt_ids", prompt_ids}, {"generated_ids", generated}, {"steps", steps}};
    if (tokenizer != nullptr) out["text"] = tokenizer->decode(text_ids, decode_options);
    std::printf("%s\n", out.dump().c_str());
  } else if (tokenizer != nullptr) {
    std::printf("%s\n", tokenizer->decode(text_ids, decode_options).c_str());
  } else {
    std::string line;
    for (size_t i = 0; i < generated.size(); ++i) {
      absl::StrAppend(&line, i ? " " : "", generated[i]);
    }
    std::printf("%s\n", line.c_str());
  }
  return absl::OkStatus();
}

}  // namespace

int run_generate(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  auto args = parse_args(argc, argv);
  if (!args.ok()) {
    std::fprintf(stderr, "moeserve generate: %s\n\n%s",
                 std::string(args.status().message()).c_str(), kUsage);
    return 2;
  }
  init_logging(args->log_level);
  const Status s = generate(*args);
  if (!s.ok()) {
    std::fprintf(stderr, "moeserve generate: error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace moeserve
