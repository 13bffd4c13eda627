// moeserve: the command-line entry point.
#include <cstdio>
#include <string>
#include <string_view>

#include "server/commands.h"

namespace {

void print_usage() {
  std::fputs(
      "usage: moeserve <command> [options]\n"
      "\n"
      "commands:\n"
      "  serve      run the daemon: OpenAI-compatible HTTP API and gRPC over one model\n"
      "  generate   run a prompt through a model directory and print the continuation\n"
      "\n"
      "Run 'moeserve <command> --help' for a command's options.\n",
      stderr);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage();
    return 2;
  }
  const std::string_view command = argv[1];
  if (command == "serve") return moeserve::run_serve(argc - 1, argv + 1);
  if (command == "generate") return moeserve::run_generate(argc - 1, argv + 1);
  if (command == "--help" || command == "-h" || command == "help") {
    print_usage();
    return 0;
  }
  std::fprintf(stderr, "moeserve: unknown command '%s'\n", argv[1]);
  print_usage();
  return 2;
}
