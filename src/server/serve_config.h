// Settings of `moeserve serve`: the engine's (EngineConfig) and the front ends', read from a JSON
// config file and from flags (flags win), validated and logged once at start-up. The reference of
// every setting is docs/configuration.md.
#pragma once

#include <cstddef>
#include <string>

#include "moeserve/engine_config.h"
#include "moeserve/status.h"

namespace moeserve {

struct ServeConfig {
  EngineConfig engine;
  std::string host = "127.0.0.1";  // address the HTTP and gRPC servers listen on
  int port = 8000;                 // HTTP port; 0 = any free port
  int grpc_port = 50051;           // gRPC port; -1 = no gRPC server, 0 = any free port
  int http_threads = 2;            // I/O threads of the HTTP server
  // Clients must send "Authorization: Bearer <api_key>" when it is set. Comes from --api-key,
  // else from the file `api_key_file` (flag or config), else from $MOESERVE_API_KEY; config files
  // never hold the key itself.
  std::string api_key;
  std::string api_key_file;
  size_t max_body_bytes = size_t{8} << 20;     // larger request bodies get 413
  size_t max_header_bytes = size_t{16} << 10;  // larger request headers get 431
  double request_timeout_s = 600;              // per request, queueing included; 0 = none
  double shutdown_timeout_s = 30;              // on SIGTERM: wait this long for running requests
  std::string cors_allow_origin;               // Access-Control-Allow-Origin; "" = no CORS
  std::string log_level = "info";              // trace, debug, info, warn, error, critical, off
  bool log_requests = true;                    // one log line per finished request
};

// Defaults overlaid with the JSON object in `path`: flat snake_case keys (`max_num_seqs`, …),
// `//` and `/* */` comments allowed. Errors name the file and the key: unknown keys (with the
// list of known ones), wrong JSON types, duplicate keys, syntax errors (FILE:LINE:COLUMN). Does
// not validate values or read `api_key_file`; parse_serve_args() does both.
StatusOr<ServeConfig> load_serve_config(const std::string& path);

// `moeserve serve [--config FILE] [--flag VALUE]...`, argv[0] being "serve". The config file
// applies first, then every flag overrides it whatever the order; the API key is then read
// from its file or the environment, and every setting is validated except that
// engine.model_dir may be left empty: the caller fills its default and then runs
// validate_serve_config(). `--help` / `-h` returns a status for which is_help_request() is
// true: print serve_usage() and exit 0. Bad flags, values and files are InvalidArgument (or
// NotFound for missing files) naming the flag, key or file.
StatusOr<ServeConfig> parse_serve_args(int argc, char** argv);
bool is_help_request(const Status& status);

// Usage text of `moeserve serve`: every flag with its default.
const char* serve_usage();

// Every rule of every setting (EngineConfig::validate() included); messages `key = value: rule`.
Status validate_serve_config(const ServeConfig& config);

// One `key: value` line per setting for the start-up log; the API key shows as (set) or (none).
std::string describe(const ServeConfig& config);

}  // namespace moeserve
