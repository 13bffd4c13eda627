// The gRPC front end against a scripted fake engine, through the generated client stub over
// 127.0.0.1: request mapping, unary and streaming results, errors, cancellation, deadlines,
// auth, health and reflection.
#include "server/grpc_server.h"

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "moeserve/engine.h"
#include "moeserve/v1/generation.grpc.pb.h"
#include "server/prompt_builder.h"
#include "tokenizer/tokenizer.h"
#include <google/protobuf/unknown_field_set.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>

namespace moeserve {
namespace {

namespace pb = ::moeserve::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kTokenizerDir =
    std::string(MOESERVE_SOURCE_DIR) + "/tests/data/tokenizer/tiny_byte_level";
constexpr const char* kModelId = "tiny-model";

// An Engine that answers each submit() with a script: the script refuses the request or pushes
// events into its stream (all at once; a script that pushes no final event leaves the request
// running until abort()). Records requests and aborts.
class FakeEngine : public Engine {
 public:
  using Script = std::function<Status(const GenerateRequest&, TokenStream&)>;

  explicit FakeEngine(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {
    info_.id = kModelId;
    info_.architecture = "DeepseekV3ForCausalLM";
    info_.vocab_size = tokenizer.vocab_size();
    info_.max_model_len = 128;
    info_.eos_ids = {tokenizer.eos_id()};
    info_.backend = "cpu";
    info_.n_kv_blocks = 32;
    info_.block_size = 16;
  }

  void set_script(Script script) {
    std::lock_guard<std::mutex> lock(mu_);
    script_ = std::move(script);
  }

  StatusOr<std::shared_ptr<TokenStream>> submit(GenerateRequest request) override {
    Script script;
    std::shared_ptr<TokenStream> stream;
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back(request);
      stream = std::make_shared<TokenStream>(next_id_++);
      streams_[stream->id()] = stream;
      script = script_;
    }
    if (script) {
      Status status = script(request, *stream);
      if (!status.ok()) return status;
    }
    return stream;
  }

  // As the real engine: the stream gets a final kAbort event (ignored after a final one).
  void abort(int64_t id, Status why) override {
    std::shared_ptr<TokenStream> stream;
    {
      std::lock_guard<std::mutex> lock(mu_);
      aborts_.emplace_back(id, why);
      if (auto it = streams_.find(id); it != streams_.end()) stream = it->second.lock();
    }
    cv_.notify_all();
    if (stream) {
      TokenEvent event;
      event.finish = FinishReason::kAbort;
      event.error = why;
      event.usage = Usage{};
      stream->push(std::move(event));
    }
  }

  // The first abort, waiting up to `timeout` for it.
  std::optional<std::pair<int64_t, Status>> wait_for_abort(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !aborts_.empty(); })) return std::nullopt;
    return aborts_.front();
  }
  std::vector<std::pair<int64_t, Status>> aborts() const {
    std::lock_guard<std::mutex> lock(mu_);
    return aborts_;
  }
  std::vector<GenerateRequest> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

  void stop_accepting() override {}
  bool wait_idle(Clock::time_point) override { return true; }
  EngineStats stats() const override { return {}; }
  const ModelInfo& model_info() const override { return info_; }
  const EngineConfig& config() const override { return config_; }
  const Tokenizer& tokenizer() const override { return tokenizer_; }
  MetricsRegistry& metrics() override { std::abort(); }  // the gRPC server keeps no metrics

 private:
  const Tokenizer& tokenizer_;
  ModelInfo info_;
  EngineConfig config_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Script script_;
  int64_t next_id_ = 100;
  std::vector<GenerateRequest> requests_;
  std::map<int64_t, std::weak_ptr<TokenStream>> streams_;
  std::vector<std::pair<int64_t, Status>> aborts_;
};

TokenEvent event(int index, std::vector<int32_t> ids, std::string text) {
  TokenEvent e;
  e.index = index;
  e.token_ids = std::move(ids);
  e.text = std::move(text);
  return e;
}

TokenEvent finished(TokenEvent e, FinishReason reason) {
  e.finish = reason;
  return e;
}

TokenEvent last(TokenEvent e, Usage usage) {
  e.usage = usage;
  return e;
}

// A script pushing these events.
FakeEngine::Script push_all(std::vector<TokenEvent> events) {
  return [events](const GenerateRequest&, TokenStream& stream) {
    for (const TokenEvent& e : events) stream.push(e);
    return Status();
  };
}

class GrpcServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tokenizer = Tokenizer::load(kTokenizerDir);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer).release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }

  void SetUp() override {
    auto prompts = PromptBuilder::create(*tokenizer_, kTokenizerDir);
    ASSERT_TRUE(prompts.ok()) << prompts.status();
    prompts_ = std::move(*prompts);
    engine_ = std::make_unique<FakeEngine>(*tokenizer_);
    start({});
  }

  void TearDown() override {
    if (server_) server_->shutdown(Clock::now() + seconds(2));
  }

  void start(GrpcServerOptions options, const PromptBuilder* prompts = nullptr) {
    if (server_) server_->shutdown(Clock::now());
    options.host = "127.0.0.1";
    options.port = 0;
    auto server = GrpcServer::start(*engine_, prompts ? *prompts : *prompts_, options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = pb::Generation::NewStub(channel_);
  }

  // Every call gets a deadline, so no test can hang on the server.
  static void set_deadline(grpc::ClientContext& context, milliseconds timeout = seconds(10)) {
    context.set_deadline(std::chrono::system_clock::now() + timeout);
  }

  grpc::Status generate(const pb::GenerateRequest& request, pb::GenerateResponse* response) {
    grpc::ClientContext context;
    set_deadline(context);
    return stub_->Generate(&context, request, response);
  }

  // Reads the whole stream.
  grpc::Status generate_stream(const pb::GenerateRequest& request,
                               std::vector<pb::GenerateStreamResponse>* messages) {
    grpc::ClientContext context;
    set_deadline(context);
    auto reader = stub_->GenerateStream(&context, request);
    pb::GenerateStreamResponse message;
    for (int i = 0; i < 1000 && reader->Read(&message); ++i) messages->push_back(message);
    return reader->Finish();
  }

  int32_t id_of(const std::string& token) const {
    const int32_t id = tokenizer_->token_to_id(token);
    EXPECT_GE(id, 0) << token;
    return id;
  }

  static Tokenizer* tokenizer_;
  std::unique_ptr<PromptBuilder> prompts_;
  std::unique_ptr<FakeEngine> engine_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Generation::Stub> stub_;
};

Tokenizer* GrpcServerTest::tokenizer_ = nullptr;

pb::GenerateRequest text_request(const std::string& text) {
  pb::GenerateRequest request;
  request.set_text(text);
  return request;
}

TEST(GrpcStatusTest, KeepsCodeAndMessage) {
  EXPECT_TRUE(to_grpc_status(Status()).ok());
  const std::vector<std::pair<Status, grpc::StatusCode>> cases = {
      {absl::InvalidArgumentError("bad"), grpc::StatusCode::INVALID_ARGUMENT},
      {absl::NotFoundError("bad"), grpc::StatusCode::NOT_FOUND},
      {absl::ResourceExhaustedError("bad"), grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::UnavailableError("bad"), grpc::StatusCode::UNAVAILABLE},
      {absl::DeadlineExceededError("bad"), grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::FailedPreconditionError("bad"), grpc::StatusCode::FAILED_PRECONDITION},
      {absl::UnauthenticatedError("bad"), grpc::StatusCode::UNAUTHENTICATED},
      {absl::CancelledError("bad"), grpc::StatusCode::CANCELLED},
      {absl::InternalError("bad"), grpc::StatusCode::INTERNAL},
      {absl::Status(static_cast<absl::StatusCode>(99), "bad"), grpc::StatusCode::UNKNOWN},
  };
  for (const auto& [status, code] : cases) {
    const grpc::Status mapped = to_grpc_status(status);
    EXPECT_EQ(mapped.error_code(), code) << status;
    EXPECT_EQ(mapped.error_message(), "bad");
  }
}

TEST_F(GrpcServerTest, UnaryTextMapsPromptAndSampling) {
  const std::string text = "Hello world";
  const std::vector<int32_t> expected_prompt = tokenizer_->encode(text);
  const int32_t h = id_of("H");
  const Usage usage{static_cast<int>(expected_prompt.size()), 2, 0};
  engine_->set_script(
      push_all({last(finished(event(0, {h, h}, "HH"), FinishReason::kLength), usage)}));

  pb::GenerateRequest request = text_request(text);
  request.set_model(kModelId);
  request.set_request_id("req-1");
  request.set_priority(3);
  request.set_cache_salt("salt");
  pb::SamplingParams* sampling = request.mutable_sampling();
  sampling->set_temperature(0.5f);
  sampling->set_top_k(7);
  sampling->set_seed(42);
  sampling->set_max_tokens(2);
  sampling->add_stop("xy");
  sampling->add_stop_token_ids(3);
  (*sampling->mutable_logit_bias())[5] = -1.5f;
  sampling->set_skip_special_tokens(false);
  sampling->set_include_stop_str_in_output(true);
  pb::GenerateResponse response;
  const grpc::Status status = generate(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();

  EXPECT_EQ(response.id(), "req-1");
  EXPECT_EQ(response.model(), kModelId);
  ASSERT_EQ(response.completions_size(), 1);
  EXPECT_EQ(response.completions(0).text(), "HH");
  EXPECT_EQ(response.completions(0).token_ids_size(), 2);
  EXPECT_EQ(response.completions(0).finish_reason(), pb::FINISH_REASON_LENGTH);
  EXPECT_EQ(response.usage().prompt_tokens(), static_cast<int>(expected_prompt.size()));
  EXPECT_EQ(response.usage().completion_tokens(), 2);

  const std::vector<GenerateRequest> requests = engine_->requests();
  ASSERT_EQ(requests.size(), 1u);
  const GenerateRequest& got = requests[0];
  EXPECT_EQ(got.prompt, expected_prompt);
  EXPECT_EQ(got.external_id, "req-1");
  EXPECT_EQ(got.priority, 3);
  EXPECT_EQ(got.cache_salt, "salt");
  EXPECT_FALSE(got.skip_special_tokens);
  EXPECT_TRUE(got.include_stop_str_in_output);
  EXPECT_FLOAT_EQ(got.sampling.temperature, 0.5f);
  EXPECT_EQ(got.sampling.top_k, 7);
  ASSERT_TRUE(got.sampling.seed.has_value());
  EXPECT_EQ(*got.sampling.seed, 42u);
  EXPECT_EQ(got.sampling.max_tokens, 2);
  EXPECT_EQ(got.sampling.stop, std::vector<std::string>{"xy"});
  EXPECT_EQ(got.sampling.stop_token_ids, std::vector<int32_t>{3});
  EXPECT_EQ(got.sampling.logit_bias, (std::map<int32_t, float>{{5, -1.5f}}));
  // Unset fields keep SamplingParams' defaults.
  const SamplingParams defaults;
  EXPECT_EQ(got.sampling.top_p, defaults.top_p);
  EXPECT_EQ(got.sampling.min_p, defaults.min_p);
  EXPECT_EQ(got.sampling.repetition_penalty, defaults.repetition_penalty);
  EXPECT_EQ(got.sampling.n, 1);
  EXPECT_FALSE(got.sampling.logprobs);
  // The client's 10 s deadline reaches the engine (gRPC rounds the timeout it sends up).
  ASSERT_TRUE(got.deadline.has_value());
  EXPECT_GT(*got.deadline, Clock::now() + seconds(9));
  EXPECT_LE(*got.deadline, Clock::now() + milliseconds(10100));
}

TEST_F(GrpcServerTest, UnaryTokenIdsWithoutDeadline) {
  engine_->set_script(push_all({last(finished(event(0, {9}, "x"), FinishReason::kStop), {})}));
  pb::GenerateRequest request;
  for (int64_t id : {5, 6, 7}) request.mutable_token_ids()->add_ids(id);
  pb::GenerateResponse response;
  grpc::ClientContext context;  // no deadline: the fake answers at once
  const grpc::Status status = stub_->Generate(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.id().rfind("gen-", 0), 0u) << response.id();
  const std::vector<GenerateRequest> requests = engine_->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].prompt, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_FALSE(requests[0].deadline.has_value());
  EXPECT_EQ(requests[0].external_id, response.id());
  ASSERT_EQ(response.completions_size(), 1);
  EXPECT_EQ(response.completions(0).finish_reason(), pb::FINISH_REASON_STOP);
}

TEST_F(GrpcServerTest, BadInputIsRefusedBeforeTheEngine) {
  pb::GenerateResponse response;
  pb::GenerateRequest out_of_vocab;
  out_of_vocab.mutable_token_ids()->add_ids(tokenizer_->vocab_size());
  grpc::Status status = generate(out_of_vocab, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("outside the vocabulary"), std::string::npos)
      << status.error_message();

  status = generate(pb::GenerateRequest(), &response);  // no input
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("input"), std::string::npos);

  status = generate(text_request(""), &response);  // as REST: an empty prompt is refused
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("must not be empty"), std::string::npos);

  pb::GenerateRequest other_model = text_request("hi");
  other_model.set_model("gpt-4");
  status = generate(other_model, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(status.error_message().find("gpt-4"), std::string::npos);

  // The tiny tokenizer has no chat template.
  pb::GenerateRequest chat;
  pb::ChatMessage* message = chat.mutable_chat()->add_messages();
  message->set_role("user");
  message->set_content("hi");
  status = generate(chat, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();

  EXPECT_TRUE(engine_->requests().empty());
}

TEST_F(GrpcServerTest, ChatIsRenderedWithTheTemplate) {
  // The tiny tokenizer plus a chat template of our own.
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "grpc_server_test_chat";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kTokenizerDir + "/tokenizer.json", dir / "tokenizer.json",
                             std::filesystem::copy_options::overwrite_existing);
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"eos_token": "<|endoftext|>", "chat_template": "{% for m in messages %}[{{ m.role )"
         R"(}}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"})";
  auto prompts = PromptBuilder::create(*tokenizer_, dir.string());
  ASSERT_TRUE(prompts.ok()) << prompts.status();
  start({}, prompts->get());
  engine_->set_script(push_all({last(finished(event(0, {9}, "x"), FinishReason::kStop), {})}));

  pb::GenerateRequest request;
  pb::ChatMessage* message = request.mutable_chat()->add_messages();
  message->set_role("user");
  message->set_content("hi there");
  pb::GenerateResponse response;
  ASSERT_TRUE(generate(request, &response).ok());
  request.mutable_chat()->set_add_generation_prompt(false);
  ASSERT_TRUE(generate(request, &response).ok());

  const std::vector<GenerateRequest> requests = engine_->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(tokenizer_->decode(requests[0].prompt), "[user]hi there[assistant]");
  EXPECT_EQ(tokenizer_->decode(requests[1].prompt), "[user]hi there");
  server_->shutdown(Clock::now());  // before `prompts` goes
}

TEST_F(GrpcServerTest, StreamSendsEventsInOrderThenUsage) {
  const int32_t h = id_of("H"), e = id_of("e"), space = id_of("\xC4\xA0");  // Ġ: a space
  const int32_t eos = tokenizer_->eos_id();
  TokenEvent first = event(0, {h, e}, "He");
  first.logprobs = {{h, -0.25f, {{h, -0.25f}, {space, -2.0f}}}, {e, -0.5f, {}}};
  TokenEvent second = finished(event(0, {eos}, ""), FinishReason::kStop);
  second.stop_token = eos;
  engine_->set_script(push_all({first, last(second, Usage{4, 3, 2})}));

  pb::GenerateRequest request = text_request("Hi");
  request.set_request_id("stream-1");
  request.mutable_sampling()->set_logprobs(true);
  request.mutable_sampling()->set_top_logprobs(2);
  std::vector<pb::GenerateStreamResponse> messages;
  const grpc::Status status = generate_stream(request, &messages);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(messages.size(), 3u);
  for (const auto& m : messages) EXPECT_EQ(m.id(), "stream-1");

  const pb::Completion& d0 = messages[0].delta();
  EXPECT_EQ(d0.index(), 0);
  EXPECT_EQ(d0.text(), "He");
  EXPECT_EQ(std::vector<int32_t>(d0.token_ids().begin(), d0.token_ids().end()),
            (std::vector<int32_t>{h, e}));
  EXPECT_EQ(d0.finish_reason(), pb::FINISH_REASON_UNSPECIFIED);
  EXPECT_FALSE(messages[0].has_usage());
  ASSERT_EQ(d0.logprobs_size(), 2);
  EXPECT_EQ(d0.logprobs(0).token_id(), h);
  EXPECT_EQ(d0.logprobs(0).token(), "H");
  EXPECT_FLOAT_EQ(d0.logprobs(0).logprob(), -0.25f);
  ASSERT_EQ(d0.logprobs(0).top_logprobs_size(), 2);
  EXPECT_EQ(d0.logprobs(0).top_logprobs(1).token_id(), space);
  EXPECT_EQ(d0.logprobs(0).top_logprobs(1).token(), " ");  // decoded, not "Ġ"
  EXPECT_FLOAT_EQ(d0.logprobs(0).top_logprobs(1).logprob(), -2.0f);
  EXPECT_EQ(d0.logprobs(1).token(), "e");
  EXPECT_EQ(d0.logprobs(1).top_logprobs_size(), 0);

  const pb::Completion& d1 = messages[1].delta();
  EXPECT_EQ(d1.finish_reason(), pb::FINISH_REASON_STOP);
  EXPECT_EQ(d1.stop_reason_case(), pb::Completion::kStopTokenId);
  EXPECT_EQ(d1.stop_token_id(), eos);
  EXPECT_FALSE(messages[1].has_usage());

  EXPECT_FALSE(messages[2].has_delta());
  ASSERT_TRUE(messages[2].has_usage());
  EXPECT_EQ(messages[2].usage().prompt_tokens(), 4);
  EXPECT_EQ(messages[2].usage().completion_tokens(), 3);
  EXPECT_EQ(messages[2].usage().cached_tokens(), 2);
  EXPECT_TRUE(engine_->aborts().empty());
}

std::vector<TokenEvent> two_interleaved_sequences() {
  TokenEvent a0 = event(0, {1}, "a");
  a0.reasoning_text = "think ";
  TokenEvent b1 = finished(event(1, {4}, "d"), FinishReason::kLength);
  TokenEvent a1 = finished(event(0, {3}, "c"), FinishReason::kStop);
  a1.stop_string = "zz";
  return {a0, event(1, {2}, "b"), a1, last(b1, Usage{1, 4, 0})};
}

TEST_F(GrpcServerTest, UnaryCollectsNSequences) {
  engine_->set_script(push_all(two_interleaved_sequences()));
  pb::GenerateRequest request = text_request("x");
  request.mutable_sampling()->set_n(2);
  pb::GenerateResponse response;
  const grpc::Status status = generate(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(engine_->requests().at(0).sampling.n, 2);
  ASSERT_EQ(response.completions_size(), 2);
  const pb::Completion& c0 = response.completions(0);
  const pb::Completion& c1 = response.completions(1);
  EXPECT_EQ(c0.index(), 0);
  EXPECT_EQ(c0.text(), "ac");
  EXPECT_EQ(c0.reasoning_text(), "think ");
  EXPECT_EQ(std::vector<int32_t>(c0.token_ids().begin(), c0.token_ids().end()),
            (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(c0.finish_reason(), pb::FINISH_REASON_STOP);
  EXPECT_EQ(c0.stop_string(), "zz");
  EXPECT_EQ(c1.index(), 1);
  EXPECT_EQ(c1.text(), "bd");
  EXPECT_EQ(c1.finish_reason(), pb::FINISH_REASON_LENGTH);
  EXPECT_EQ(c1.stop_reason_case(), pb::Completion::STOP_REASON_NOT_SET);
  EXPECT_EQ(response.usage().completion_tokens(), 4);
}

TEST_F(GrpcServerTest, StreamInterleavesNSequences) {
  engine_->set_script(push_all(two_interleaved_sequences()));
  pb::GenerateRequest request = text_request("x");
  request.mutable_sampling()->set_n(2);
  std::vector<pb::GenerateStreamResponse> messages;
  const grpc::Status status = generate_stream(request, &messages);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(messages.size(), 5u);
  const std::vector<std::pair<int, std::string>> expected = {
      {0, "a"}, {1, "b"}, {0, "c"}, {1, "d"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(messages[i].delta().index(), expected[i].first) << i;
    EXPECT_EQ(messages[i].delta().text(), expected[i].second) << i;
  }
  EXPECT_EQ(messages[2].delta().finish_reason(), pb::FINISH_REASON_STOP);
  EXPECT_EQ(messages[3].delta().finish_reason(), pb::FINISH_REASON_LENGTH);
  EXPECT_TRUE(messages[4].has_usage());
}

TEST_F(GrpcServerTest, SubmitErrorsKeepTheirCode) {
  const std::vector<std::pair<Status, grpc::StatusCode>> cases = {
      {absl::InvalidArgumentError("top_p must be in (0, 1], got 0"),
       grpc::StatusCode::INVALID_ARGUMENT},
      {absl::ResourceExhaustedError("queue full"), grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::UnavailableError("draining"), grpc::StatusCode::UNAVAILABLE},
  };
  for (const auto& [error, code] : cases) {
    engine_->set_script([error](const GenerateRequest&, TokenStream&) { return error; });
    pb::GenerateResponse response;
    grpc::Status status = generate(text_request("hi"), &response);
    EXPECT_EQ(status.error_code(), code);
    EXPECT_EQ(status.error_message(), error.message());
    std::vector<pb::GenerateStreamResponse> messages;
    status = generate_stream(text_request("hi"), &messages);
    EXPECT_EQ(status.error_code(), code);
    EXPECT_TRUE(messages.empty());
  }
  EXPECT_TRUE(engine_->aborts().empty());
}

TEST_F(GrpcServerTest, ErrorEventMidStreamEndsTheCall) {
  TokenEvent failure = finished(TokenEvent(), FinishReason::kError);
  failure.error = absl::InternalError("NaN in logits");
  engine_->set_script(push_all({event(0, {1}, "a"), failure}));
  std::vector<pb::GenerateStreamResponse> messages;
  grpc::Status status = generate_stream(text_request("hi"), &messages);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(status.error_message(), "NaN in logits");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].delta().text(), "a");

  pb::GenerateResponse response;
  status = generate(text_request("hi"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);

  // An engine-side deadline abort.
  TokenEvent expired = finished(TokenEvent(), FinishReason::kAbort);
  expired.error = absl::DeadlineExceededError("deadline exceeded");
  engine_->set_script(push_all({last(expired, {})}));
  status = generate(text_request("hi"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_F(GrpcServerTest, ClientCancelAbortsTheRequest) {
  engine_->set_script(push_all({event(0, {1}, "a")}));  // then nothing: runs until aborted
  grpc::ClientContext context;
  set_deadline(context);
  auto reader = stub_->GenerateStream(&context, text_request("hi"));
  pb::GenerateStreamResponse message;
  ASSERT_TRUE(reader->Read(&message));
  EXPECT_EQ(message.delta().text(), "a");
  context.TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);

  const auto abort = engine_->wait_for_abort(seconds(5));
  ASSERT_TRUE(abort.has_value()) << "the engine saw no abort";
  EXPECT_EQ(abort->first, 100);  // the fake's first stream id
  EXPECT_EQ(abort->second.code(), absl::StatusCode::kCancelled) << abort->second;
}

TEST_F(GrpcServerTest, ClientDeadlineAbortsTheRequest) {
  engine_->set_script(push_all({}));
  grpc::ClientContext context;
  set_deadline(context, milliseconds(300));
  pb::GenerateResponse response;
  const auto t0 = Clock::now();
  const grpc::Status status = stub_->Generate(&context, text_request("hi"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(Clock::now() - t0, seconds(5));

  const auto abort = engine_->wait_for_abort(seconds(5));
  ASSERT_TRUE(abort.has_value()) << "the engine saw no abort";
  EXPECT_EQ(abort->second.code(), absl::StatusCode::kDeadlineExceeded) << abort->second;
  const std::vector<GenerateRequest> requests = engine_->requests();
  ASSERT_EQ(requests.size(), 1u);
  ASSERT_TRUE(requests[0].deadline.has_value());
  // The server's copy of the deadline: 300 ms after the call left, give or take the trip.
  EXPECT_GT(*requests[0].deadline - t0, milliseconds(200));
  EXPECT_LT(*requests[0].deadline - t0, milliseconds(400));
}

TEST_F(GrpcServerTest, ServerTimeoutCapsTheDeadline) {
  GrpcServerOptions options;
  options.request_timeout_s = 0.2;
  start(options);
  engine_->set_script(push_all({}));
  const auto t0 = Clock::now();
  std::vector<pb::GenerateStreamResponse> messages;
  const grpc::Status status = generate_stream(text_request("hi"), &messages);  // 10 s deadline
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_LT(Clock::now() - t0, seconds(5));
  const std::vector<GenerateRequest> requests = engine_->requests();
  ASSERT_EQ(requests.size(), 1u);
  ASSERT_TRUE(requests[0].deadline.has_value());
  // 0.2 s from when the server took the call, not the client's 10 s.
  EXPECT_GT(*requests[0].deadline - t0, milliseconds(190));
  EXPECT_LT(*requests[0].deadline - t0, milliseconds(1000));
  const auto abort = engine_->wait_for_abort(seconds(5));
  ASSERT_TRUE(abort.has_value());
  EXPECT_EQ(abort->second.code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(GrpcServerTest, Tokenize) {
  pb::TokenizeRequest request;
  request.set_text("Hello world");
  pb::TokenizeResponse response;
  {
    grpc::ClientContext context;
    set_deadline(context);
    ASSERT_TRUE(stub_->Tokenize(&context, request, &response).ok());
  }
  const std::vector<int32_t> ids = tokenizer_->encode("Hello world");
  EXPECT_EQ(std::vector<int32_t>(response.token_ids().begin(), response.token_ids().end()), ids);
  EXPECT_EQ(response.count(), static_cast<int>(ids.size()));
  EXPECT_EQ(response.max_model_len(), 128);
  EXPECT_EQ(tokenizer_->decode(ids), "Hello world");

  request.set_text("");  // tokenizing nothing is fine
  {
    grpc::ClientContext context;
    set_deadline(context);
    ASSERT_TRUE(stub_->Tokenize(&context, request, &response).ok());
    EXPECT_EQ(response.count(), 0);
  }
  request.set_model("other");
  grpc::ClientContext context;
  set_deadline(context);
  EXPECT_EQ(stub_->Tokenize(&context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(GrpcServerTest, GetModelInfo) {
  grpc::ClientContext context;
  set_deadline(context);
  pb::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(&context, pb::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.id(), kModelId);
  EXPECT_EQ(info.architecture(), "DeepseekV3ForCausalLM");
  EXPECT_EQ(info.vocab_size(), tokenizer_->vocab_size());
  EXPECT_EQ(info.max_model_len(), 128);
  ASSERT_EQ(info.eos_token_ids_size(), 1);
  EXPECT_EQ(info.eos_token_ids(0), tokenizer_->eos_id());
  EXPECT_EQ(info.backend(), "cpu");
  EXPECT_EQ(info.kv_cache_blocks(), 32);
  EXPECT_EQ(info.block_size(), 16);
}

// ---- health and reflection, whose generated stubs Debian does not ship: raw bytes ----

std::string dump(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

grpc::ByteBuffer to_buffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// A length-delimited protobuf field (field number < 16, payload < 128 bytes).
std::string bytes_field(int number, const std::string& payload) {
  return std::string{static_cast<char>(number << 3 | 2), static_cast<char>(payload.size())} +
         payload;
}

// Waits for `tag` (5 s at most); true when it came and succeeded.
bool await(grpc::CompletionQueue& cq, void* tag) {
  void* got = nullptr;
  bool ok = false;
  const auto status =
      cq.AsyncNext(&got, &ok, std::chrono::system_clock::now() + std::chrono::seconds(5));
  return status == grpc::CompletionQueue::GOT_EVENT && got == tag && ok;
}

void drain(grpc::CompletionQueue& cq) {
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  for (int i = 0; i < 100 && cq.Next(&tag, &ok); ++i) {
  }
}

// grpc.health.v1.Health/Check for `service`: the ServingStatus (1 SERVING, 2 NOT_SERVING), or
// -1 when the call failed (its status in *call_status).
int health_check(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                 grpc::Status* call_status = nullptr) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::CompletionQueue cq;
  const grpc::ByteBuffer request = to_buffer(service.empty() ? "" : bytes_field(1, service));
  auto call = stub.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  int tag = 1;
  call->Finish(&response, &status, &tag);
  const bool done = await(cq, &tag);
  drain(cq);
  if (call_status) *call_status = status;
  if (!done || !status.ok()) return -1;
  google::protobuf::UnknownFieldSet fields;
  if (!fields.ParseFromString(dump(response))) return -1;
  // HealthCheckResponse: field 1 is the status; absent means 0 (UNKNOWN).
  for (int i = 0; i < fields.field_count(); ++i) {
    if (fields.field(i).number() == 1) return static_cast<int>(fields.field(i).varint());
  }
  return 0;
}

TEST_F(GrpcServerTest, HealthFollowsSetServing) {
  EXPECT_EQ(health_check(channel_, ""), 1);
  EXPECT_EQ(health_check(channel_, "moeserve.v1.Generation"), 1);
  grpc::Status status;
  EXPECT_EQ(health_check(channel_, "no.such.Service", &status), -1);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);

  server_->set_serving(false);
  EXPECT_EQ(health_check(channel_, ""), 2);
  EXPECT_EQ(health_check(channel_, "moeserve.v1.Generation"), 2);
  server_->set_serving(true);
  EXPECT_EQ(health_check(channel_, "moeserve.v1.Generation"), 1);
}

TEST_F(GrpcServerTest, ReflectionListsTheService) {
  grpc::GenericStub stub(channel_);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  ASSERT_NE(call, nullptr);
  int tags[5];
  call->StartCall(&tags[0]);
  ASSERT_TRUE(await(cq, &tags[0]));
  // ServerReflectionRequest{list_services (field 7): ""}
  call->Write(to_buffer(bytes_field(7, "")), &tags[1]);
  ASSERT_TRUE(await(cq, &tags[1]));
  grpc::ByteBuffer response;
  call->Read(&response, &tags[2]);
  ASSERT_TRUE(await(cq, &tags[2]));
  call->WritesDone(&tags[3]);
  ASSERT_TRUE(await(cq, &tags[3]));
  grpc::Status status;
  call->Finish(&status, &tags[4]);
  ASSERT_TRUE(await(cq, &tags[4]));
  drain(cq);
  ASSERT_TRUE(status.ok()) << status.error_message();

  // ServerReflectionResponse.list_services_response (6) → ServiceResponse service (1) → name (1)
  google::protobuf::UnknownFieldSet fields;
  ASSERT_TRUE(fields.ParseFromString(dump(response)));
  std::set<std::string> names;
  for (int i = 0; i < fields.field_count(); ++i) {
    if (fields.field(i).number() != 6) continue;
    google::protobuf::UnknownFieldSet list;
    ASSERT_TRUE(list.ParseFromString(fields.field(i).length_delimited()));
    for (int j = 0; j < list.field_count(); ++j) {
      google::protobuf::UnknownFieldSet service;
      ASSERT_TRUE(service.ParseFromString(list.field(j).length_delimited()));
      for (int k = 0; k < service.field_count(); ++k) {
        if (service.field(k).number() == 1) names.insert(service.field(k).length_delimited());
      }
    }
  }
  EXPECT_TRUE(names.count("moeserve.v1.Generation")) << names.size();
  EXPECT_TRUE(names.count("grpc.health.v1.Health")) << names.size();
}

TEST_F(GrpcServerTest, ApiKeyGuardsTheServiceButNotHealth) {
  GrpcServerOptions options;
  options.api_key = "s3cret";
  start(options);
  const auto model_info = [&](const char* authorization) {
    grpc::ClientContext context;
    set_deadline(context);
    if (authorization) context.AddMetadata("authorization", authorization);
    pb::ModelInfo info;
    return stub_->GetModelInfo(&context, pb::GetModelInfoRequest(), &info).error_code();
  };
  EXPECT_EQ(model_info(nullptr), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(model_info("Bearer wrong"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(model_info("Bearer s3cret2"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(model_info("s3cret"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(model_info("Bearer s3cret"), grpc::StatusCode::OK);

  engine_->set_script(push_all({last(finished(event(0, {1}, "a"), FinishReason::kStop), {})}));
  {
    grpc::ClientContext context;
    set_deadline(context);
    pb::GenerateResponse response;
    EXPECT_EQ(stub_->Generate(&context, text_request("hi"), &response).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext context;
    set_deadline(context);
    auto reader = stub_->GenerateStream(&context, text_request("hi"));
    pb::GenerateStreamResponse message;
    EXPECT_FALSE(reader->Read(&message));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_TRUE(engine_->requests().empty());
  {
    grpc::ClientContext context;
    set_deadline(context);
    context.AddMetadata("authorization", "Bearer s3cret");
    pb::GenerateResponse response;
    EXPECT_TRUE(stub_->Generate(&context, text_request("hi"), &response).ok());
  }
  EXPECT_EQ(health_check(channel_, ""), 1);
}

TEST_F(GrpcServerTest, ShutdownLetsCallsFinishThenCancelsThem) {
  engine_->set_script(push_all({event(0, {1}, "a")}));  // runs until aborted
  grpc::ClientContext context;
  set_deadline(context);
  auto reader = stub_->GenerateStream(&context, text_request("hi"));
  pb::GenerateStreamResponse message;
  ASSERT_TRUE(reader->Read(&message));
  const auto t0 = Clock::now();
  server_->shutdown(Clock::now() + milliseconds(200));
  EXPECT_GE(Clock::now() - t0, milliseconds(150));
  EXPECT_LT(Clock::now() - t0, seconds(5));
  EXPECT_FALSE(reader->Finish().ok());
  const auto abort = engine_->wait_for_abort(seconds(5));
  ASSERT_TRUE(abort.has_value()) << "the engine saw no abort";
  EXPECT_EQ(abort->second.code(), absl::StatusCode::kCancelled);
  server_->shutdown(Clock::now());  // again: nothing happens
}

TEST_F(GrpcServerTest, BusyPortIsAnError) {
  GrpcServerOptions options;
  options.port = server_->port();
  auto second = GrpcServer::start(*engine_, *prompts_, options);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(second.status().message()).find(std::to_string(server_->port())),
            std::string::npos);
}

}  // namespace
}  // namespace moeserve
