// The gRPC front end: moeserve.v1.Generation (proto/moeserve/v1/generation.proto) over the
// synchronous gRPC C++ server, plus the standard grpc.health.v1.Health service and server
// reflection. Each call runs on one of gRPC's threads: it builds a GenerateRequest, submits it to
// the engine and relays the TokenStream's events until the final one, aborting the request when
// the client cancels or its deadline passes. See docs/grpc.md.
#pragma once

#include <memory>
#include <string>

#include "moeserve/engine.h"
#include "moeserve/status.h"
#include <grpcpp/support/status.h>

namespace grpc {
class Server;
}  // namespace grpc

namespace moeserve {

class PromptBuilder;

struct GrpcServerOptions {
  std::string host = "127.0.0.1";
  int port = 50051;                 // 0: pick a free port (see GrpcServer::port())
  std::string api_key;              // "" = no auth; else metadata "authorization: Bearer <key>"
  int max_message_bytes = 8 << 20;  // largest request or response message
  // > 0: no request runs longer than this, whatever the client's deadline.
  double request_timeout_s = 0;
};

// The gRPC status for an engine or prompt error: the codes are the same numbers
// (google.rpc.Code), the message is kept. OK stays OK.
grpc::Status to_grpc_status(const Status& status);

class GenerationService;

class GrpcServer {
 public:
  // Binds host:port and starts serving, with health SERVING. The engine and the prompt builder
  // must outlive the server. Errors: bad options (InvalidArgument), or the address cannot be
  // bound (Unavailable, naming it).
  static StatusOr<std::unique_ptr<GrpcServer>> start(Engine& engine, const PromptBuilder& prompts,
                                                     const GrpcServerOptions& options);
  ~GrpcServer();  // shutdown(now) unless done already

  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  int port() const { return port_; }  // the bound port
  // grpc.health.v1 status of "" and "moeserve.v1.Generation": SERVING or NOT_SERVING.
  void set_serving(bool serving);
  // Stops accepting calls; calls in flight go on until `deadline`, then are cancelled (their
  // engine requests aborted). Returns once every call has ended. Idempotent.
  void shutdown(Clock::time_point deadline);

 private:
  GrpcServer();

  std::unique_ptr<GenerationService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace moeserve
