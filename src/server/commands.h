// Sub-commands of the moeserve binary; each returns the process exit code.
#pragma once

namespace moeserve {

// `moeserve generate`: argv[0] is "generate".
int run_generate(int argc, char** argv);
// `moeserve serve`: argv[0] is "serve".
int run_serve(int argc, char** argv);

}  // namespace moeserve
