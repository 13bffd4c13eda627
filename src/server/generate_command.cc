// `moeserve generate`: one prompt through a model directory, on any backend, as one request
// to an Engine (the server's generation loop).
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
#include "model/model_config.h"
#include "moeserve/engine.h"
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
    "  --activation-dtype D auto (default: the backend's), bf16 or f32\n"
    "  --enforce-eager      no CUDA graphs for decode steps\n"
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
  bool enforce_eager = false;  // no CUDA graphs for decode steps
  std::string backend = "auto";
  int threads = 0;
  int block_size = 64;
  double memory_limit_gb = 0;
  std::string kv_cache_dtype = "bf16";
  std::string activation_dtype = "auto";
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
    if (flag == "--json" || flag == "--ignore-eos" || flag == "--enforce-eager") {
      (flag == "--json" ? a.json : flag == "--ignore-eos" ? a.ignore_eos : a.enforce_eager) = true;
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
    } else if (flag == "--activation-dtype") {
      a.activation_dtype = v;
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

// What one generation produced.
struct Generated {
  std::vector<int32_t> ids;  // an EOS that ended it included
  std::string text;          // without the EOS
  std::vector<TokenLogprobs> logprobs;
};

StatusOr<Generated> read_stream(TokenStream& stream) {
  Generated g;
  while (!stream.done()) {
    std::optional<TokenEvent> event = stream.next(Clock::now() + std::chrono::hours(1));
    if (!event.has_value()) continue;
    g.ids.insert(g.ids.end(), event->token_ids.begin(), event->token_ids.end());
    g.text += event->text;
    g.logprobs.insert(g.logprobs.end(), event->logprobs.begin(), event->logprobs.end());
    if (event->finish == FinishReason::kError || event->finish == FinishReason::kAbort) {
      return event->error;
    }
  }
  return g;
}

Status generate(const GenerateArgs& a) {
  // The context this run needs; the engine sizes the KV cache for it.
  ASSIGN_OR_RETURN(const ModelConfig model_config, load_model_config(a.model));
  std::vector<int32_t> prompt_ids = a.prompt_ids;
  if (a.prompt_text.has_value()) {
    if (!std::filesystem::exists(std::filesystem::path(a.model) / "tokenizer.json")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--prompt needs ", a.model, "/tokenizer.json; use --prompt-ids for this model"));
    }
    ASSIGN_OR_RETURN(const std::unique_ptr<Tokenizer> tokenizer, Tokenizer::load(a.model));
    prompt_ids = tokenizer->encode(*a.prompt_text);
    if (prompt_ids.empty()) return absl::InvalidArgumentError("--prompt encodes to no tokens");
  }
  EngineConfig config;
  config.model_dir = a.model;
  config.backend = a.backend;
  config.threads = a.threads;
  config.block_size = a.block_size;
  config.kv_cache_dtype = a.kv_cache_dtype;
  config.activation_dtype = a.activation_dtype;
  config.enforce_eager = a.enforce_eager;
  config.kv_cache_memory_mb = 0;  // room for max_num_seqs sequences of max_model_len
  config.memory_limit_gb = a.memory_limit_gb;
  config.max_num_seqs = 1;
  config.max_n = 1;
  config.max_num_batched_tokens = std::max<int>(static_cast<int>(prompt_ids.size()), 1);
  // Past the model's limit, submit() explains the request is too long.
  config.max_model_len =
      static_cast<int>(std::min<int64_t>(static_cast<int64_t>(prompt_ids.size()) + a.max_tokens,
                                         model_config.max_position_embeddings));
  ASSIGN_OR_RETURN(const std::unique_ptr<Engine> engine, Engine::create(config));

  Generated generated;
  const auto t0 = std::chrono::steady_clock::now();
  if (a.max_tokens > 0) {
    GenerateRequest request;
    request.prompt = prompt_ids;
    request.sampling = a.sampling;
    request.sampling.max_tokens = a.max_tokens;
    request.sampling.ignore_eos = a.ignore_eos;
    request.sampling.logprobs = a.json;
    request.sampling.top_logprobs = a.json ? a.top_logprobs : 0;
    ASSIGN_OR_RETURN(const std::shared_ptr<TokenStream> stream, engine->submit(std::move(request)));
    ASSIGN_OR_RETURN(generated, read_stream(*stream));
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MS_LOG_INFO("generated {} tokens in {:.3f} s ({:.1f} tokens/s)", generated.ids.size(), secs,
              secs > 0 ? static_cast<double>(generated.ids.size()) / secs : 0.0);
  const bool has_text = engine->model_info().has_tokenizer;
  if (a.json) {
    nlohmann::json steps = nlohmann::json::array();
    for (const TokenLogprobs& lp : generated.logprobs) {
      nlohmann::json step = {{"token", lp.token}, {"logprob", lp.logprob}};
      if (a.top_logprobs > 0) {
        nlohmann::json top = nlohmann::json::array();
        for (const auto& [id, logprob] : lp.top)
          top.push_back({{"token", id}, {"logprob", logprob}});
        step["top_logprobs"] = top;
      }
      steps.push_back(step);
    }
    nlohmann::json out = {
        {"prompt_ids", prompt_ids}, {"generated_ids", generated.ids}, {"steps", steps}};
    if (has_text) out["text"] = generated.text;
    std::printf("%s\n", out.dump().c_str());
  } else if (has_text) {
    std::printf("%s\n", generated.text.c_str());
  } else {
    std::string line;
    for (size_t i = 0; i < generated.ids.size(); ++i) {
      absl::StrAppend(&line, i ? " " : "", generated.ids[i]);
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
