// Engine::create: loads the tokenizer and the model, sizes the KV cache, checks the memory
// plan against the limit before anything large is allocated, and starts the engine thread.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/logging.h"
#include "common/process_memory.h"
#include "engine/engine_internal.h"
#include "engine/memory_plan.h"
#include "model/checkpoint.h"
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

// EOS ids: generation_config.json's eos_token_id (an id or a list), else config.json's, else
// the tokenizer's.
std::vector<int32_t> load_eos_ids(const std::string& model_dir, const ModelConfig& config,
                                  const Tokenizer* tokenizer) {
  std::vector<int32_t> ids;
  std::ifstream in(std::filesystem::path(model_dir) / "generation_config.json");
  if (in) {
    const auto json = nlohmann::json::parse(in, nullptr, false);
    if (json.is_object() && json.contains("eos_token_id")) {
      const auto& v = json["eos_token_id"];
      if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
      if (v.is_array()) {
        for (const auto& e : v) {
          if (e.is_number_integer()) ids.push_back(e.get<int32_t>());
        }
      }
    }
  }
  if (ids.empty() && config.eos_token_id.has_value()) ids.push_back(*config.eos_token_id);
  if (ids.empty() && tokenizer != nullptr && tokenizer->eos_id() >= 0) {
    ids.push_back(tokenizer->eos_id());
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

// The tokenizer of tokenizer_dir, else of the model directory; none (null) when tokenizer_dir
// is unset and the model directory has no tokenizer.json.
StatusOr<std::unique_ptr<Tokenizer>> load_tokenizer(const EngineConfig& config,
                                                    const ModelConfig& mc) {
  const std::string dir = config.tokenizer_dir.empty() ? config.model_dir : config.tokenizer_dir;
  if (config.tokenizer_dir.empty() &&
      !std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json")) {
    MS_LOG_INFO("engine: {} has no tokenizer.json: requests are token ids, outputs carry no text",
                dir);
    return std::unique_ptr<Tokenizer>();
  }
  auto tokenizer = Tokenizer::load(dir);
  if (!tokenizer.ok()) {
    return Status(tokenizer.status().code(),
                  absl::StrCat("tokenizer in ", dir, ": ", tokenizer.status().message()));
  }
  if ((*tokenizer)->vocab_size() > mc.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/tokenizer.json: ", (*tokenizer)->vocab_size(),
                     " tokens, more than the model's vocab_size ", mc.vocab_size, " (",
                     config.model_dir, "/config.json)"));
  }
  return std::move(*tokenizer);
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

StatusOr<std::unique_ptr<Engine>> Engine::create(const EngineConfig& config) {
  return create_engine(config, run_step);
}

StatusOr<std::unique_ptr<Engine>> create_engine(const EngineConfig& config, StepFn step) {
  RETURN_IF_ERROR(config.validate());
  const Clock::time_point start = Clock::now();
  ASSIGN_OR_RETURN(auto backend,
                   create_backend(config.backend, config.threads, config.gpu_memory_fraction));
  ASSIGN_OR_RETURN(ModelConfig model_config, load_model_config(config.model_dir));
  ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::open(config.model_dir));
  const ModelConfig& mc = model_config;
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, load_tokenizer(config, mc));

  ModelInfo info;
  std::filesystem::path dir(config.model_dir);
  if (!dir.has_filename()) dir = dir.parent_path();
  info.id = config.served_model_name.empty() ? dir.filename().string() : config.served_model_name;
  info.model_dir = config.model_dir;
  info.architecture = std::string(architecture_name(mc.architecture));
  info.vocab_size = static_cast<int>(mc.vocab_size);
  info.has_tokenizer = tokenizer != nullptr;
  const int model_len = mc.max_position_embeddings;
  if (config.max_model_len > model_len) {
    return absl::InvalidArgumentError(absl::StrCat("max_model_len = ", config.max_model_len,
                                                   ": more than the model's ", model_len,
                                                   " positions (max_position_embeddings)"));
  }
  info.max_model_len = config.max_model_len > 0 ? config.max_model_len : model_len;
  info.eos_ids = load_eos_ids(config.model_dir, mc, tokenizer.get());
  info.created = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  info.backend = backend->name();
  info.block_size = config.block_size;

  DType act_dtype = backend->default_activation_dtype();
  if (config.activation_dtype != "auto") {
    act_dtype = config.activation_dtype == "bf16" ? DType::kBF16 : DType::kF32;
    if (!backend->supports_activation_dtype(act_dtype)) {
      return absl::InvalidArgumentError(
          absl::StrCat("activation_dtype = ", config.activation_dtype, ": the ", backend->name(),
                       " backend computes activations in ",
                       dtype_name(backend->default_activation_dtype()), " only"));
    }
  }

  // Everything that will be allocated, checked against the limit before any of it is.
  ASSIGN_OR_RETURN(const WeightBytes planned, plan_deepseek_weights(mc, checkpoint, backend.get()));
  MemoryUsage& mem = info.memory;
  mem.weights = planned.total();
  mem.activations = DeepseekV2Model::activation_bytes(mc, config.max_num_batched_tokens,
                                                      config.max_num_seqs, act_dtype);
  mem.other = resident_bytes();
  mem.device_pool = backend->device_memory_capacity();

  // KV-cache size: rows of [kv_lora_rank | rope dim] per layer per token.
  const DType kv_dtype = config.kv_cache_dtype == "f32" ? DType::kF32 : DType::kBF16;
  const int64_t bytes_per_block = KvCache::block_bytes(
      mc.num_hidden_layers, config.block_size, mc.kv_lora_rank + mc.qk_rope_head_dim, kv_dtype);
  int64_t n_blocks = config.kv_cache_blocks;
  if (n_blocks == 0 && config.kv_cache_memory_mb > 0) {
    n_blocks = (config.kv_cache_memory_mb << 20) / bytes_per_block;
  } else if (n_blocks == 0 && mem.device_pool > 0) {
    // Neither given on a device backend: what the pool holds after the weights, the arena and
    // the headroom kernels take for their own workspaces.
    const int64_t left =
        mem.device_pool - device_headroom(mem.device_pool) - mem.weights - mem.activations;
    n_blocks = std::max<int64_t>(left, 0) / bytes_per_block;
    MS_LOG_INFO(
        "engine: {} KV blocks ({}) fit in the {} device pool after weights {} and "
        "activations {}",
        n_blocks, format_bytes(n_blocks * bytes_per_block), format_bytes(mem.device_pool),
        format_bytes(mem.weights), format_bytes(mem.activations));
  } else if (n_blocks == 0) {
    // Neither given: room for max_num_seqs sequences of max_model_len tokens.
    n_blocks = int64_t{config.max_num_seqs} *
               ((info.max_model_len + config.block_size - 1) / config.block_size);
  }
  if (n_blocks < 1 || n_blocks > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv_cache_memory_mb = ", config.kv_cache_memory_mb, " gives ", n_blocks, " KV blocks of ",
        bytes_per_block, " bytes; need at least one",
        mem.device_pool > 0 ? " (raise gpu_memory_fraction or lower max_num_batched_tokens)" : ""));
  }
  info.n_kv_blocks = static_cast<int>(n_blocks);
  if (n_blocks * config.block_size < info.max_model_len) {
    // Otherwise a request that fits the context could still never fit the cache.
    return absl::InvalidArgumentError(absl::StrCat(
        "the KV cache holds ", n_blocks * config.block_size, " tokens (", n_blocks, " blocks of ",
        config.block_size, "), less than max_model_len = ", info.max_model_len,
        "; raise kv_cache_memory_mb / kv_cache_blocks or lower max_model_len"));
  }
  mem.kv_cache = n_blocks * bytes_per_block;
  RETURN_IF_ERROR(check_memory_fits(config.memory_limit_gb, mem));
  ASSIGN_OR_RETURN(auto model, DeepseekV2Model::load(std::move(model_config), checkpoint, *backend,
                                                     periodic_load_log()));
  const ModelConfig& loaded = model->config();
  // The step context for the largest step the scheduler plans: forward() then allocates nothing.
  const int64_t blocks_per_seq = (info.max_model_len + config.block_size - 1) / config.block_size;
  model->reserve({.max_tokens = config.max_num_batched_tokens,
                  .max_seqs = config.max_num_seqs,
                  .max_logits = config.max_num_seqs,
                  .max_blocks = int64_t{config.max_num_seqs} * blocks_per_seq,
                  .activations = act_dtype});

  SchedulerConfig sc;
  sc.n_blocks = info.n_kv_blocks;
  sc.block_size = config.block_size;
  sc.max_num_batched_tokens = config.max_num_batched_tokens;
  sc.max_num_seqs = config.max_num_seqs;
  sc.max_model_len = info.max_model_len;
  sc.max_n = config.max_n;
  sc.enable_chunked_prefill = config.enable_chunked_prefill;
  sc.enable_prefix_caching = config.enable_prefix_caching;
  sc.policy =
      config.scheduling_policy == "priority" ? SchedulePolicy::kPriority : SchedulePolicy::kFcfs;
  ASSIGN_OR_RETURN(Scheduler scheduler, Scheduler::create(sc));
  // Decode steps as CUDA graphs pad to their bucket on a scratch block the scheduler never
  // hands out (model/decode_graphs.h).
  const bool graphs = !config.enforce_eager && backend->supports_graphs();
  if (graphs) model->enable_decode_graphs();
  auto cache =
      std::make_unique<KvCache>(*backend, loaded.num_hidden_layers, info.n_kv_blocks,
                                config.block_size, model->kv_row_width(), kv_dtype, graphs);
  mem.weights = model->weight_bytes().total();
  mem.weights_detail = model->weight_bytes().describe();
  mem.kv_cache = cache->n_bytes();
  mem.activations = model->arena_bytes();
  mem.rss_after_load = resident_bytes();
  MS_LOG_INFO(
      "engine: loaded {} ({}) on {} in {:.2f} s; KV cache {} blocks x {} tokens, {}; "
      "max_model_len {}",
      info.id, info.architecture, info.backend, seconds(Clock::now() - start), info.n_kv_blocks,
      info.block_size, dtype_name(kv_dtype), info.max_model_len);
  MS_LOG_INFO("memory: {}", describe_memory(mem));
  MS_LOG_INFO("engine: {} activation arena {} for steps of up to {} tokens and {} sequences",
              dtype_name(act_dtype), format_bytes(mem.activations), config.max_num_batched_tokens,
              config.max_num_seqs);
  MS_LOG_INFO("engine: decode steps {}",
              model->decode_graphs_active() ? "as CUDA graphs per batch-size bucket"
              : config.enforce_eager        ? "eager (enforce_eager)"
                                            : "eager (the backend has no graphs)");
  return start_engine(EngineParts{.config = config,
                                  .backend = std::move(backend),
                                  .model = std::move(model),
                                  .tokenizer = std::move(tokenizer),
                                  .cache = std::move(cache),
                                  .scheduler = std::move(scheduler),
                                  .info = std::move(info),
                                  .step = std::move(step)});
}

}  // namespace moeserve
