#include "server/grpc_server.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "moeserve/v1/generation.grpc.pb.h"
#include "moeserve/v1/generation.pb.h"
#include "server/api_key.h"
#include "server/prompt_builder.h"
#include "tokenizer/tokenizer.h"
#include <grpc/grpc.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/server_context.h>

namespace moeserve {

namespace pb = ::moeserve::v1;

namespace {

constexpr const char* kServiceName = "moeserve.v1.Generation";
// How often a call waiting for tokens looks at its client (cancelled? deadline passed?).
constexpr auto kPollInterval = std::chrono::milliseconds(50);
// A cancellation this close to the call's deadline is the deadline's: the client's own timer
// fires a moment before the server's copy of the deadline.
constexpr auto kDeadlineSlack = std::chrono::milliseconds(200);

// "gen-" and 24 random hex digits, for requests that bring no request_id.
std::string make_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "gen-";
  for (int word = 0; word < 2; ++word) {
    uint64_t bits = rng();
    for (int i = 0; i < 12; ++i, bits >>= 4) id.push_back(kHex[bits & 0xf]);
  }
  return id;
}

pb::FinishReason to_proto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return pb::FINISH_REASON_STOP;
    case FinishReason::kLength: return pb::FINISH_REASON_LENGTH;
    case FinishReason::kAbort: return pb::FINISH_REASON_ABORT;
    case FinishReason::kError: return pb::FINISH_REASON_ERROR;
  }
  return pb::FINISH_REASON_UNSPECIFIED;
}

// Unset optional fields keep SamplingParams' defaults; the ranges are checked by submit().
SamplingParams to_sampling(const pb::SamplingParams& p) {
  SamplingParams s;
  if (p.has_temperature()) s.temperature = p.temperature();
  if (p.has_top_p()) s.top_p = p.top_p();
  if (p.has_top_k()) s.top_k = p.top_k();
  if (p.has_min_p()) s.min_p = p.min_p();
  if (p.has_seed()) s.seed = p.seed();
  if (p.has_presence_penalty()) s.presence_penalty = p.presence_penalty();
  if (p.has_frequency_penalty()) s.frequency_penalty = p.frequency_penalty();
  if (p.has_repetition_penalty()) s.repetition_penalty = p.repetition_penalty();
  for (const auto& [id, bias] : p.logit_bias()) s.logit_bias[id] = bias;
  if (p.has_max_tokens()) s.max_tokens = p.max_tokens();
  if (p.has_min_tokens()) s.min_tokens = p.min_tokens();
  if (p.has_ignore_eos()) s.ignore_eos = p.ignore_eos();
  s.stop.assign(p.stop().begin(), p.stop().end());
  s.stop_token_ids.assign(p.stop_token_ids().begin(), p.stop_token_ids().end());
  if (p.has_logprobs()) s.logprobs = p.logprobs();
  if (p.has_top_logprobs()) s.top_logprobs = p.top_logprobs();
  if (p.has_n()) s.n = p.n();
  return s;
}

std::vector<ChatMessage> to_messages(const pb::ChatInput& chat) {
  std::vector<ChatMessage> messages;
  messages.reserve(chat.messages_size());
  for (const pb::ChatMessage& m : chat.messages()) {
    ChatMessage message{m.role(), m.content(), std::nullopt};
    if (m.has_reasoning_content()) message.reasoning_content = m.reasoning_content();
    messages.push_back(std::move(message));
  }
  return messages;
}

// A token as readable text: its decoded bytes (special tokens kept), U+FFFD for a partial
// UTF-8 character — protobuf strings must be valid UTF-8.
std::string token_text(const Tokenizer& tokenizer, int32_t id) {
  return tokenizer.decode(std::span<const int32_t>(&id, 1));
}

// Appends one event's output to `completion` (a streaming delta, or the whole sequence).
void append_event(const TokenEvent& event, const Tokenizer& tokenizer, pb::Completion* completion) {
  completion->set_index(event.index);
  completion->mutable_text()->append(event.text);
  completion->mutable_reasoning_text()->append(event.reasoning_text);
  for (int32_t id : event.token_ids) completion->add_token_ids(id);
  for (const TokenLogprobs& lp : event.logprobs) {
    pb::TokenLogprob* out = completion->add_logprobs();
    out->set_token_id(lp.token);
    out->set_token(token_text(tokenizer, lp.token));
    out->set_logprob(lp.logprob);
    for (const auto& [id, logprob] : lp.top) {
      pb::TopLogprob* top = out->add_top_logprobs();
      top->set_token_id(id);
      top->set_token(token_text(tokenizer, id));
      top->set_logprob(logprob);
    }
  }
  if (event.finish) {
    completion->set_finish_reason(to_proto(*event.finish));
    if (!event.stop_string.empty()) {
      completion->set_stop_string(event.stop_string);
    } else if (event.stop_token) {
      completion->set_stop_token_id(*event.stop_token);
    }
  }
}

bool has_output(const TokenEvent& event) {
  return !event.token_ids.empty() || !event.text.empty() || !event.reasoning_text.empty() ||
         event.finish.has_value();
}

void fill_usage(const Usage& usage, pb::Usage* out) {
  out->set_prompt_tokens(usage.prompt_tokens);
  out->set_completion_tokens(usage.completion_tokens);
  out->set_cached_tokens(usage.cached_tokens);
}

}  // namespace

grpc::Status to_grpc_status(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode both number google.rpc.Code.
  const int code = static_cast<int>(status.code());
  const auto grpc_code =
      code >= 1 && code <= 16 ? static_cast<grpc::StatusCode>(code) : grpc::StatusCode::UNKNOWN;
  return grpc::Status(grpc_code, std::string(status.message()));
}

// The moeserve.v1.Generation methods. gRPC calls them on its own threads, concurrently.
class GenerationService final : public pb::Generation::Service {
 public:
  GenerationService(Engine& engine, const PromptBuilder& prompts, GrpcServerOptions options)
      : engine_(engine), prompts_(prompts), options_(std::move(options)) {}

  grpc::Status Generate(grpc::ServerContext* context, const pb::GenerateRequest* request,
                        pb::GenerateResponse* response) override {
    if (grpc::Status s = authorize(*context); !s.ok()) return s;
    response->set_id(request->request_id().empty() ? make_request_id() : request->request_id());
    response->set_model(engine_.model_info().id);
    const Tokenizer& tokenizer = prompts_.tokenizer();
    // submit() has checked n by the time events come.
    const int n = request->sampling().has_n() ? request->sampling().n() : 1;
    return run(*context, *request, response->id(), [&](const TokenEvent& event) {
      if (response->completions_size() == 0) {
        for (int i = 0; i < n; ++i) response->add_completions()->set_index(i);
      }
      if (event.index < 0 || event.index >= n) {
        return grpc::Status(grpc::StatusCode::INTERNAL,
                            absl::StrCat("event for sequence ", event.index, " of ", n));
      }
      append_event(event, tokenizer, response->mutable_completions(event.index));
      if (event.usage) fill_usage(*event.usage, response->mutable_usage());
      return grpc::Status::OK;
    });
  }

  grpc::Status GenerateStream(grpc::ServerContext* context, const pb::GenerateRequest* request,
                              grpc::ServerWriter<pb::GenerateStreamResponse>* writer) override {
    if (grpc::Status s = authorize(*context); !s.ok()) return s;
    const std::string id =
        request->request_id().empty() ? make_request_id() : request->request_id();
    const Tokenizer& tokenizer = prompts_.tokenizer();
    return run(*context, *request, id, [&](const TokenEvent& event) {
      pb::GenerateStreamResponse message;
      message.set_id(id);
      if (has_output(event)) {
        append_event(event, tokenizer, message.mutable_delta());
        if (!writer->Write(message)) return kClientGone;
      }
      if (event.usage) {
        message.clear_delta();
        fill_usage(*event.usage, message.mutable_usage());
        if (!writer->Write(message)) return kClientGone;
      }
      return grpc::Status::OK;
    });
  }

  grpc::Status Tokenize(grpc::ServerContext* context, const pb::TokenizeRequest* request,
                        pb::TokenizeResponse* response) override {
    if (grpc::Status s = authorize(*context); !s.ok()) return s;
    if (grpc::Status s = check_model(request->model()); !s.ok()) return s;
    std::vector<int32_t> ids;
    switch (request->input_case()) {
      case pb::TokenizeRequest::kText: {
        EncodeOptions encode;
        encode.add_special_tokens =
            !request->has_add_special_tokens() || request->add_special_tokens();
        ids = prompts_.tokenizer().encode(request->text(), encode);
        break;
      }
      case pb::TokenizeRequest::kChat: {
        StatusOr<Prompt> prompt = from_chat(request->chat());
        if (!prompt.ok()) return to_grpc_status(prompt.status());
        ids = std::move(prompt->ids);
        break;
      }
      case pb::TokenizeRequest::INPUT_NOT_SET:
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "input is required: set text or chat");
    }
    for (int32_t id : ids) response->add_token_ids(id);
    response->set_count(static_cast<int32_t>(ids.size()));
    response->set_max_model_len(engine_.model_info().max_model_len);
    return grpc::Status::OK;
  }

  grpc::Status GetModelInfo(grpc::ServerContext* context, const pb::GetModelInfoRequest*,
                            pb::ModelInfo* response) override {
    if (grpc::Status s = authorize(*context); !s.ok()) return s;
    const ModelInfo& info = engine_.model_info();
    response->set_id(info.id);
    response->set_architecture(info.architecture);
    response->set_vocab_size(info.vocab_size);
    response->set_max_model_len(info.max_model_len);
    for (int32_t id : info.eos_ids) response->add_eos_token_ids(id);
    response->set_backend(info.backend);
    response->set_kv_cache_blocks(info.n_kv_blocks);
    response->set_block_size(info.block_size);
    return grpc::Status::OK;
  }

 private:
  // Takes each event of a call; an error ends the call (and aborts the engine request).
  using EventSink = std::function<grpc::Status(const TokenEvent&)>;
  inline static const grpc::Status kClientGone{grpc::StatusCode::CANCELLED, "the client is gone"};

  grpc::Status authorize(const grpc::ServerContext& context) const {
    if (options_.api_key.empty()) return grpc::Status::OK;
    const auto& metadata = context.client_metadata();
    const auto it = metadata.find("authorization");
    if (it == metadata.end()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "missing API key: send metadata \"authorization: Bearer <key>\"");
    }
    const std::string_view given(it->second.data(), it->second.size());
    if (!bearer_matches(given, options_.api_key)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid API key");
    }
    return grpc::Status::OK;
  }

  grpc::Status check_model(const std::string& model) const {
    const std::string& served = engine_.model_info().id;
    if (model.empty() || model == served) return grpc::Status::OK;
    return grpc::Status(
        grpc::StatusCode::NOT_FOUND,
        absl::StrCat("model \"", model, "\" not found; this server serves \"", served, "\""));
  }

  StatusOr<Prompt> from_chat(const pb::ChatInput& chat) const {
    const bool add_generation_prompt =
        !chat.has_add_generation_prompt() || chat.add_generation_prompt();
    return prompts_.from_messages(to_messages(chat), add_generation_prompt);
  }

  // The client's deadline on the steady clock, capped by request_timeout_s; nullopt: none.
  std::optional<Clock::time_point> call_deadline(const grpc::ServerContext& context) const {
    std::optional<Clock::time_point> deadline;
    const auto client = context.deadline();  // system_clock::time_point::max() when none
    if (client != std::chrono::system_clock::time_point::max()) {
      const auto left = client - std::chrono::system_clock::now();
      if (left < std::chrono::hours(24 * 365)) {
        deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(left);
      }
    }
    if (options_.request_timeout_s > 0) {
      const auto cap =
          Clock::now() + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(options_.request_timeout_s));
      deadline = deadline ? std::min(*deadline, cap) : cap;
    }
    return deadline;
  }

  StatusOr<GenerateRequest> build_request(const pb::GenerateRequest& in, std::string id,
                                          std::optional<Clock::time_point> deadline) const {
    StatusOr<Prompt> prompt;
    switch (in.input_case()) {
      case pb::GenerateRequest::kText:
        prompt = prompts_.from_text(in.text(), /*add_special_tokens=*/true);
        break;
      case pb::GenerateRequest::kTokenIds: {
        const auto& ids = in.token_ids().ids();
        prompt = prompts_.from_ids(std::span<const int64_t>(ids.data(), ids.size()));
        break;
      }
      case pb::GenerateRequest::kChat: prompt = from_chat(in.chat()); break;
      case pb::GenerateRequest::INPUT_NOT_SET:
        return absl::InvalidArgumentError("input is required: set text, token_ids or chat");
    }
    if (!prompt.ok()) return prompt.status();
    GenerateRequest request;
    request.external_id = std::move(id);
    request.prompt = std::move(prompt->ids);
    request.reasoning = prompt->reasoning;
    request.sampling = to_sampling(in.sampling());
    if (in.has_priority()) request.priority = in.priority();
    request.cache_salt = in.cache_salt();
    const pb::SamplingParams& sampling = in.sampling();
    if (sampling.has_skip_special_tokens()) {
      request.skip_special_tokens = sampling.skip_special_tokens();
    }
    if (sampling.has_include_stop_str_in_output()) {
      request.include_stop_str_in_output = sampling.include_stop_str_in_output();
    }
    request.deadline = deadline;
    return request;
  }

  // Submits the request and feeds its events to `sink` up to the final one. The call fails when
  // the request does (an error or abort event, mapped), when the client cancels or its deadline
  // passes (the engine request is aborted then), or when the sink fails (a failed write).
  grpc::Status run(grpc::ServerContext& context, const pb::GenerateRequest& in,
                   const std::string& id, const EventSink& sink) {
    if (grpc::Status s = check_model(in.model()); !s.ok()) return s;
    const std::optional<Clock::time_point> deadline = call_deadline(context);
    StatusOr<GenerateRequest> request = build_request(in, id, deadline);
    if (!request.ok()) return to_grpc_status(request.status());
    StatusOr<std::shared_ptr<TokenStream>> submitted = engine_.submit(*std::move(request));
    if (!submitted.ok()) return to_grpc_status(submitted.status());
    TokenStream& stream = **submitted;

    const auto give_up = [&](Status why) {
      engine_.abort(stream.id(), why);
      return to_grpc_status(why);
    };
    const auto expired = [&](std::chrono::milliseconds slack) {
      return deadline && Clock::now() + slack >= *deadline;
    };
    while (true) {
      if (context.IsCancelled()) {
        if (expired(kDeadlineSlack)) {
          return give_up(absl::DeadlineExceededError("deadline exceeded"));
        }
        return give_up(absl::CancelledError("the client cancelled the call"));
      }
      Clock::time_point wait_until = Clock::now() + kPollInterval;
      if (deadline) wait_until = std::min(wait_until, *deadline);
      std::optional<TokenEvent> event = stream.next(wait_until);
      if (!event) {
        // The engine ends a request at its deadline itself; this covers one that does not.
        if (expired(std::chrono::milliseconds(0))) {
          return give_up(absl::DeadlineExceededError("deadline exceeded"));
        }
        continue;
      }
      if (event->finish == FinishReason::kError || event->finish == FinishReason::kAbort) {
        Status why = event->error;
        if (why.ok()) {
          why = *event->finish == FinishReason::kError
                    ? absl::InternalError("the request failed")
                    : absl::AbortedError("the request was aborted");
        }
        if (why.code() == absl::StatusCode::kInternal) {
          MS_LOG_ERROR("gRPC request {}: {}", id, why.ToString());
        }
        // Ends the other sequences of an n > 1 request; ignored when the request is over.
        if (!event->usage) engine_.abort(stream.id(), why);
        return to_grpc_status(why);
      }
      if (grpc::Status s = sink(*event); !s.ok()) {
        if (!event->usage) {
          engine_.abort(stream.id(),
                        Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message()));
        }
        return s;
      }
      if (event->usage) return grpc::Status::OK;
    }
  }

  Engine& engine_;
  const PromptBuilder& prompts_;
  const GrpcServerOptions options_;
};

GrpcServer::GrpcServer() = default;

GrpcServer::~GrpcServer() {
  if (!shut_down_) shutdown(Clock::now());
}

StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::start(Engine& engine,
                                                        const PromptBuilder& prompts,
                                                        const GrpcServerOptions& options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpc port must be in [0, 65535], got ", options.port));
  }
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpc max_message_bytes must be positive, got ", options.max_message_bytes));
  }
  if (!(options.request_timeout_s >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpc request_timeout_s must be at least 0, got ", options.request_timeout_s));
  }
  // Both are process-wide switches read when a server is built.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  std::unique_ptr<GrpcServer> server(new GrpcServer());
  server->service_ = std::make_unique<GenerationService>(engine, prompts, options);
  const bool ipv6 = options.host.find(':') != std::string::npos;
  const std::string address = ipv6 ? absl::StrCat("[", options.host, "]:", options.port)
                                   : absl::StrCat(options.host, ":", options.port);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &server->port_);
  // gRPC sets SO_REUSEPORT by default, which would let a second server share a busy port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (!server->server_ || server->port_ == 0) {
    server->shut_down_ = true;
    if (server->server_) server->server_->Shutdown();
    return absl::UnavailableError(absl::StrCat("gRPC server cannot listen on ", address));
  }
  server->set_serving(true);
  MS_LOG_INFO("gRPC server listening on {}:{}", options.host, server->port_);
  return server;
}

void GrpcServer::set_serving(bool serving) {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus("", serving);
  health->SetServingStatus(kServiceName, serving);
}

void GrpcServer::shutdown(Clock::time_point deadline) {
  if (shut_down_) return;
  shut_down_ = true;
  set_serving(false);
  const auto left = deadline - Clock::now();
  server_->Shutdown(std::chrono::system_clock::now() +
                    std::chrono::duration_cast<std::chrono::system_clock::duration>(
                        std::max(left, Clock::duration::zero())));
  server_->Wait();
}

}  // namespace moeserve
