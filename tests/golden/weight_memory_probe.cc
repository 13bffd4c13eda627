// Loads a model on the CPU backend as the engine does, runs a prefill and a
// few decode steps, and prints what the memory plan said beside what the
// kernel measured, as one JSON line. Run in a fresh process by
// weight_memory_test, so VmHWM is this load's own peak.
//
//   weight_memory_probe MODEL_DIR N_PROMPT_TOKENS
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "backend/cpu/cpu_backend.h"
#include "common/process_memory.h"
#include "engine/model_runner.h"
#include "model/checkpoint.h"
#include "model/deepseek_v2.h"
#include <nlohmann/json.hpp>

int main(int argc, char** argv) {
  using namespace moeserve;
  if (argc != 3) {
    std::fprintf(stderr, "usage: weight_memory_probe MODEL_DIR N_PROMPT_TOKENS\n");
    return 2;
  }
  const std::string dir = argv[1];
  const int n_prompt = std::atoi(argv[2]);
  const int64_t rss_start = resident_bytes();
  CpuBackend backend(2);
  auto config = load_model_config(dir);
  auto checkpoint = Checkpoint::open(dir);
  if (!config.ok() || !checkpoint.ok()) {
    std::fprintf(stderr, "probe: %s %s\n", config.status().ToString().c_str(),
                 checkpoint.status().ToString().c_str());
    return 1;
  }
  auto planned = plan_deepseek_weights(*config, *checkpoint);
  const int64_t activations = DeepseekV2Model::activation_bytes(*config, n_prompt, 1);
  auto model = DeepseekV2Model::load(*config, *checkpoint, backend);
  if (!planned.ok() || !model.ok()) {
    std::fprintf(stderr, "probe: %s %s\n", planned.status().ToString().c_str(),
                 model.status().ToString().c_str());
    return 1;
  }
  const int64_t rss_loaded = resident_bytes();
  constexpr int kBlock = 16, kDecode = 4;
  ModelRunner runner(**model, (n_prompt + kDecode) / kBlock + 2, kBlock);
  const int seq = runner.create_sequence();
  std::vector<int32_t> prompt(static_cast<size_t>(n_prompt));
  for (int i = 0; i < n_prompt; ++i) prompt[static_cast<size_t>(i)] = (i * 37 + 5) % 1000;
  std::vector<int32_t> feed = prompt;
  for (int i = 0; i < kDecode; ++i) {
    auto logits = runner.step({SequenceChunk{seq, feed, false}});
    if (!logits.ok()) {
      std::fprintf(stderr, "probe: %s\n", logits.status().ToString().c_str());
      return 1;
    }
    for (float v : logits->back()) {
      if (!std::isfinite(v)) {
        std::fprintf(stderr, "probe: non-finite logit\n");
        return 1;
      }
    }
    feed = {static_cast<int32_t>(i + 7)};
  }
  const nlohmann::json out = {
      {"checkpoint_bytes",
       std::filesystem::file_size(std::filesystem::path(dir) / "model.safetensors")},
      {"planned_weights", planned->total()},
      {"weights", (*model)->weight_bytes().total()},
      {"weights_mapped", (*model)->weight_bytes().mapped},
      {"kv_cache", runner.cache().n_bytes()},
      {"activations", activations},
      {"rss_start", rss_start},
      {"rss_loaded", rss_loaded},
      {"vm_hwm", peak_resident_bytes()},
  };
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
