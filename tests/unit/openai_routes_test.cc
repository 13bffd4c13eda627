// The OpenAI routes over a scripted fake Engine and a recording fake HttpResponder (no model,
// no sockets): every route, the exact Server-Sent-Event sequences, n > 1 interleaving,
// disconnects, slow readers, errors before and after a stream started, and the HTTP errors.
#include "server/openai_routes.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics.h"
#include "server/prompt_builder.h"
#include "tokenizer/tokenizer.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kTokenizerDir =
    fs::path(MOESERVE_SOURCE_DIR) / "tests/data/tokenizer/tiny_byte_level";

// An Engine whose submit() replays a script: the events queued for the next submissions are
// pushed into the new stream at once (before the route can set its listener); tests push
// later events themselves, as the engine thread would. abort() ends the stream with kAbort.
// Like the real engine, submit() refuses invalid sampling parameters (validate()) first.
class FakeEngine : public Engine {
 public:
  explicit FakeEngine(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {
    info_.id = "tiny";
    info_.model_dir = "/models/tiny";
    info_.vocab_size = tokenizer.vocab_size();
    info_.max_model_len = 64;
    info_.eos_ids = {tokenizer.eos_id()};
    info_.created = 1700000000;
    config_.max_n = 4;
  }

  StatusOr<std::shared_ptr<TokenStream>> submit(GenerateRequest request) override {
    RETURN_IF_ERROR(validate(request.sampling, info_.vocab_size, config_.max_n));
    std::lock_guard<std::mutex> lock(mu_);
    submitted.push_back(request);
    if (!refusals.empty()) {
      Status s = refusals.front();
      refusals.erase(refusals.begin());
      if (!s.ok()) return s;
    }
    auto stream = std::make_shared<TokenStream>(next_id_++);
    streams.push_back(stream);
    if (!scripts.empty()) {
      for (TokenEvent& e : scripts.front()) stream->push(std::move(e));
      scripts.erase(scripts.begin());
    }
    return stream;
  }
  void abort(int64_t id, Status why) override {
    std::shared_ptr<TokenStream> stream;
    {
      std::lock_guard<std::mutex> lock(mu_);
      aborted.emplace_back(id, why);
      for (auto& s : streams) {
        if (s->id() == id) stream = s;
      }
    }
    if (stream && push_on_abort) {
      TokenEvent e;
      e.finish = FinishReason::kAbort;
      e.error = why;
      e.usage = Usage{};
      stream->push(std::move(e));
    }
  }
  void stop_accepting() override {}
  bool wait_idle(Clock::time_point) override { return true; }
  EngineStats stats() const override { return {}; }
  const ModelInfo& model_info() const override { return info_; }
  ModelInfo& info() { return info_; }
  const EngineConfig& config() const override { return config_; }
  const Tokenizer& tokenizer() const override { return tokenizer_; }
  MetricsRegistry& metrics() override { return metrics_; }

  // The i-th stream submitted.
  std::shared_ptr<TokenStream> stream(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return i < streams.size() ? streams[i] : nullptr;
  }

  std::vector<std::vector<TokenEvent>> scripts;  // one per coming submit()
  std::vector<Status> refusals;                  // one per coming submit(); OK = accept
  bool push_on_abort = true;  // false: abort() takes effect later, as the engine's next step
  std::vector<GenerateRequest> submitted;
  std::vector<std::pair<int64_t, Status>> aborted;
  std::vector<std::shared_ptr<TokenStream>> streams;

 private:
  std::mutex mu_;
  const Tokenizer& tokenizer_;
  ModelInfo info_;
  EngineConfig config_;
  MetricsRegistry metrics_;
  int64_t next_id_ = 100;
};

// Records what the route answers, and on which threads. Work handed over with post() waits
// until the test runs it (run_posted()), as the connection's executor would.
class FakeResponder : public HttpResponder {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;

  void send(int s, std::string type, std::string b, Headers headers) override {
    std::lock_guard<std::mutex> lock(mu_);
    output_threads.insert(std::this_thread::get_id());
    ++n_answers;
    status = s;
    content_type = std::move(type);
    body = std::move(b);
    extra_headers = std::move(headers);
  }
  void start_stream(std::string type) override {
    std::lock_guard<std::mutex> lock(mu_);
    output_threads.insert(std::this_thread::get_id());
    ++n_answers;
    status = 200;
    streaming = true;
    content_type = std::move(type);
  }
  bool write(std::string data) override {
    std::lock_guard<std::mutex> lock(mu_);
    output_threads.insert(std::this_thread::get_id());
    if (closed_) return false;
    if (ended) chunks_after_end.push_back(data);
    pending += slow ? data.size() : 0;
    chunks.push_back(std::move(data));
    return true;
  }
  void end() override {
    std::lock_guard<std::mutex> lock(mu_);
    output_threads.insert(std::this_thread::get_id());
    ended = true;
  }
  size_t pending_bytes() const override { return pending; }
  bool closed() const override { return closed_; }
  void on_close(std::function<void()> fn) override {
    if (closed_) return fn();
    std::lock_guard<std::mutex> lock(mu_);
    close_fn_ = std::move(fn);
  }
  void post(std::function<void()> fn) override {
    std::lock_guard<std::mutex> lock(mu_);
    posted_.push_back(std::move(fn));
    ++n_posted;
  }
  // Runs the posted work on this thread, including what it posts; returns how much ran.
  int run_posted() {
    int n = 0;
    for (;;) {
      std::function<void()> fn;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (posted_.empty()) return n;
        fn = std::move(posted_.front());
        posted_.pop_front();
      }
      fn();
      ++n;
    }
  }
  // The client goes away.
  void disconnect() {
    std::function<void()> fn;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      fn = std::move(close_fn_);
    }
    if (fn) fn();
  }
  std::string header(const std::string& name) const {
    for (const auto& [k, v] : extra_headers) {
      if (k == name) return v;
    }
    return "";
  }
  bool answered() {
    std::lock_guard<std::mutex> lock(mu_);
    return (streaming && ended) || (!streaming && n_answers > 0);
  }
  // The stream's events as JSON ("[DONE]" as the string).
  std::vector<json> events() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<json> out;
    for (const std::string& c : chunks) {
      EXPECT_EQ(c.rfind("data: ", 0), 0u) << c;
      EXPECT_TRUE(c.ends_with("\n\n")) << c;
      const std::string payload = c.substr(6, c.size() - 8);
      out.push_back(payload == "[DONE]" ? json("[DONE]") : json::parse(payload));
    }
    return out;
  }

  int n_answers = 0;
  int status = 0;
  std::string content_type;
  std::string body;
  Headers extra_headers;
  bool streaming = false;
  bool ended = false;
  bool slow = false;  // count written bytes as never sent
  size_t pending = 0;
  std::vector<std::string> chunks;
  std::vector<std::string> chunks_after_end;
  std::set<std::thread::id> output_threads;  // where send/start_stream/write/end were called
  int n_posted = 0;

 private:
  mutable std::mutex mu_;
  std::atomic<bool> closed_{false};
  std::function<void()> close_fn_;
  std::deque<std::function<void()>> posted_;
};

TokenEvent text_event(int index, std::string text, std::vector<int32_t> ids) {
  TokenEvent e;
  e.index = index;
  e.text = std::move(text);
  e.token_ids = std::move(ids);
  return e;
}

TokenEvent finish_event(int index, FinishReason reason, std::optional<Usage> usage = {}) {
  TokenEvent e;
  e.index = index;
  e.finish = reason;
  e.usage = usage;
  return e;
}

class OpenAiRoutesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // The tiny tokenizer with a chat template whose generation prompt opens reasoning.
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("openai_routes_test_" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    fs::copy_file(kTokenizerDir / "tokenizer.json", *dir_ / "tokenizer.json",
                  fs::copy_options::overwrite_existing);
    std::ofstream(*dir_ / "tokenizer_config.json")
        << json{{"eos_token", "<|endoftext|>"},
                {"chat_template",
                 "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant><think>\n{% endif %}"}}
               .dump();
    tokenizer_ = Tokenizer::load(*dir_)->release();
    prompts_ = PromptBuilder::create(*tokenizer_, dir_->string())->release();
  }
  static void TearDownTestSuite() {
    delete prompts_;
    delete tokenizer_;
    fs::remove_all(*dir_);
    delete dir_;
  }

  void SetUp() override {
    engine_ = std::make_unique<FakeEngine>(*tokenizer_);
    routes_ = std::make_unique<OpenAiRoutes>(*engine_, *prompts_, OpenAiRoutesOptions{});
  }
  // As the engine does at shutdown, every unfinished request ends (else a request's stream
  // and its listener keep each other alive: LeakSanitizer would say so).
  void TearDown() override {
    for (const auto& stream : engine_->streams) {
      stream->push(finish_event(0, FinishReason::kAbort, Usage{}));
    }
    run_posted();
  }

  std::shared_ptr<FakeResponder> call(const std::string& method, const std::string& path,
                                      const std::string& body = "") {
    HttpRequest request;
    request.method = method;
    request.path = path;
    request.target = path;
    request.body = body;
    return handle(std::move(request));
  }
  std::shared_ptr<FakeResponder> handle(HttpRequest request,
                                        std::shared_ptr<FakeResponder> responder = nullptr) {
    if (responder == nullptr) responder = std::make_shared<FakeResponder>();
    responders_.push_back(responder);
    routes_->handle(std::move(request), responder);
    return responder;
  }
  // What the connections' executors would run next: the drains the engine's events posted.
  void run_posted() {
    for (const auto& r : responders_) r->run_posted();
  }
  std::shared_ptr<FakeResponder> post(const std::string& path, const json& body) {
    return call("POST", path, body.dump());
  }

  static json error_of(const FakeResponder& r) { return json::parse(r.body).at("error"); }

  double counter(const std::string& name, MetricLabels labels = {}) {
    return engine_->metrics().counter(name, "", std::move(labels)).value();
  }

  static fs::path* dir_;
  static Tokenizer* tokenizer_;
  static PromptBuilder* prompts_;
  std::unique_ptr<FakeEngine> engine_;
  std::unique_ptr<OpenAiRoutes> routes_;
  std::vector<std::shared_ptr<FakeResponder>> responders_;
};
fs::path* OpenAiRoutesTest::dir_ = nullptr;
Tokenizer* OpenAiRoutesTest::tokenizer_ = nullptr;
PromptBuilder* OpenAiRoutesTest::prompts_ = nullptr;

const json kChatBody = {{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};

// Removes the per-response id and created time after checking them.
json strip_id(json chunk, const std::string& prefix) {
  EXPECT_EQ(chunk.at("id").get<std::string>().rfind(prefix, 0), 0u) << chunk;
  EXPECT_TRUE(chunk.at("created").is_number_integer()) << chunk;
  chunk.erase("id");
  chunk.erase("created");
  return chunk;
}

// ---- simple routes ----

TEST_F(OpenAiRoutesTest, Models) {
  auto r = call("GET", "/v1/models");
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->content_type, "application/json");
  EXPECT_EQ(json::parse(r->body), json::parse(R"({"object": "list", "data": [
    {"id": "tiny", "object": "model", "created": 1700000000, "owned_by": "moeserve",
     "root": "/models/tiny", "parent": null, "max_model_len": 64}]})"));
  r = call("GET", "/v1/models/tiny");
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["id"], "tiny");
  r = call("GET", "/v1/models/other");
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(error_of(*r)["code"], "model_not_found");
}

TEST_F(OpenAiRoutesTest, UnknownPathIs404AndWrongMethodIs405) {
  auto r = call("GET", "/v2/nothing");
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(error_of(*r)["type"], "invalid_request_error");
  EXPECT_NE(error_of(*r)["message"].get<std::string>().find("/v2/nothing"), std::string::npos);
  r = call("GET", "/v1/chat/completions");
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->header("Allow"), "POST");
  r = call("POST", "/v1/models");
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->header("Allow"), "GET");
  EXPECT_EQ(engine_->submitted.size(), 0u);
}

TEST_F(OpenAiRoutesTest, HealthFollowsReadinessAndDraining) {
  auto r = call("GET", "/health");
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(error_of(*r)["type"], "server_error");
  routes_->set_ready(true);
  r = call("GET", "/health");
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "{}");
  routes_->set_draining();
  r = call("GET", "/health");
  EXPECT_EQ(r->status, 503);
  r = post("/v1/chat/completions", kChatBody);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->header("Retry-After"), "1");
  EXPECT_EQ(engine_->submitted.size(), 0u);
}

TEST_F(OpenAiRoutesTest, MetricsCountRequestsByRouteAndStatus) {
  call("GET", "/v1/models");
  call("GET", "/v1/models");
  post("/v1/completions", {{"model", "nope"}, {"prompt", "x"}});
  auto r = call("GET", "/metrics");
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->content_type.rfind("text/plain; version=0.0.4", 0), 0u);
  EXPECT_EQ(counter("moeserve:http_requests", {{"route", "/v1/models"}, {"status", "200"}}), 2);
  EXPECT_EQ(counter("moeserve:http_requests", {{"route", "/v1/completions"}, {"status", "404"}}),
            1);
  EXPECT_NE(r->body.find("moeserve:http_requests"), std::string::npos) << r->body;
}

TEST_F(OpenAiRoutesTest, TokenizeAndDetokenize) {
  auto r = post("/tokenize", {{"prompt", "hello world"}});
  ASSERT_EQ(r->status, 200) << r->body;
  const std::vector<int32_t> ids = tokenizer_->encode("hello world");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(json::parse(r->body),
            (json{{"tokens", ids}, {"count", ids.size()}, {"max_model_len", 64}}));

  r = post("/tokenize", {{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "x"}}}}});
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(
      json::parse(r->body)["tokens"],
      json(tokenizer_->encode("<user>x\n<assistant><think>\n", {.add_special_tokens = false})));
  EXPECT_EQ(post("/tokenize", {{"model", "x"}, {"prompt", "a"}})->status, 404);

  r = post("/detokenize", {{"tokens", ids}});
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body), (json{{"prompt", "hello world"}}));
  r = post("/detokenize", {{"tokens", {1, tokenizer_->vocab_size()}}});
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(error_of(*r)["param"], "tokens");
  r = post("/detokenize", {{"tokens", {1, -1}}});
  EXPECT_EQ(r->status, 400);
}

// ---- request errors ----

TEST_F(OpenAiRoutesTest, InvalidJsonAndInvalidUtf8Are400) {
  for (const std::string& body :
       {std::string(R"({"model": "tiny", "messages": [)"), std::string("not json"),
        std::string("{\"model\": \"tiny\", \"prompt\": \"\xc3\x28\"}"), std::string("[1]")}) {
    for (const char* path : {"/v1/completions", "/v1/chat/completions", "/tokenize"}) {
      auto r = call("POST", path, body);
      EXPECT_EQ(r->status, 400) << path << " " << body;
      const json e = error_of(*r);  // parses: the body is valid JSON even when bytes were bad
      EXPECT_EQ(e["type"], "invalid_request_error");
    }
  }
  EXPECT_EQ(engine_->submitted.size(), 0u);
}

TEST_F(OpenAiRoutesTest, UnknownModelIs404) {
  auto r = post("/v1/chat/completions",
                {{"model", "gpt-4"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}});
  EXPECT_EQ(r->status, 404);
  const json want = {{"message", "The model 'gpt-4' does not exist (serving 'tiny')"},
                     {"type", "invalid_request_error"},
                     {"param", "model"},
                     {"code", "model_not_found"}};
  EXPECT_EQ(error_of(*r), want);
}

TEST_F(OpenAiRoutesTest, BadParametersAre400NamingTheField) {
  auto r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "x"}, {"n", 5}});  // max_n 4
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(error_of(*r)["param"], "n");
  r = post("/v1/completions", {{"model", "tiny"}, {"prompt", {1, 99999}}});
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(error_of(*r)["param"], "prompt");
  json chat = kChatBody;
  chat["max_completion_tokens"] = 3;
  chat["min_tokens"] = 4;
  r = post("/v1/chat/completions", chat);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(error_of(*r)["param"], "min_tokens");
  EXPECT_EQ(engine_->submitted.size(), 0u);
}

TEST_F(OpenAiRoutesTest, EngineRefusalsMapToHttp) {
  engine_->refusals = {absl::ResourceExhaustedError("the waiting queue is full (256)")};
  auto r = post("/v1/chat/completions", kChatBody);
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(r->header("Retry-After"), "1");
  EXPECT_EQ(error_of(*r)["type"], "rate_limit_error");
  EXPECT_EQ(error_of(*r)["message"], "the waiting queue is full (256)");

  const std::string too_long = "prompt (60 tokens) + max_tokens (10) exceeds max_model_len (64)";
  engine_->refusals = {absl::InvalidArgumentError(too_long)};
  r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "x"}, {"max_tokens", 10}});
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(error_of(*r)["message"], too_long);

  engine_->refusals = {absl::UnavailableError("draining")};
  r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "x"}});
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->header("Retry-After"), "1");

  // Several prompts: the second refused, the first is aborted.
  engine_->submitted.clear();
  engine_->refusals = {absl::OkStatus(), absl::ResourceExhaustedError("full")};
  r = post("/v1/completions", {{"model", "tiny"}, {"prompt", {"a", "b"}}});
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(r->n_answers, 1);
  ASSERT_EQ(engine_->aborted.size(), 1u);
  EXPECT_EQ(engine_->aborted[0].first, engine_->stream(engine_->streams.size() - 1)->id());
}

// ---- non-streaming generation ----

TEST_F(OpenAiRoutesTest, CompletionResponse) {
  engine_->scripts = {{text_event(0, "Hel", {5}), text_event(0, "lo", {6}),
                       finish_event(0, FinishReason::kStop, Usage{3, 2, 1})}};
  auto r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "hi"}, {"seed", 7}});
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->n_answers, 1);
  EXPECT_EQ(strip_id(json::parse(r->body), "cmpl-"), json::parse(R"({
    "object": "text_completion", "model": "tiny",
    "choices": [{"index": 0, "text": "Hello", "logprobs": null, "finish_reason": "stop",
                 "stop_reason": null}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
              "prompt_tokens_details": {"cached_tokens": 1}}})"));
  ASSERT_EQ(engine_->submitted.size(), 1u);
  const GenerateRequest& g = engine_->submitted[0];
  EXPECT_EQ(g.prompt, tokenizer_->encode("hi"));
  EXPECT_EQ(g.sampling.max_tokens, 16);
  EXPECT_EQ(g.sampling.temperature, 1.0f);
  EXPECT_EQ(g.sampling.seed, 7u);
  EXPECT_EQ(g.reasoning, ReasoningMode::kNone);
  EXPECT_FALSE(g.deadline.has_value());
  EXPECT_EQ(g.external_id, json::parse(r->body)["id"]);
}

TEST_F(OpenAiRoutesTest, ChatResponseWithReasoningAndDefaultMaxTokens) {
  TokenEvent think = text_event(0, "", {7});
  think.reasoning_text = "hmm";
  TokenEvent stop = text_event(0, "Yes", {8});
  stop.finish = FinishReason::kStop;
  stop.stop_token = 9;
  stop.usage = Usage{4, 2, 0};
  engine_->scripts = {{think, stop}};
  json body = kChatBody;
  body["stop_token_ids"] = {9};
  auto r = post("/v1/chat/completions", body);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(strip_id(json::parse(r->body), "chatcmpl-"), json::parse(R"({
    "object": "chat.completion", "model": "tiny",
    "choices": [{"index": 0,
                 "message": {"role": "assistant", "content": "Yes", "reasoning_content": "hmm"},
                 "logprobs": null, "finish_reason": "stop", "stop_reason": 9}],
    "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6,
              "prompt_tokens_details": {"cached_tokens": 0}}})"));
  const GenerateRequest& g = engine_->submitted.at(0);
  const std::vector<int32_t> prompt =
      tokenizer_->encode("<user>hi\n<assistant><think>\n", {.add_special_tokens = false});
  EXPECT_EQ(g.prompt, prompt);
  EXPECT_EQ(g.reasoning, ReasoningMode::kInsideReasoning);
  // Without max_tokens the request may use what the context leaves.
  EXPECT_EQ(g.sampling.max_tokens, 64 - static_cast<int>(prompt.size()));

  // ... or the whole KV cache, when that is smaller.
  engine_->info().n_kv_blocks = 3;
  engine_->info().block_size = 16;
  post("/v1/chat/completions", kChatBody);
  ASSERT_EQ(engine_->submitted.size(), 2u);
  EXPECT_EQ(engine_->submitted[1].sampling.max_tokens, 48 - static_cast<int>(prompt.size()));
}

TEST_F(OpenAiRoutesTest, EosIsNotAStopReason) {
  TokenEvent stop = finish_event(0, FinishReason::kStop, Usage{1, 1, 0});
  stop.stop_token = tokenizer_->eos_id();
  engine_->scripts = {{stop}};
  auto r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "x"}});
  EXPECT_EQ(json::parse(r->body)["choices"][0]["stop_reason"], nullptr);
}

TEST_F(OpenAiRoutesTest, SeveralPromptsAndNIndexChoicesAsOpenAi) {
  // Prompt i, sequence j is choice i * n + j.
  engine_->scripts = {
      {text_event(1, "b", {1}), text_event(0, "a", {1}), finish_event(0, FinishReason::kStop),
       finish_event(1, FinishReason::kLength, Usage{2, 2, 0})},
      {text_event(0, "c", {1}), text_event(1, "d", {1}), finish_event(1, FinishReason::kStop),
       finish_event(0, FinishReason::kStop, Usage{3, 2, 1})}};
  auto r = post("/v1/completions", {{"model", "tiny"}, {"prompt", {"x", "y"}}, {"n", 2}});
  ASSERT_EQ(r->status, 200) << r->body;
  const json body = json::parse(r->body);
  ASSERT_EQ(body["choices"].size(), 4u);
  const char* texts[] = {"a", "b", "c", "d"};
  const char* reasons[] = {"stop", "length", "stop", "stop"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(body["choices"][i]["index"], i);
    EXPECT_EQ(body["choices"][i]["text"], texts[i]);
    EXPECT_EQ(body["choices"][i]["finish_reason"], reasons[i]);
  }
  EXPECT_EQ(body["usage"], json::parse(R"({"prompt_tokens": 5, "completion_tokens": 4,
      "total_tokens": 9, "prompt_tokens_details": {"cached_tokens": 1}})"));
  EXPECT_EQ(engine_->submitted.size(), 2u);
}

TEST_F(OpenAiRoutesTest, EventsFromTheEngineThreadReachTheClient) {
  auto r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "x"}});
  EXPECT_FALSE(r->answered());  // handle() returned without waiting
  auto stream = engine_->stream(0);
  ASSERT_NE(stream, nullptr);
  std::thread engine_thread([&] {
    stream->push(text_event(0, "late", {3}));
    stream->push(finish_event(0, FinishReason::kLength, Usage{1, 1, 0}));
  });
  engine_thread.join();
  EXPECT_FALSE(r->answered());    // the engine thread only handed the work over
  EXPECT_EQ(r->run_posted(), 1);  // one drain for both events
  ASSERT_TRUE(r->answered());
  EXPECT_EQ(json::parse(r->body)["choices"][0]["text"], "late");
  EXPECT_EQ(r->output_threads, std::set<std::thread::id>{std::this_thread::get_id()});
}

TEST_F(OpenAiRoutesTest, NonStreamingErrorsAreHttpErrors) {
  TokenEvent failed = finish_event(0, FinishReason::kError, Usage{1, 0, 0});
  failed.error = absl::InternalError("model produced a non-finite logit");
  engine_->scripts = {{text_event(0, "x", {1}), failed}};
  auto r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "x"}});
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(error_of(*r)["message"], "model produced a non-finite logit");
  EXPECT_EQ(error_of(*r)["type"], "server_error");

  // The request's deadline: 504, and the sibling prompt is aborted.
  TokenEvent late = finish_event(0, FinishReason::kAbort, Usage{1, 0, 0});
  late.error = absl::DeadlineExceededError("the request's deadline passed");
  engine_->scripts = {{late}, {}};
  r = post("/v1/completions", {{"model", "tiny"}, {"prompt", {"x", "y"}}});
  EXPECT_EQ(r->status, 504);
  EXPECT_EQ(r->n_answers, 1);
  ASSERT_EQ(engine_->aborted.size(), 1u);
  EXPECT_EQ(engine_->aborted[0].first, engine_->streams.back()->id());
}

TEST_F(OpenAiRoutesTest, RequestTimeoutSetsTheDeadline) {
  routes_ = std::make_unique<OpenAiRoutes>(*engine_, *prompts_,
                                           OpenAiRoutesOptions{.request_timeout_s = 30});
  const Clock::time_point before = Clock::now();
  post("/v1/completions", {{"model", "tiny"}, {"prompt", "x"}});
  ASSERT_EQ(engine_->submitted.size(), 1u);
  ASSERT_TRUE(engine_->submitted[0].deadline.has_value());
  EXPECT_GE(*engine_->submitted[0].deadline, before + std::chrono::seconds(30));
  EXPECT_LE(*engine_->submitted[0].deadline, Clock::now() + std::chrono::seconds(30));
}

// ---- streaming ----

TEST_F(OpenAiRoutesTest, ChatStreamEventSequence) {
  engine_->scripts = {{text_event(0, "Hel", {5}), text_event(0, "", {6}),  // held back: skipped
                       text_event(0, "lo", {7}),
                       finish_event(0, FinishReason::kLength, Usage{4, 3, 2})}};
  json body = kChatBody;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto r = post("/v1/chat/completions", body);
  ASSERT_TRUE(r->streaming);
  EXPECT_EQ(r->content_type, "text/event-stream");
  EXPECT_TRUE(r->ended);
  const std::vector<json> events = r->events();
  ASSERT_EQ(events.size(), 6u);
  const std::string id = events[0]["id"];
  for (size_t i = 0; i + 1 < events.size(); ++i) EXPECT_EQ(events[i]["id"], id);
  const char* want[] = {
      R"({"object": "chat.completion.chunk", "model": "tiny", "usage": null, "choices": [
          {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null,
           "finish_reason": null}]})",
      R"({"object": "chat.completion.chunk", "model": "tiny", "usage": null, "choices": [
          {"index": 0, "delta": {"content": "Hel"}, "logprobs": null, "finish_reason": null}]})",
      R"({"object": "chat.completion.chunk", "model": "tiny", "usage": null, "choices": [
          {"index": 0, "delta": {"content": "lo"}, "logprobs": null, "finish_reason": null}]})",
      R"({"object": "chat.completion.chunk", "model": "tiny", "usage": null, "choices": [
          {"index": 0, "delta": {}, "logprobs": null, "finish_reason": "length",
           "stop_reason": null}]})",
      R"({"object": "chat.completion.chunk", "model": "tiny", "choices": [],
          "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7,
                    "prompt_tokens_details": {"cached_tokens": 2}}})",
  };
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(strip_id(events[i], "chatcmpl-"), json::parse(want[i])) << i;
  }
  EXPECT_EQ(events[5], "[DONE]");
  EXPECT_TRUE(r->chunks_after_end.empty());
  EXPECT_EQ(
      counter("moeserve:http_requests", {{"route", "/v1/chat/completions"}, {"status", "200"}}), 1);
}

TEST_F(OpenAiRoutesTest, CompletionStreamWithoutUsage) {
  TokenEvent stop = text_event(0, "b", {2});
  stop.finish = FinishReason::kStop;
  stop.stop_string = "END";
  stop.usage = Usage{1, 2, 0};
  engine_->scripts = {{text_event(0, "a", {1}), stop}};
  auto r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "x"}, {"stream", true}});
  const std::vector<json> events = r->events();
  ASSERT_EQ(events.size(), 4u);
  const char* want[] = {
      R"({"object": "text_completion", "model": "tiny", "choices": [
          {"index": 0, "text": "a", "logprobs": null, "finish_reason": null,
           "stop_reason": null}]})",
      R"({"object": "text_completion", "model": "tiny", "choices": [
          {"index": 0, "text": "b", "logprobs": null, "finish_reason": null,
           "stop_reason": null}]})",
      R"({"object": "text_completion", "model": "tiny", "choices": [
          {"index": 0, "text": "", "logprobs": null, "finish_reason": "stop",
           "stop_reason": "END"}]})",
  };
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(strip_id(events[i], "cmpl-"), json::parse(want[i]));
  EXPECT_EQ(events[3], "[DONE]");
  EXPECT_TRUE(r->ended);
}

TEST_F(OpenAiRoutesTest, StreamInterleavesTheNChoices) {
  engine_->scripts = {{text_event(0, "a", {1}), text_event(1, "b", {2}),
                       finish_event(0, FinishReason::kStop), text_event(1, "c", {3})}};
  json body = kChatBody;
  body["stream"] = true;
  body["n"] = 2;
  auto r = post("/v1/chat/completions", body);
  EXPECT_FALSE(r->ended);
  TokenEvent last = finish_event(1, FinishReason::kLength, Usage{2, 3, 0});
  engine_->stream(0)->push(last);
  r->run_posted();
  ASSERT_TRUE(r->ended);
  // (index, delta or finish reason) per event.
  std::vector<std::pair<int, json>> got;
  const std::vector<json> events = r->events();
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json& c = events[i]["choices"][0];
    got.emplace_back(c["index"].get<int>(),
                     c["finish_reason"].is_null() ? c["delta"] : c["finish_reason"]);
  }
  const std::vector<std::pair<int, json>> want = {
      {0, {{"role", "assistant"}, {"content", ""}}},
      {0, {{"content", "a"}}},
      {1, {{"role", "assistant"}, {"content", ""}}},
      {1, {{"content", "b"}}},
      {0, "stop"},
      {1, {{"content", "c"}}},
      {1, "length"},
  };
  EXPECT_EQ(got, want);
  EXPECT_EQ(events.back(), "[DONE]");
}

// While the engine thread pushes, its listener only hands work over: every event is polled,
// formatted and written on the connection's executor (the test thread here), in push order,
// and the stream completes.
TEST_F(OpenAiRoutesTest, StreamIsFormattedOnTheConnectionNotOnTheEngineThread) {
  json body = kChatBody;
  body["stream"] = true;
  body["n"] = 2;
  auto r = post("/v1/chat/completions", body);
  auto stream = engine_->stream(0);
  ASSERT_NE(stream, nullptr);
  constexpr int kTokens = 200;
  std::thread engine_thread([&] {
    for (int i = 0; i < kTokens; ++i) stream->push(text_event(i % 2, std::to_string(i), {1}));
    stream->push(finish_event(0, FinishReason::kStop));
    stream->push(finish_event(1, FinishReason::kLength, Usage{1, kTokens, 0}));
  });
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
  while (!r->answered() && Clock::now() < deadline) {
    if (r->run_posted() == 0) std::this_thread::yield();
  }
  engine_thread.join();
  ASSERT_TRUE(r->answered());
  EXPECT_EQ(r->output_threads, std::set<std::thread::id>{std::this_thread::get_id()});

  const std::vector<json> events = r->events();
  ASSERT_EQ(events.size(), 2u + kTokens + 2u + 1u);  // roles, deltas, finishes, [DONE]
  std::vector<std::string> deltas;
  std::vector<std::pair<int, std::string>> finishes;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json& c = events[i]["choices"][0];
    if (!c["finish_reason"].is_null()) {
      finishes.emplace_back(c["index"].get<int>(), c["finish_reason"].get<std::string>());
    } else if (!c["delta"].contains("role")) {
      const std::string text = c["delta"]["content"];
      EXPECT_EQ(c["index"], std::stoi(text) % 2) << text;
      deltas.push_back(text);
    }
  }
  ASSERT_EQ(deltas.size(), static_cast<size_t>(kTokens));
  for (int i = 0; i < kTokens; ++i) EXPECT_EQ(deltas[i], std::to_string(i));
  EXPECT_EQ(finishes, (std::vector<std::pair<int, std::string>>{{0, "stop"}, {1, "length"}}));
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_TRUE(r->chunks_after_end.empty());
}

TEST_F(OpenAiRoutesTest, StreamLogprobs) {
  TokenEvent e = text_event(0, "h", {'h'});
  e.logprobs = {{.token = tokenizer_->token_to_id("h"), .logprob = -0.5f, .top = {}}};
  e.finish = FinishReason::kLength;
  e.usage = Usage{1, 1, 0};
  engine_->scripts = {{e}};
  json body = kChatBody;
  body["stream"] = true;
  body["logprobs"] = true;
  auto r = post("/v1/chat/completions", body);
  const std::vector<json> events = r->events();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[1]["choices"][0]["logprobs"], json::parse(R"({"content": [
      {"token": "h", "logprob": -0.5, "bytes": [104], "top_logprobs": []}]})"));
}

TEST_F(OpenAiRoutesTest, ErrorAfterTheStreamStartedIsAnErrorEvent) {
  json body = kChatBody;
  body["stream"] = true;
  engine_->scripts = {{text_event(0, "x", {1})}};
  auto r = post("/v1/chat/completions", body);
  TokenEvent failed = finish_event(0, FinishReason::kError, Usage{1, 1, 0});
  failed.error = absl::InternalError("the model failed");
  engine_->stream(0)->push(failed);
  r->run_posted();
  const std::vector<json> events = r->events();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[1]["choices"][0]["delta"]["content"], "x");
  EXPECT_EQ(events[2], json::parse(R"({"error": {"message": "the model failed",
      "type": "server_error", "param": null, "code": "internal_error"}})"));
  EXPECT_EQ(events[3], "[DONE]");
  EXPECT_TRUE(r->ended);
  EXPECT_EQ(r->status, 200);
}

TEST_F(OpenAiRoutesTest, StreamAbortIsAFinishReason) {
  TokenEvent late = finish_event(0, FinishReason::kAbort, Usage{1, 0, 0});
  late.error = absl::DeadlineExceededError("the request's deadline passed");
  engine_->scripts = {{late}};
  auto r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "x"}, {"stream", true}});
  const std::vector<json> events = r->events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["choices"][0]["finish_reason"], "abort");
  EXPECT_EQ(events[1], "[DONE]");
}

TEST_F(OpenAiRoutesTest, DisconnectAbortsEveryStream) {
  json body = {{"model", "tiny"}, {"prompt", {"x", "y"}}, {"stream", true}};
  engine_->scripts = {{text_event(0, "a", {1})}, {}};
  engine_->push_on_abort = false;
  auto r = post("/v1/completions", body);
  ASSERT_EQ(engine_->streams.size(), 2u);
  const size_t n_chunks = r->chunks.size();
  r->disconnect();
  ASSERT_EQ(engine_->aborted.size(), 2u);
  for (const auto& [id, why] : engine_->aborted) {
    EXPECT_TRUE(absl::IsCancelled(why));
    EXPECT_EQ(why.message(), "client disconnected");
  }
  EXPECT_EQ(engine_->aborted[0].first, engine_->streams[0]->id());
  EXPECT_EQ(engine_->aborted[1].first, engine_->streams[1]->id());
  EXPECT_EQ(counter("moeserve:client_disconnects"), 1);
  // Events the engine made before it saw the abort write nothing.
  engine_->streams[0]->push(text_event(0, "b", {2}));
  engine_->streams[1]->push(finish_event(0, FinishReason::kAbort, Usage{}));
  r->run_posted();
  EXPECT_EQ(r->chunks.size(), n_chunks);
  EXPECT_FALSE(r->ended);
  r->disconnect();
  EXPECT_EQ(counter("moeserve:client_disconnects"), 1);
}

TEST_F(OpenAiRoutesTest, DisconnectBeforeTheAnswerAborts) {
  auto r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "x"}});
  r->disconnect();
  ASSERT_EQ(engine_->aborted.size(), 1u);
  EXPECT_EQ(counter("moeserve:client_disconnects"), 1);
  EXPECT_EQ(r->n_answers, 0);
}

TEST_F(OpenAiRoutesTest, FinishedRequestsIgnoreALateClose) {
  engine_->scripts = {{finish_event(0, FinishReason::kStop, Usage{1, 0, 0})}};
  auto r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "x"}});
  EXPECT_EQ(r->status, 200);
  r->disconnect();
  EXPECT_TRUE(engine_->aborted.empty());
  EXPECT_EQ(counter("moeserve:client_disconnects"), 0);
}

TEST_F(OpenAiRoutesTest, SlowReaderIsCutOff) {
  routes_ = std::make_unique<OpenAiRoutes>(*engine_, *prompts_,
                                           OpenAiRoutesOptions{.max_stream_pending_bytes = 1000});
  auto responder = std::make_shared<FakeResponder>();
  responder->slow = true;
  HttpRequest request;
  request.method = "POST";
  request.path = "/v1/completions";
  request.body = json{{"model", "tiny"}, {"prompt", "x"}, {"stream", true}}.dump();
  handle(std::move(request), responder);
  auto stream = engine_->stream(0);
  for (int i = 0; i < 100 && !responder->ended; ++i) {
    stream->push(text_event(0, std::string(100, 'z'), {1}));
    responder->run_posted();
  }
  EXPECT_TRUE(responder->ended);
  EXPECT_GT(responder->pending, 1000u);
  EXPECT_LT(responder->pending, 1000u + 1000u);  // cut off at the first chunk past the limit
  ASSERT_EQ(engine_->aborted.size(), 1u);
  EXPECT_EQ(engine_->aborted[0].first, stream->id());
  EXPECT_EQ(counter("moeserve:slow_client_aborts"), 1);
  EXPECT_TRUE(responder->chunks_after_end.empty());
}

}  // namespace
}  // namespace moeserve
