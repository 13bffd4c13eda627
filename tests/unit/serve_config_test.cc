// ServeConfig: JSON config files and flags (flags win), the API key's sources, every error path
// naming its file, key or flag, the shipped configs/*.json, and docs/configuration.md against
// serve_usage().
#include "server/serve_config.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/model_config.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

class ServeConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("serve_config_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    // The key in the environment of whoever runs the tests must not leak in.
    if (const char* env = std::getenv("MOESERVE_API_KEY")) saved_env_ = env;
    unsetenv("MOESERVE_API_KEY");
  }
  void TearDown() override {
    fs::remove_all(dir_);
    if (saved_env_) {
      setenv("MOESERVE_API_KEY", saved_env_->c_str(), 1);
    } else {
      unsetenv("MOESERVE_API_KEY");
    }
  }

  std::string write(const std::string& name, const std::string& text) {
    const fs::path path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }

  // parse_serve_args over `moeserve serve ARGS...`.
  static StatusOr<ServeConfig> parse(std::vector<std::string> args) {
    args.insert(args.begin(), "serve");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    return parse_serve_args(static_cast<int>(args.size()), argv.data());
  }

  // The message of the error `parse(args)` must return.
  static std::string parse_error(std::vector<std::string> args) {
    const auto c = parse(args);
    EXPECT_FALSE(c.ok()) << "no error for " << absl::StrJoin(args, " ");
    if (c.ok()) return "";
    EXPECT_FALSE(is_help_request(c.status()));
    return std::string(c.status().message());
  }

  std::string load_error(const std::string& text) {
    const std::string path = write("bad.json", text);
    const auto c = load_serve_config(path);
    EXPECT_FALSE(c.ok()) << text;
    if (c.ok()) return "";
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(path));
    return std::string(c.status().message());
  }

  fs::path dir_;
  std::optional<std::string> saved_env_;
};

TEST_F(ServeConfigTest, DefaultsWithoutArguments) {
  const auto c = parse({});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->engine.model_dir, "");  // the caller picks the default model
  EXPECT_EQ(c->host, "127.0.0.1");
  EXPECT_EQ(c->port, 8000);
  EXPECT_EQ(c->grpc_port, 50051);
  EXPECT_EQ(c->http_threads, 2);
  EXPECT_EQ(c->max_body_bytes, 8u << 20);
  EXPECT_EQ(c->max_header_bytes, 16u << 10);
  EXPECT_EQ(c->request_timeout_s, 600);
  EXPECT_EQ(c->shutdown_timeout_s, 30);
  EXPECT_EQ(c->api_key, "");
  EXPECT_EQ(c->log_level, "info");
  EXPECT_TRUE(c->log_requests);
  EXPECT_EQ(c->engine.max_num_seqs, EngineConfig().max_num_seqs);
  // Without a model the full validation fails; with one it passes.
  EXPECT_EQ(validate_serve_config(*c).message(), "model_dir = \"\": must be set");
  ServeConfig filled = *c;
  filled.engine.model_dir = "tests/data/tiny/v3_tiny";
  EXPECT_TRUE(validate_serve_config(filled).ok()) << validate_serve_config(filled);
}

TEST_F(ServeConfigTest, FlagsSetEveryKindOfValue) {
  const auto c = parse({"--model",
                        "m",
                        "--tokenizer",
                        "t",
                        "--served-model-name",
                        "tiny",
                        "--backend",
                        "cpu",
                        "--threads=3",
                        "--block-size",
                        "32",
                        "--kv-cache-blocks",
                        "100",
                        "--kv-cache-memory-mb",
                        "5000000000",
                        "--max-num-batched-tokens",
                        "4096",
                        "--max-num-seqs",
                        "32",
                        "--max-model-len",
                        "1000",
                        "--max-n",
                        "8",
                        "--max-waiting-requests",
                        "9",
                        "--no-enable-chunked-prefill",
                        "--no-enable-prefix-caching",
                        "--scheduling-policy",
                        "priority",
                        "--log-steps",
                        "--host",
                        "0.0.0.0",
                        "--port",
                        "0",
                        "--grpc-port",
                        "-1",
                        "--http-threads",
                        "4",
                        "--max-body-bytes",
                        "1048576",
                        "--max-header-bytes=2048",
                        "--request-timeout-s",
                        "2.5",
                        "--shutdown-timeout-s",
                        "0",
                        "--cors-allow-origin",
                        "*",
                        "--log-level",
                        "debug",
                        "--no-log-requests"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->engine.model_dir, "m");
  EXPECT_EQ(c->engine.tokenizer_dir, "t");
  EXPECT_EQ(c->engine.served_model_name, "tiny");
  EXPECT_EQ(c->engine.backend, "cpu");
  EXPECT_EQ(c->engine.threads, 3);
  EXPECT_EQ(c->engine.block_size, 32);
  EXPECT_EQ(c->engine.kv_cache_blocks, 100);
  EXPECT_EQ(c->engine.kv_cache_memory_mb, 5000000000);
  EXPECT_EQ(c->engine.max_num_batched_tokens, 4096);
  EXPECT_EQ(c->engine.max_num_seqs, 32);
  EXPECT_EQ(c->engine.max_model_len, 1000);
  EXPECT_EQ(c->engine.max_n, 8);
  EXPECT_EQ(c->engine.max_waiting_requests, 9);
  EXPECT_FALSE(c->engine.enable_chunked_prefill);
  EXPECT_FALSE(c->engine.enable_prefix_caching);
  EXPECT_EQ(c->engine.scheduling_policy, "priority");
  EXPECT_TRUE(c->engine.log_steps);
  EXPECT_EQ(c->host, "0.0.0.0");
  EXPECT_EQ(c->port, 0);
  EXPECT_EQ(c->grpc_port, -1);
  EXPECT_EQ(c->http_threads, 4);
  EXPECT_EQ(c->max_body_bytes, 1048576u);
  EXPECT_EQ(c->max_header_bytes, 2048u);
  EXPECT_EQ(c->request_timeout_s, 2.5);
  EXPECT_EQ(c->shutdown_timeout_s, 0);
  EXPECT_EQ(c->cors_allow_origin, "*");
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_FALSE(c->log_requests);
}

TEST_F(ServeConfigTest, BooleanFlagForms) {
  auto c = parse({"--enable-prefix-caching=false", "--log-steps=true", "--log-requests=0"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->engine.enable_prefix_caching);
  EXPECT_TRUE(c->engine.log_steps);
  EXPECT_FALSE(c->log_requests);
  // The last of several wins.
  c = parse({"--no-log-requests", "--log-requests"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->log_requests);
}

TEST_F(ServeConfigTest, FileFirstThenFlagsWhateverTheOrder) {
  const std::string path = write("c.json", R"({"port": 9000, "max_num_seqs": 8, "host": "::1",
                                              "enable_prefix_caching": false})");
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"--max-num-seqs", "4", "--config", path},
                                             {"--config", path, "--max-num-seqs", "4"},
                                             {"--config=" + path, "--max-num-seqs=4"}}) {
    const auto c = parse(args);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->engine.max_num_seqs, 4);  // flag over file
    EXPECT_EQ(c->port, 9000);              // file over default
    EXPECT_EQ(c->host, "::1");
    EXPECT_FALSE(c->engine.enable_prefix_caching);
    EXPECT_EQ(c->grpc_port, 50051);  // default
  }
  const auto c = parse({"--enable-prefix-caching", "--config", path});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->engine.enable_prefix_caching);
}

TEST_F(ServeConfigTest, CommentsAreAllowed) {
  const std::string path = write("c.json",
                                 "// leading comment\n"
                                 "{\n"
                                 "  /* block\n"
                                 "     comment */\n"
                                 "  \"kv_cache_blocks\": 256,  // 256 × 16 × 480 B\n"
                                 "  \"request_timeout_s\": 1.5\n"
                                 "}\n");
  const auto c = load_serve_config(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->engine.kv_cache_blocks, 256);
  EXPECT_EQ(c->request_timeout_s, 1.5);
  EXPECT_EQ(c->port, 8000);
}

TEST_F(ServeConfigTest, FileErrorsNameFileAndKey) {
  std::string e = load_error(R"({"max_seqs": 4})");
  EXPECT_THAT(e, AllOf(HasSubstr("unknown key \"max_seqs\""),
                       HasSubstr("known keys: model, tokenizer,"), HasSubstr("max_num_seqs")));

  e = load_error(R"({"max_num_seqs": "32"})");
  EXPECT_THAT(e, AllOf(HasSubstr("\"max_num_seqs\": expected an integer, got string \"32\"")));
  e = load_error(R"({"max_num_seqs": 3.5})");
  EXPECT_THAT(e, HasSubstr("\"max_num_seqs\": expected an integer, got number 3.5"));
  e = load_error(R"({"max_num_seqs": 3000000000})");
  EXPECT_THAT(e, HasSubstr("\"max_num_seqs\": expected an integer in range"));
  e = load_error(R"({"max_num_seqs": -3000000000})");
  EXPECT_THAT(e, HasSubstr("\"max_num_seqs\": expected an integer in range"));
  e = load_error(R"({"max_body_bytes": -1})");
  EXPECT_THAT(e, HasSubstr("\"max_body_bytes\": expected a non-negative integer, got number -1"));
  e = load_error(R"({"enable_prefix_caching": 1})");
  EXPECT_THAT(e, HasSubstr("\"enable_prefix_caching\": expected true or false, got number 1"));
  e = load_error(R"({"host": null})");
  EXPECT_THAT(e, HasSubstr("\"host\": expected a string, got null"));
  e = load_error(R"({"request_timeout_s": "10"})");
  EXPECT_THAT(e, HasSubstr("\"request_timeout_s\": expected a number, got string"));

  e = load_error(R"({"port": 1, "port": 2})");
  EXPECT_THAT(e, HasSubstr("\"port\" is set twice"));
  e = load_error("[1, 2]");
  EXPECT_THAT(e, HasSubstr("expected a JSON object of settings, got array"));
  e = load_error(R"({"api_key": "secret-in-file"})");
  EXPECT_THAT(e, AllOf(HasSubstr("\"api_key\" is not read from config files"),
                       HasSubstr("api_key_file"), Not(HasSubstr("secret-in-file"))));
}

TEST_F(ServeConfigTest, SyntaxErrorsNameLineAndColumn) {
  // Line 3 misses the colon: the error points at the 1 in column 10.
  std::string e = load_error("{\n  \"port\": 8000,\n  \"host\" 1\n}\n");
  EXPECT_THAT(e, HasSubstr("bad.json:3:10: invalid JSON: syntax error"));
  EXPECT_THAT(e, Not(HasSubstr("[json.exception")));
  EXPECT_THAT(e, Not(HasSubstr("parse error at")));  // nlohmann's own position is dropped
  e = load_error("{\"port\": 8000,}");               // trailing comma
  EXPECT_THAT(e, HasSubstr("bad.json:1:"));
  e = load_error("");
  EXPECT_THAT(e, HasSubstr("invalid JSON"));
}

TEST_F(ServeConfigTest, MissingConfigFileIsNamed) {
  const std::string missing = (dir_ / "nope.json").string();
  const auto c = load_serve_config(missing);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(missing));
  const auto p = parse({"--config", missing});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()), HasSubstr(missing));
}

TEST_F(ServeConfigTest, FlagErrorsNameTheFlag) {
  EXPECT_EQ(parse_error({"--max-seqs", "4"}), "unknown option '--max-seqs'");
  EXPECT_EQ(parse_error({"--no-port"}), "unknown option '--no-port'");  // not a boolean
  EXPECT_EQ(parse_error({"--model"}), "--model needs a value");
  EXPECT_EQ(parse_error({"--model", "--port", "1"}), "--model needs a value");
  EXPECT_EQ(parse_error({"--port", "80x"}), "--port: '80x' is not an integer in range");
  EXPECT_EQ(parse_error({"--port", "99999999999"}),
            "--port: '99999999999' is not an integer in range");
  EXPECT_EQ(parse_error({"--max-body-bytes", "-1"}),
            "--max-body-bytes: '-1' is not a non-negative integer in range");
  EXPECT_EQ(parse_error({"--request-timeout-s", "soon"}),
            "--request-timeout-s: 'soon' is not a finite number");
  EXPECT_EQ(parse_error({"--request-timeout-s", "inf"}),
            "--request-timeout-s: 'inf' is not a finite number");
  EXPECT_EQ(parse_error({"--log-steps=yes"}), "--log-steps: 'yes' is not true or false");
  EXPECT_EQ(parse_error({"models/tiny"}),
            "unexpected argument 'models/tiny' (options are --name VALUE)");
  EXPECT_EQ(parse_error({"-p", "80"}), "unexpected argument '-p' (options are --name VALUE)");
  EXPECT_EQ(parse_error({"--config", "a", "--config", "b"}), "--config given twice");
  EXPECT_EQ(parse_error({"--api-key", ""}), "--api-key: the key is empty");
  EXPECT_EQ(parse_error({"--api-key", "k", "--api-key-file", "f"}),
            "give only one of --api-key and --api-key-file");
}

TEST_F(ServeConfigTest, ValuesAreValidatedAfterMerging) {
  EXPECT_EQ(parse_error({"--port", "70000"}), "port = 70000: must be in [0, 65535]");
  EXPECT_EQ(parse_error({"--port", "-1"}), "port = -1: must be in [0, 65535]");
  EXPECT_EQ(parse_error({"--grpc-port", "-2"}),
            "grpc_port = -2: must be in [-1, 65535] (-1 = off)");
  EXPECT_EQ(parse_error({"--grpc-port", "8000"}), "grpc_port = 8000: must differ from port");
  EXPECT_EQ(parse_error({"--http-threads", "0"}), "http_threads = 0: must be in [1, 256]");
  EXPECT_EQ(parse_error({"--host", ""}), "host = \"\": must be set (e.g. 127.0.0.1 or 0.0.0.0)");
  EXPECT_EQ(parse_error({"--max-body-bytes", "10"}),
            "max_body_bytes = 10: must be in [1024, 1073741824] (1 KiB to 1 GiB)");
  EXPECT_EQ(parse_error({"--max-header-bytes", "2000000"}),
            "max_header_bytes = 2000000: must be in [1024, 1048576] (1 KiB to 1 MiB)");
  EXPECT_EQ(parse_error({"--request-timeout-s", "-1"}),
            "request_timeout_s = -1: must be >= 0 (0 = no limit)");
  EXPECT_EQ(parse_error({"--shutdown-timeout-s", "-0.5"}),
            "shutdown_timeout_s = -0.5: must be >= 0");
  EXPECT_EQ(parse_error({"--cors-allow-origin", "a b"}),
            "cors_allow_origin = \"a b\": must be * or an origin such as https://example.com");
  EXPECT_EQ(parse_error({"--log-level", "loud"}),
            "log_level = \"loud\": must be trace, debug, info, warn, error, critical or off");
  // The engine's own rules run too (with or without a model).
  EXPECT_EQ(parse_error({"--block-size", "0"}), "block_size = 0: must be in [1, 1024]");
  EXPECT_EQ(parse_error({"--model", "m", "--backend", "gpu"}),
            "backend = \"gpu\": must be cpu, cuda or auto");
  EXPECT_EQ(parse_error({"--max-num-seqs", "10", "--max-num-batched-tokens", "9"}),
            "max_num_batched_tokens = 9: must be >= max_num_seqs (10)");
  // A value from the file is validated as well.
  const std::string path = write("c.json", R"({"max_n": 0})");
  EXPECT_EQ(parse_error({"--config", path}), "max_n = 0: must be in [1, 1024]");
}

TEST_F(ServeConfigTest, ApiKeyFromFileWithTrailingNewline) {
  const std::string key_file = write("key", "sk-test-123\n");
  const auto c = parse({"--api-key-file", key_file});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->api_key, "sk-test-123");
  EXPECT_EQ(c->api_key_file, key_file);

  // Named in the config file, too; CRLF endings are dropped as well.
  const std::string crlf_key = write("key2", "other-key\r\n");
  const std::string config = write("c.json", "{\"api_key_file\": \"" + crlf_key + "\"}");
  auto d = parse({"--config", config});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->api_key, "other-key");
  // --api-key-file overrides the config's file; --api-key overrides both.
  d = parse({"--config", config, "--api-key-file", key_file});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->api_key, "sk-test-123");
  d = parse({"--config", config, "--api-key", "from-flag"});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->api_key, "from-flag");
  EXPECT_EQ(d->api_key_file, "");
}

TEST_F(ServeConfigTest, ApiKeyFileErrorsNameTheFileNotTheKey) {
  const std::string missing = (dir_ / "absent").string();
  EXPECT_EQ(parse_error({"--api-key-file", missing}),
            "api_key_file = \"" + missing + "\": cannot open the file");
  const std::string empty = write("empty", "\n\n");
  EXPECT_EQ(parse_error({"--api-key-file", empty}),
            "api_key_file = \"" + empty + "\": the file holds no key");
  const std::string two_lines = write("two", "secret-one\nsecret-two\n");
  const std::string e = parse_error({"--api-key-file", two_lines});
  EXPECT_EQ(e, "api_key_file = \"" + two_lines + "\": the key must be one line without spaces");
  EXPECT_THAT(e, Not(HasSubstr("secret")));
}

TEST_F(ServeConfigTest, ApiKeyFromEnvironmentOnlyWhenNoOtherSource) {
  auto c = parse({});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->api_key, "");

  setenv("MOESERVE_API_KEY", "env-key", 1);
  c = parse({});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->api_key, "env-key");
  c = parse({"--api-key", "flag-key"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->api_key, "flag-key");
  c = parse({"--api-key-file", write("key", "file-key")});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->api_key, "file-key");

  setenv("MOESERVE_API_KEY", "", 1);  // set but empty: no key
  c = parse({});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->api_key, "");
}

TEST_F(ServeConfigTest, HelpWinsOverEverythingElse) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--help"}, {"-h"}, {"--port", "bad", "--help"}, {"--config", "/nonexistent", "-h"}}) {
    const auto c = parse(args);
    ASSERT_FALSE(c.ok());
    EXPECT_TRUE(is_help_request(c.status())) << c.status();
  }
  EXPECT_FALSE(is_help_request(absl::OkStatus()));
  EXPECT_FALSE(is_help_request(absl::CancelledError("help requested")));  // no payload
  EXPECT_FALSE(is_help_request(parse({"--bogus"}).status()));
}

TEST_F(ServeConfigTest, UsageListsFlagsWithDefaults) {
  const std::string usage = serve_usage();
  EXPECT_THAT(usage, HasSubstr("usage: moeserve serve"));
  EXPECT_THAT(usage, HasSubstr("--max-num-seqs N"));
  EXPECT_THAT(usage, HasSubstr("(default: 64)"));
  EXPECT_THAT(usage, HasSubstr("--[no-]enable-prefix-caching"));
  EXPECT_THAT(usage, HasSubstr("--port N"));
  EXPECT_THAT(usage, HasSubstr("(default: 8000)"));
  EXPECT_THAT(usage, HasSubstr("(default: 127.0.0.1)"));
  EXPECT_THAT(usage, HasSubstr("--api-key KEY"));
  EXPECT_THAT(usage, HasSubstr("MOESERVE_API_KEY"));
  EXPECT_THAT(usage, HasSubstr("--config FILE"));
  // Every option's entry (its line and any continuation) gives its default.
  const std::vector<std::string> lines = absl::StrSplit(usage, '\n');
  int n_options = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].rfind("  --", 0) != 0 || lines[i].rfind("  --help", 0) == 0) continue;
    ++n_options;
    std::string entry = lines[i];
    for (size_t j = i + 1; j < lines.size() && lines[j].rfind("    ", 0) == 0; ++j) {
      entry += lines[j];
    }
    EXPECT_THAT(entry, HasSubstr("(default: ")) << entry;
    EXPECT_LE(lines[i].size(), 100u) << lines[i];
  }
  EXPECT_GE(n_options, 30);
}

TEST_F(ServeConfigTest, DescribeShowsEverySettingButNeverTheKey) {
  ServeConfig c;
  c.engine.model_dir = "models/x";
  c.api_key = "very-secret-key";
  c.port = 8123;
  std::string text = describe(c);
  EXPECT_THAT(text, HasSubstr("model: models/x\n"));
  EXPECT_THAT(text, HasSubstr("tokenizer: (the model directory)\n"));
  EXPECT_THAT(text, HasSubstr("port: 8123\n"));
  EXPECT_THAT(text, HasSubstr("enable_prefix_caching: true\n"));
  EXPECT_THAT(text, HasSubstr("request_timeout_s: 600\n"));
  EXPECT_THAT(text, HasSubstr("api_key: (set)\n"));
  EXPECT_THAT(text, Not(HasSubstr("very-secret-key")));
  c.api_key.clear();
  EXPECT_THAT(describe(c), HasSubstr("api_key: (none)\n"));
  // One line per config key plus api_key.
  const std::string error = load_error(R"({"?": 0})");
  const std::vector<std::string> keys =
      absl::StrSplit(error.substr(error.find("known keys: ") + 12), ", ");
  text = describe(c);
  EXPECT_EQ(static_cast<size_t>(std::count(text.begin(), text.end(), '\n')), keys.size() + 1);
  for (const std::string& key : keys) {
    EXPECT_THAT("\n" + text, HasSubstr("\n" + key + ": ")) << key;
  }
}

TEST_F(ServeConfigTest, ShippedConfigsLoadAndValidate) {
  const fs::path configs = fs::path(MOESERVE_SOURCE_DIR) / "configs";
  int n = 0;
  for (const auto& entry : fs::directory_iterator(configs)) {
    if (entry.path().extension() != ".json") continue;
    ++n;
    SCOPED_TRACE(entry.path().string());
    auto c = load_serve_config(entry.path().string());
    ASSERT_TRUE(c.ok()) << c.status();
    if (c->engine.model_dir.empty()) {
      c->engine.model_dir = std::string(MOESERVE_SOURCE_DIR) + "/tests/data/tiny/v3_tiny";
    }
    EXPECT_TRUE(validate_serve_config(*c).ok()) << validate_serve_config(*c);
    // And through the command line, as `moeserve serve --config FILE` reads it.
    const auto p = parse({"--config", entry.path().string()});
    EXPECT_TRUE(p.ok()) << p.status();
  }
  EXPECT_GE(n, 1);
}

TEST_F(ServeConfigTest, TinyCpuConfigMatchesItsArithmetic) {
  const auto c = load_serve_config(std::string(MOESERVE_SOURCE_DIR) + "/configs/tiny-cpu.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->engine.model_dir, "");  // the built-in default applies
  EXPECT_EQ(c->engine.backend, "cpu");
  EXPECT_EQ(c->host, "127.0.0.1");
  EXPECT_EQ(c->port, 8000);
  EXPECT_EQ(c->grpc_port, 50051);
  // The figures in the file's comments, from the bundled model's config.json:
  // layers × (kv_lora_rank + qk_rope_head_dim) × 2 bytes (BF16) per token.
  const auto m = load_model_config(std::string(MOESERVE_SOURCE_DIR) + "/models/tiny");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(c->engine.kv_cache_dtype, "bf16");
  const int64_t per_token =
      int64_t{m->num_hidden_layers} * (m->kv_lora_rank + m->qk_rope_head_dim) * 2;
  EXPECT_EQ(per_token, 640);
  EXPECT_EQ(int64_t{c->engine.kv_cache_blocks} * c->engine.block_size * per_token, 10485760);
  // The whole cache holds max_num_seqs sequences at the model's whole context.
  EXPECT_EQ(m->max_position_embeddings, 1024);
  EXPECT_EQ(c->engine.kv_cache_blocks * c->engine.block_size,
            c->engine.max_num_seqs * m->max_position_embeddings);
}

// The flags in a usage text or in the doc's table: lines that start with `prefix` and then
// `--name` or `--[no-]name` (returned as `--name`).
std::set<std::string> flags_in(const std::string& text, const std::string& prefix) {
  std::set<std::string> flags;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix + "--", 0) != 0) continue;
    size_t i = prefix.size() + 2;
    if (line.compare(i, 5, "[no-]") == 0) i += 5;
    const size_t begin = i;
    while (i < line.size() && ((line[i] >= 'a' && line[i] <= 'z') || line[i] == '-')) ++i;
    if (i > begin) flags.insert("--" + line.substr(begin, i - begin));
  }
  return flags;
}

std::string read_doc() {
  std::ifstream in(std::string(MOESERVE_SOURCE_DIR) + "/docs/configuration.md");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_F(ServeConfigTest, DocsListExactlyTheFlagsOfTheUsage) {
  const std::string doc = read_doc();
  ASSERT_FALSE(doc.empty()) << "docs/configuration.md is missing";
  const std::set<std::string> in_usage = flags_in(serve_usage(), "  ");
  // Table rows: | `--flag VALUE` | `key` | default | meaning |
  const std::set<std::string> in_doc = flags_in(doc, "| `");
  EXPECT_GE(in_usage.size(), 30u);
  EXPECT_EQ(in_usage, in_doc);
}

TEST_F(ServeConfigTest, DocsListExactlyTheConfigKeys) {
  const std::string doc = read_doc();
  std::set<std::string> in_doc;
  std::istringstream in(doc);
  // Table rows: | `--flag VALUE` | `key` | default | meaning |
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("| `--", 0) != 0) continue;
    const size_t key = line.find("` | `");
    if (key == std::string::npos) continue;
    const size_t end = line.find('`', key + 5);
    if (end == std::string::npos) continue;
    const std::string name = line.substr(key + 5, end - key - 5);
    if (!name.empty() &&
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos) {
      in_doc.insert(name);
    }
  }
  const std::string error = load_error(R"({"?": 0})");
  const std::vector<std::string> keys =
      absl::StrSplit(error.substr(error.find("known keys: ") + 12), ", ");
  EXPECT_EQ(in_doc, std::set<std::string>(keys.begin(), keys.end()));
}

}  // namespace
}  // namespace moeserve
