// Runs a test body in several rank processes that form one Gloo group over
// 127.0.0.1: each forked child joins the group, runs the body and reports its
// Status through a pipe; every child is reaped, and one that outlives its
// limit is killed and reported.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace moeserve {

using RankBody = std::function<absl::Status(Communicator& comm)>;

// What one rank process left behind.
struct RankOutcome {
  bool exited = false;  // exited on its own (not by a signal, not killed by us)
  int exit_code = -1;
  std::string report;  // its Status, or why it did not report
};

struct RankGroupOptions {
  int world_size = 2;
  std::string store_dir;                          // an existing directory for the rendezvous
  std::string prefix;                             // unique per group within store_dir
  std::chrono::milliseconds group_timeout{3000};  // rendezvous and each op
  std::chrono::milliseconds child_limit{20000};   // a child still running after this is killed
};

// Forks the ranks and returns once every child has been reaped.
std::vector<RankOutcome> run_rank_group(const RankGroupOptions& options, const RankBody& body);

}  // namespace moeserve
