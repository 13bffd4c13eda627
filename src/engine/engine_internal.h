// Between Engine::create (engine_create.cc: loads the model and tokenizer, sizes the KV cache)
// and the engine thread (engine.cc). Tests call create_engine to wrap the model step.
#pragma once

#include <memory>

#include "engine/model_runner.h"
#include "engine/scheduler.h"
#include "moeserve/engine.h"
#include "tokenizer/tokenizer.h"

namespace moeserve {

// What a running engine owns.
struct EngineParts {
  EngineConfig config;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<DeepseekV2Model> model;
  std::unique_ptr<Tokenizer> tokenizer;  // null: the model has none; events carry ids only
  std::unique_ptr<KvCache> cache;
  Scheduler scheduler;
  ModelInfo info;
  StepFn step;  // run_step, unless a test wraps it
};

// Starts the engine thread over `parts` (engine.cc).
std::unique_ptr<Engine> start_engine(EngineParts parts);

// Engine::create with the model step given: Engine::create passes run_step.
StatusOr<std::unique_ptr<Engine>> create_engine(const EngineConfig& config, StepFn step);

}  // namespace moeserve
