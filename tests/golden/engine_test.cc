// The Engine end to end on the tiny checkpoints: greedy output equals the PyTorch reference's,
// concurrent requests are batched into shared steps yet each gets exactly what it gets alone,
// and every way a request can end (stop, length, abort, deadline, error: NaN logits, a failed
// model step) ends only that request and gives its KV blocks back.
#include "moeserve/engine.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics.h"
#include "engine/engine_internal.h"
#include "model/safetensors.h"
#include "tests/support/random_checkpoint.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

const std::string kSource = MOESERVE_SOURCE_DIR;
const std::string kModel = kSource + "/tests/data/tiny/v3_tiny";
const std::string kTokenizer = kSource + "/tests/data/tokenizer/tiny_byte_level";
constexpr auto kTimeout = std::chrono::seconds(60);

EngineConfig small_config() {
  EngineConfig c;
  c.model_dir = kModel;
  c.tokenizer_dir = kTokenizer;
  c.backend = "cpu";
  c.threads = 2;
  c.block_size = 4;
  c.kv_cache_blocks = 256;
  c.max_num_seqs = 64;
  c.max_num_batched_tokens = 256;
  return c;
}

std::unique_ptr<Engine> make_engine(const EngineConfig& config) {
  auto engine = Engine::create(config);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(*engine) : nullptr;
}

GenerateRequest greedy(std::vector<int32_t> prompt, int max_tokens) {
  GenerateRequest r;
  r.prompt = std::move(prompt);
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  return r;
}

// What one request produced, per sequence index.
struct Result {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::string> text;
  std::vector<std::optional<FinishReason>> finish;
  std::vector<Status> error;
  std::vector<std::vector<TokenLogprobs>> logprobs;
  std::optional<Usage> usage;
  int n_events = 0;
};

Result collect(TokenStream& stream, int n) {
  Result res;
  res.tokens.resize(static_cast<size_t>(n));
  res.text.resize(static_cast<size_t>(n));
  res.finish.resize(static_cast<size_t>(n));
  res.error.resize(static_cast<size_t>(n));
  res.logprobs.resize(static_cast<size_t>(n));
  const auto deadline = Clock::now() + kTimeout;
  while (!stream.done()) {
    auto ev = stream.next(deadline);
    if (!ev.has_value()) {
      ADD_FAILURE() << "stream " << stream.id() << " timed out";
      break;
    }
    ++res.n_events;
    const auto i = static_cast<size_t>(ev->index);
    EXPECT_FALSE(res.finish[i].has_value()) << "event after the sequence finished";
    res.tokens[i].insert(res.tokens[i].end(), ev->token_ids.begin(), ev->token_ids.end());
    res.text[i] += ev->text;
    res.logprobs[i].insert(res.logprobs[i].end(), ev->logprobs.begin(), ev->logprobs.end());
    if (ev->finish.has_value()) {
      res.finish[i] = ev->finish;
      res.error[i] = ev->error;
    }
    if (ev->usage.has_value()) res.usage = ev->usage;
  }
  return res;
}

Result run(Engine& engine, GenerateRequest request) {
  const int n = request.sampling.n;
  auto stream = engine.submit(std::move(request));
  EXPECT_TRUE(stream.ok()) << stream.status();
  if (!stream.ok()) return {};
  return collect(**stream, n);
}

std::vector<int32_t> golden_ids(const char* name) {
  auto file = SafetensorsFile::open(kModel + "/golden.safetensors");
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return {};
  auto t = (*file)->tensor(name);
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return {};
  return {t->data<int32_t>(), t->data<int32_t>() + t->numel()};
}

// The reference's prompt and its 16 greedy tokens (tests/reference/make_goldens.py).
std::vector<int32_t> golden_prompt() { return golden_ids("prompt_ids"); }
std::vector<int32_t> golden_decode_ids() { return golden_ids("decode_ids"); }

bool wait_blocks_free(Engine& engine) {
  const auto deadline = Clock::now() + kTimeout;
  while (Clock::now() < deadline) {
    const EngineStats s = engine.stats();
    if (s.n_blocks_used == 0 && s.n_running == 0 && s.n_requests == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

TEST(EngineTest, GreedyMatchesTheReferenceModel) {
  auto engine = make_engine(small_config());
  ASSERT_NE(engine, nullptr);
  const std::vector<int32_t> want = golden_decode_ids();
  Result res = run(*engine, greedy(golden_prompt(), static_cast<int>(want.size())));
  EXPECT_EQ(res.tokens[0], want);
  EXPECT_EQ(res.finish[0], FinishReason::kLength);
  ASSERT_TRUE(res.usage.has_value());
  EXPECT_EQ(res.usage->prompt_tokens, 7);
  EXPECT_EQ(res.usage->completion_tokens, static_cast<int>(want.size()));
  EXPECT_EQ(res.usage->cached_tokens, 0);
  EXPECT_TRUE(wait_blocks_free(*engine));
}

TEST(EngineTest, ConcurrentRequestsShareStepsAndEachMatchesItsSoloRun) {
  EngineConfig config = small_config();
  config.log_steps = true;
  auto engine = make_engine(config);
  ASSERT_NE(engine, nullptr);
  constexpr int kClients = 32;
  std::mt19937 rng(7);
  std::vector<GenerateRequest> requests;
  for (int i = 0; i < kClients; ++i) {
    std::vector<int32_t> prompt(static_cast<size_t>(3 + rng() % 20));
    for (int32_t& t : prompt) t = static_cast<int32_t>(2 + rng() % 500);
    requests.push_back(greedy(prompt, 8 + static_cast<int>(rng() % 12)));
  }
  // Alone, one after another.
  std::vector<std::vector<int32_t>> solo;
  for (const GenerateRequest& r : requests) solo.push_back(run(*engine, r).tokens[0]);
  const int64_t steps_before = engine->stats().n_steps;
  // All at once, from as many threads.
  std::vector<Result> together(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] { together[static_cast<size_t>(i)] = run(*engine, requests[i]); });
  }
  for (std::thread& t : clients) t.join();
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(together[static_cast<size_t>(i)].tokens[0], solo[static_cast<size_t>(i)])
        << "client " << i;
  }
  const EngineStats s = engine->stats();
  EXPECT_GE(s.max_seqs_in_step, kClients / 2) << "steps never carried many sequences";
  int total_tokens = 0;
  for (const GenerateRequest& r : requests) total_tokens += r.sampling.max_tokens;
  EXPECT_LT(s.n_steps - steps_before, total_tokens / 4) << "batching should need far fewer steps";
  EXPECT_TRUE(wait_blocks_free(*engine));
  const std::string metrics = engine->metrics().render();
  EXPECT_NE(metrics.find("vllm:request_success_total{model_name=\"v3_tiny\","
                         "finished_reason=\"length\"} 64"),
            std::string::npos)
      << metrics;
}

// The memory plan: filled before loading, published in /metrics, and the
// resident memory after load covers at least the weights and the KV cache.
TEST(EngineTest, MemoryPlanIsPublished) {
  auto engine = make_engine(small_config());
  ASSERT_NE(engine, nullptr);
  const MemoryUsage& m = engine->model_info().memory;
  EXPECT_GT(m.weights, 0);
  EXPECT_EQ(m.kv_cache,
            int64_t{256} * 4 * 3 * (32 + 8) * 2);  // blocks × tokens × layers × row × BF16
  EXPECT_GT(m.activations, 0);
  EXPECT_GT(m.other, 0);
  EXPECT_GE(m.rss_after_load, m.weights + m.kv_cache);
  EXPECT_GT(m.limit, m.planned());
  EXPECT_FALSE(m.weights_detail.empty());
  const std::string metrics = engine->metrics().render();
  for (const auto& [kind, bytes] : {std::pair<std::string, int64_t>{"weights", m.weights},
                                    {"kv_cache", m.kv_cache},
                                    {"activations", m.activations},
                                    {"other", m.other}}) {
    EXPECT_NE(metrics.find("moeserve:memory_bytes{model_name=\"v3_tiny\",kind=\"" + kind + "\"} " +
                           std::to_string(bytes)),
              std::string::npos)
        << kind << "\n"
        << metrics;
  }
  EXPECT_NE(metrics.find("moeserve:resident_memory_after_load_bytes{model_name=\"v3_tiny\"} " +
                         std::to_string(m.rss_after_load)),
            std::string::npos)
      << metrics;
}

TEST(EngineTest, PreemptionUnderATinyCacheKeepsOutputsExact) {
  EngineConfig config = small_config();
  config.kv_cache_blocks = 24;  // 96 token slots for 8 requests of up to 30 tokens
  config.max_model_len = 96;
  auto engine = make_engine(config);
  ASSERT_NE(engine, nullptr);
  std::vector<GenerateRequest> requests;
  for (int i = 0; i < 8; ++i) {
    std::vector<int32_t> prompt;
    for (int j = 0; j < 10 + i; ++j) prompt.push_back(3 + (i * 37 + j * 11) % 500);
    requests.push_back(greedy(prompt, 16));
  }
  std::vector<std::vector<int32_t>> solo;
  for (const GenerateRequest& r : requests) solo.push_back(run(*engine, r).tokens[0]);
  std::vector<std::shared_ptr<TokenStream>> streams;
  for (const GenerateRequest& r : requests) streams.push_back(*engine->submit(r));
  for (size_t i = 0; i < streams.size(); ++i) {
    EXPECT_EQ(collect(*streams[i], 1).tokens[0], solo[i]) << "request " << i;
  }
  EXPECT_GT(engine->stats().n_preemptions, 0);
  EXPECT_TRUE(wait_blocks_free(*engine));
}

TEST(EngineTest, SeededSamplingReproducesAndNSequencesDiffer) {
  auto engine = make_engine(small_config());
  ASSERT_NE(engine, nullptr);
  GenerateRequest r = greedy({5, 6, 7, 8, 9}, 12);
  r.sampling.temperature = 1.5f;
  r.sampling.seed = 1234;
  r.sampling.n = 3;
  r.sampling.logprobs = true;
  r.sampling.top_logprobs = 2;
  const Result a = run(*engine, r);
  const Result b = run(*engine, r);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_NE(a.tokens[0], a.tokens[1]);
  ASSERT_TRUE(a.usage.has_value());
  EXPECT_EQ(a.usage->completion_tokens, 36);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(a.logprobs[static_cast<size_t>(i)].size(), 12u);
    for (const TokenLogprobs& lp : a.logprobs[static_cast<size_t>(i)]) {
      EXPECT_LE(lp.logprob, 0.0f);
      ASSERT_EQ(lp.top.size(), 2u);
      EXPECT_GE(lp.top[0].second, lp.top[1].second);
      EXPECT_LE(lp.logprob, lp.top[0].second);
    }
  }
  // The second run found the prompt's full blocks in the prefix cache.
  EXPECT_GT(b.usage->cached_tokens, 0);
  r.sampling.seed = 99;
  EXPECT_NE(run(*engine, r).tokens, a.tokens);
}

TEST(EngineTest, StopTokenEndsWithStopAndKeepsTheToken) {
  auto engine = make_engine(small_config());
  ASSERT_NE(engine, nullptr);
  const std::vector<int32_t> want = golden_decode_ids();
  GenerateRequest r = greedy(golden_prompt(), 16);
  r.sampling.stop_token_ids = {want[3]};
  const Result res = run(*engine, r);
  const auto first = std::find(want.begin(), want.end(), want[3]) - want.begin();
  EXPECT_EQ(res.tokens[0], std::vector<int32_t>(want.begin(), want.begin() + first + 1));
  EXPECT_EQ(res.finish[0], FinishReason::kStop);
}

TEST(EngineTest, RefusesBadRequestsUpFront) {
  EngineConfig config = small_config();
  config.max_model_len = 64;
  config.max_waiting_requests = 2;
  auto engine = make_engine(config);
  ASSERT_NE(engine, nullptr);
  auto too_long = engine->submit(greedy(std::vector<int32_t>(60, 3), 10));
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.status().message().find("maximum context length is 64 tokens"),
            std::string::npos);
  EXPECT_NE(too_long.status().message().find("70 tokens (60 in the prompt, 10 in the completion)"),
            std::string::npos)
      << too_long.status();
  EXPECT_EQ(engine->submit(greedy({}, 4)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->submit(greedy({3, 512}, 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  GenerateRequest bad = greedy({3}, 4);
  bad.sampling.top_p = 0.0f;
  EXPECT_EQ(engine->submit(bad).status().code(), absl::StatusCode::kInvalidArgument);
  engine->stop_accepting();
  EXPECT_EQ(engine->submit(greedy({3}, 4)).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(engine->wait_idle(Clock::now() + kTimeout));
}

TEST(EngineTest, QueueCapRefusesWithResourceExhausted) {
  EngineConfig config = small_config();
  config.max_waiting_requests = 4;
  auto engine = make_engine(config);
  ASSERT_NE(engine, nullptr);
  // Submit faster than the engine thread can start them: some must be refused.
  std::vector<std::shared_ptr<TokenStream>> accepted;
  int refused = 0;
  for (int i = 0; i < 200; ++i) {
    auto s = engine->submit(greedy({3, 4, 5}, 4));
    if (s.ok()) {
      accepted.push_back(*s);
    } else {
      EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted);
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  for (auto& s : accepted) EXPECT_EQ(collect(*s, 1).finish[0], FinishReason::kLength);
  EXPECT_TRUE(wait_blocks_free(*engine));
}

TEST(EngineTest, AbortAndDeadlineEndOnlyThatRequestAndFreeBlocks) {
  auto engine = make_engine(small_config());
  ASSERT_NE(engine, nullptr);
  GenerateRequest long_one = greedy({3, 4, 5, 6, 7, 8, 9}, 200);
  auto aborted = *engine->submit(long_one);
  GenerateRequest with_deadline = long_one;
  with_deadline.deadline = Clock::now() + std::chrono::milliseconds(30);
  auto expired = *engine->submit(with_deadline);
  auto normal = *engine->submit(greedy(golden_prompt(), 16));
  // Let the first produce something, then abort it.
  auto first = aborted->next(Clock::now() + kTimeout);
  ASSERT_TRUE(first.has_value());
  engine->abort(aborted->id(), absl::CancelledError("client disconnected"));
  const Result a = collect(*aborted, 1);
  EXPECT_EQ(a.finish[0], FinishReason::kAbort);
  EXPECT_EQ(a.error[0].code(), absl::StatusCode::kCancelled);
  const Result d = collect(*expired, 1);
  EXPECT_EQ(d.finish[0], FinishReason::kAbort);
  EXPECT_EQ(d.error[0].code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(d.tokens[0].size(), 200u);
  EXPECT_EQ(collect(*normal, 1).tokens[0], golden_decode_ids());
  engine->abort(12345, absl::CancelledError("unknown ids are ignored"));
  EXPECT_TRUE(wait_blocks_free(*engine));
}

TEST(EngineTest, ShutdownEndsOpenStreams) {
  auto engine = make_engine(small_config());
  ASSERT_NE(engine, nullptr);
  auto stream = *engine->submit(greedy({3, 4, 5}, 200));
  engine.reset();
  const Result r = collect(*stream, 1);
  ASSERT_TRUE(r.finish[0].has_value());
  EXPECT_TRUE(r.usage.has_value());
}

TEST(EngineTest, CreateNamesWhatIsWrong) {
  EngineConfig config = small_config();
  config.model_dir = kSource + "/tests/data/does-not-exist";
  auto engine = Engine::create(config);
  ASSERT_FALSE(engine.ok());
  EXPECT_NE(engine.status().message().find("does-not-exist"), std::string::npos);
  config = small_config();
  config.max_model_len = 100000;
  engine = Engine::create(config);
  ASSERT_FALSE(engine.ok());
  EXPECT_NE(engine.status().message().find("max_model_len"), std::string::npos);
  config = small_config();
  config.activation_dtype = "bf16";  // the CPU backend is the F32 reference
  engine = Engine::create(config);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(engine.status().message().find("activation_dtype = bf16: the cpu backend computes "
                                           "activations in F32 only"),
            std::string::npos)
      << engine.status();
  config.activation_dtype = "fp16";
  engine = Engine::create(config);
  ASSERT_FALSE(engine.ok());
  EXPECT_NE(engine.status().message().find("activation_dtype"), std::string::npos);
  config.activation_dtype = "f32";
  EXPECT_NE(make_engine(config), nullptr);
}

// With neither kv_cache_blocks nor kv_cache_memory_mb the cache holds max_num_seqs sequences
// of max_model_len tokens (moeserve generate sizes its cache this way).
TEST(EngineTest, KvCacheSizedForMaxNumSeqsOfMaxModelLen) {
  EngineConfig config = small_config();
  config.kv_cache_blocks = 0;
  config.kv_cache_memory_mb = 0;
  config.max_model_len = 30;  // 8 blocks of 4
  config.max_num_seqs = 3;
  auto engine = make_engine(config);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->model_info().n_kv_blocks, 24);
  EXPECT_EQ(engine->stats().n_blocks, 24);
  EXPECT_EQ(run(*engine, greedy(golden_prompt(), 16)).tokens[0], golden_decode_ids());
}

// ---- failure isolation: one request's failure in a shared step fails only that request ----

// A random tiny checkpoint (no tokenizer: ids in, ids out) whose embedding row of `nan_token`
// is NaN, so a prompt holding that token gives NaN logits.
class PoisonedCheckpoint {
 public:
  static constexpr int32_t kNanToken = 11;

  PoisonedCheckpoint() {
    dir_ = std::filesystem::temp_directory_path() /
           ("moeserve_engine_nan_" + std::to_string(getpid()));
    RandomCheckpointSpec spec;
    spec.vocab_size = 512;
    spec.hidden_size = 128;
    auto written = write_random_checkpoint(dir_.string(), spec);
    EXPECT_TRUE(written.ok()) << written.status();
    // Patch the BF16 row in place: [8-byte header length][JSON header][data].
    const std::string file = (dir_ / "model.safetensors").string();
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    uint64_t header_len = 0;
    f.read(reinterpret_cast<char*>(&header_len), sizeof(header_len));
    std::string header(header_len, '\0');
    f.read(header.data(), static_cast<std::streamsize>(header_len));
    const nlohmann::json parsed = nlohmann::json::parse(header);
    const nlohmann::json& embed = parsed["model.embed_tokens.weight"];
    EXPECT_EQ(embed["dtype"], "BF16");
    const int64_t hidden = embed["shape"][1].get<int64_t>();
    const int64_t at = 8 + static_cast<int64_t>(header_len) +
                       embed["data_offsets"][0].get<int64_t>() + kNanToken * hidden * 2;
    const std::vector<uint16_t> nan_row(static_cast<size_t>(hidden), 0x7fc0);  // BF16 NaN
    f.seekp(at);
    f.write(reinterpret_cast<const char*>(nan_row.data()),
            static_cast<std::streamsize>(nan_row.size() * 2));
    EXPECT_TRUE(f.good());
  }
  ~PoisonedCheckpoint() { std::filesystem::remove_all(dir_); }

  EngineConfig config() const {
    EngineConfig c = small_config();
    c.model_dir = dir_.string();
    c.tokenizer_dir = "";
    return c;
  }

 private:
  std::filesystem::path dir_;
};

// `good` runs alone, then again with `bad` submitted while it decodes, so the two share steps.
// Returns the solo and the shared results.
struct SharedRun {
  Result solo, good, bad;
};
SharedRun run_beside(Engine& engine, const GenerateRequest& good, const GenerateRequest& bad) {
  SharedRun out;
  out.solo = run(engine, good);
  auto good_stream = engine.submit(good);
  EXPECT_TRUE(good_stream.ok()) << good_stream.status();
  if (!good_stream.ok()) return out;
  // Its first token is out: it is running, and decodes for many more steps.
  auto first = (*good_stream)->next(Clock::now() + kTimeout);
  EXPECT_TRUE(first.has_value());
  out.bad = run(engine, bad);
  out.good = collect(**good_stream, 1);
  if (first.has_value()) {
    out.good.tokens[0].insert(out.good.tokens[0].begin(), first->token_ids.begin(),
                              first->token_ids.end());
  }
  return out;
}

TEST(EngineFailureTest, NanLogitsFailOnlyTheirRequest) {
  PoisonedCheckpoint checkpoint;
  auto engine = make_engine(checkpoint.config());
  ASSERT_NE(engine, nullptr);
  EXPECT_FALSE(engine->model_info().has_tokenizer);
  const SharedRun r = run_beside(*engine, greedy({3, 4, 5, 6}, 24),
                                 greedy({7, PoisonedCheckpoint::kNanToken, 8}, 8));
  EXPECT_GE(engine->stats().max_seqs_in_step, 2) << "the two requests never shared a step";
  EXPECT_EQ(r.bad.finish[0], FinishReason::kError);
  EXPECT_EQ(r.bad.error[0].code(), absl::StatusCode::kInternal) << r.bad.error[0];
  EXPECT_NE(r.bad.error[0].message().find("non-finite logit"), std::string::npos) << r.bad.error[0];
  EXPECT_TRUE(r.bad.tokens[0].empty());
  EXPECT_TRUE(r.bad.usage.has_value());
  EXPECT_EQ(r.good.finish[0], FinishReason::kLength) << r.good.error[0];
  ASSERT_EQ(r.solo.tokens[0].size(), 24u);
  EXPECT_EQ(r.good.tokens[0], r.solo.tokens[0]);
  EXPECT_TRUE(wait_blocks_free(*engine));
}

TEST(EngineFailureTest, FailedModelStepFailsOnlyTheSequenceThatFailsAlone) {
  // The backend fails any step that holds token 13: the step of both requests fails, then
  // the engine runs them one by one and only the poisoned one fails.
  constexpr int32_t kPoison = 13;
  std::atomic<int> n_failed_steps{0}, n_steps{0};
  StepFn step = [&](DeepseekV2Model& model, const KvCache& cache,
                    std::span<const RunSeq> seqs) -> StatusOr<Tensor> {
    ++n_steps;
    for (const RunSeq& s : seqs) {
      if (std::find(s.tokens.begin(), s.tokens.end(), kPoison) != s.tokens.end()) {
        ++n_failed_steps;
        return absl::InternalError("injected backend failure");
      }
    }
    return run_step(model, cache, seqs);
  };
  auto created = create_engine(small_config(), step);
  ASSERT_TRUE(created.ok()) << created.status();
  Engine& engine = **created;
  const SharedRun r =
      run_beside(engine, greedy(golden_prompt(), 16), greedy({7, kPoison, 8, 9}, 8));
  EXPECT_GE(engine.stats().max_seqs_in_step, 2) << "the two requests never shared a step";
  // The shared step and the poisoned sequence's solo rerun.
  EXPECT_EQ(n_failed_steps.load(), 2);
  EXPECT_EQ(r.bad.finish[0], FinishReason::kError);
  EXPECT_EQ(r.bad.error[0].code(), absl::StatusCode::kInternal);
  EXPECT_EQ(r.bad.error[0].message(), "model step failed: injected backend failure");
  EXPECT_EQ(r.good.finish[0], FinishReason::kLength) << r.good.error[0];
  EXPECT_EQ(r.solo.tokens[0], golden_decode_ids());
  EXPECT_EQ(r.good.tokens[0], golden_decode_ids());
  EXPECT_TRUE(wait_blocks_free(engine));
  // Later requests run normally.
  EXPECT_EQ(run(engine, greedy(golden_prompt(), 16)).tokens[0], golden_decode_ids());
}

}  // namespace
}  // namespace moeserve
