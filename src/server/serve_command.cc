// `moeserve serve`: the daemon. Start-up order: HTTP first (so /health answers 503 while the
// model loads), then the engine, then gRPC; then /health turns 200. SIGTERM or SIGINT drains:
// health goes 503/NOT_SERVING, new requests get 503/UNAVAILABLE, running requests finish within
// --shutdown-timeout-s, and the process exits 0. A second signal during the drain stops at once.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "common/logging.h"
#include "server/commands.h"
#include "server/grpc_server.h"
#include "server/http_server.h"
#include "server/openai_routes.h"
#include "server/prompt_builder.h"
#include "server/serve_config.h"

namespace moeserve {
namespace {

// The model served when --model is not given: the bundled tiny model, looked up next to the
// binary's install prefix and the source tree it was built from.
std::string default_model_dir() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::vector<std::filesystem::path> candidates;
  if (!ec) {
    candidates.push_back(exe.parent_path().parent_path() / "share/moeserve/models/tiny");
  }
  candidates.push_back(std::filesystem::path(MOESERVE_SOURCE_DIR) / "models/tiny");
  for (const auto& c : candidates) {
    if (std::filesystem::exists(c / "config.json", ec)) return c.string();
  }
  return "";
}

// SIGTERM/SIGINT arrive through a self-pipe: the handler (on whichever thread the kernel
// picks, including threads that libraries started before main) only writes the signal
// number, and the main thread reads it. A handler, unlike a blocked signal that one thread
// waits for, cannot be lost or take the default action on a thread that never blocked it.
int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  const int saved_errno = errno;
  const unsigned char byte = static_cast<unsigned char>(sig);
  [[maybe_unused]] const ssize_t n = write(g_signal_pipe[1], &byte, 1);
  errno = saved_errno;
}

Status install_signal_handlers() {
  if (pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  return absl::OkStatus();
}

// Waits up to `timeout` for a signal; returns it, or 0.
int wait_signal(std::chrono::milliseconds timeout) {
  pollfd fd{.fd = g_signal_pipe[0], .events = POLLIN, .revents = 0};
  if (poll(&fd, 1, static_cast<int>(timeout.count())) <= 0) return 0;
  unsigned char byte = 0;
  return read(g_signal_pipe[0], &byte, 1) == 1 ? byte : 0;
}

// Answers while the engine loads: /health 503 (loading), everything else 503 too.
void answer_loading(const HttpRequest& request, HttpResponder& responder) {
  responder.send(503, "application/json",
                 R"({"error":{"message":"the model is loading","type":"server_error",)"
                 R"("param":null,"code":"service_unavailable"}})",
                 {{"Retry-After", "1"}});
}

}  // namespace

int run_serve(int argc, char** argv) {
  auto parsed = parse_serve_args(argc, argv);
  if (!parsed.ok()) {
    if (is_help_request(parsed.status())) {
      std::fputs(serve_usage(), stdout);
      return 0;
    }
    std::fprintf(stderr, "moeserve serve: %s\n(run 'moeserve serve --help' for the flags)\n",
                 std::string(parsed.status().message()).c_str());
    return 2;
  }
  ServeConfig config = std::move(*parsed);
  if (config.engine.model_dir.empty()) {
    config.engine.model_dir = default_model_dir();
    if (config.engine.model_dir.empty()) {
      std::fprintf(stderr,
                   "moeserve serve: no --model given and the bundled model (models/tiny) was not "
                   "found; pass --model DIR\n");
      return 2;
    }
  }
  if (const Status valid = validate_serve_config(config); !valid.ok()) {
    std::fprintf(stderr, "moeserve serve: %s\n", std::string(valid.message()).c_str());
    return 2;
  }
  init_logging(config.log_level);
  // A client that vanishes mid-write must not kill the process.
  signal(SIGPIPE, SIG_IGN);
  MS_LOG_INFO("moeserve serve: settings\n{}", describe(config));

  std::atomic<OpenAiRoutes*> routes_ptr{nullptr};
  HttpServerOptions http;
  http.host = config.host;
  http.port = config.port;
  http.io_threads = config.http_threads;
  http.max_body_bytes = config.max_body_bytes;
  http.max_header_bytes = config.max_header_bytes;
  http.api_key = config.api_key;
  http.cors_allow_origin = config.cors_allow_origin;
  auto http_server =
      HttpServer::start(http, [&routes_ptr](HttpRequest request, std::shared_ptr<HttpResponder> r) {
        OpenAiRoutes* routes = routes_ptr.load();
        if (routes == nullptr) {
          answer_loading(request, *r);
          return;
        }
        routes->handle(std::move(request), std::move(r));
      });
  if (!http_server.ok()) {
    MS_LOG_ERROR("moeserve serve: HTTP server: {}", http_server.status().ToString());
    return 1;
  }

  auto engine = Engine::create(config.engine);
  if (!engine.ok()) {
    MS_LOG_ERROR("moeserve serve: {}", engine.status().ToString());
    return 1;
  }
  const std::string tokenizer_dir =
      config.engine.tokenizer_dir.empty() ? config.engine.model_dir : config.engine.tokenizer_dir;
  if (!(*engine)->model_info().has_tokenizer) {
    MS_LOG_ERROR("moeserve serve: {}/tokenizer.json not found; pass --tokenizer DIR",
                 tokenizer_dir);
    return 1;
  }
  auto prompts = PromptBuilder::create((*engine)->tokenizer(), tokenizer_dir);
  if (!prompts.ok()) {
    MS_LOG_ERROR("moeserve serve: {}", prompts.status().ToString());
    return 1;
  }
  if (!(*prompts)->has_chat_template()) {
    MS_LOG_WARN("{}/tokenizer_config.json has no chat_template: /v1/chat/completions is off",
                tokenizer_dir);
  }
  auto routes = std::make_unique<OpenAiRoutes>(
      **engine, **prompts, OpenAiRoutesOptions{.request_timeout_s = config.request_timeout_s});
  routes->set_ready(true);

  std::unique_ptr<GrpcServer> grpc_server;
  if (config.grpc_port >= 0) {
    auto started = GrpcServer::start(**engine, **prompts,
                                     {.host = config.host,
                                      .port = config.grpc_port,
                                      .api_key = config.api_key,
                                      .max_message_bytes = static_cast<int>(
                                          std::min<size_t>(config.max_body_bytes, size_t{1} << 30)),
                                      .request_timeout_s = config.request_timeout_s});
    if (!started.ok()) {
      MS_LOG_ERROR("moeserve serve: gRPC server: {}", started.status().ToString());
      return 1;
    }
    grpc_server = std::move(*started);
  }
  // Until here a signal takes its default action: nothing is running that needs draining.
  if (const Status installed = install_signal_handlers(); !installed.ok()) {
    MS_LOG_ERROR("moeserve serve: {}", installed.ToString());
    return 1;
  }
  routes_ptr.store(routes.get());
  const ModelInfo& info = (*engine)->model_info();
  MS_LOG_INFO("moeserve serve: model '{}' on {}; listening on http://{}:{} (OpenAI API: /v1)",
              info.id, info.backend, config.host, (*http_server)->port());
  if (grpc_server) {
    MS_LOG_INFO("moeserve serve: gRPC (moeserve.v1.Generation) on {}:{}", config.host,
                grpc_server->port());
  }

  int sig = 0;
  while (sig == 0) sig = wait_signal(std::chrono::milliseconds(1000));
  MS_LOG_INFO("moeserve serve: {} received: draining (up to {} s)", strsignal(sig),
              config.shutdown_timeout_s);
  routes->set_draining();
  if (grpc_server) grpc_server->set_serving(false);
  (*engine)->stop_accepting();
  const auto deadline = Clock::now() + std::chrono::milliseconds(
                                           static_cast<int64_t>(config.shutdown_timeout_s * 1e3));
  bool idle = (*engine)->wait_idle(Clock::now());
  while (!idle && Clock::now() < deadline) {
    idle = (*engine)->wait_idle(std::min(deadline, Clock::now() + std::chrono::milliseconds(100)));
    if (!idle && wait_signal(std::chrono::milliseconds(0)) != 0) {
      MS_LOG_WARN("moeserve serve: second signal: stopping now");
      break;
    }
  }
  if (!idle) MS_LOG_WARN("moeserve serve: requests still running at the deadline are aborted");
  if (grpc_server) grpc_server->shutdown(Clock::now() + std::chrono::seconds(1));
  (*http_server)->stop_accepting();
  // The last events reach their connections through the I/O threads; give them a moment.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  routes_ptr.store(nullptr);
  http_server->reset();  // closes connections, joins the I/O threads
  grpc_server.reset();
  routes.reset();
  engine->reset();  // aborts whatever is left
  MS_LOG_INFO("moeserve serve: stopped");
  return 0;
}

}  // namespace moeserve
