#include "tests/support/rank_group.h"

#include <unistd.h>

#include <csignal>
#include <thread>

#include "absl/strings/str_cat.h"
#include <sys/wait.h>

namespace moeserve {
namespace {

using Clock = std::chrono::steady_clock;

// Reads everything left in the pipe (the child has ended, so this does not block).
std::string drain(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

}  // namespace

std::vector<RankOutcome> run_rank_group(const RankGroupOptions& options, const RankBody& body) {
  std::vector<pid_t> pids(options.world_size, -1);
  std::vector<int> pipes(options.world_size, -1);
  for (int r = 0; r < options.world_size; ++r) {
    int fds[2];
    if (pipe(fds) != 0) break;
    const pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      const GlooOptions gloo{.rank = r,
                             .world_size = options.world_size,
                             .store_dir = options.store_dir,
                             .prefix = options.prefix,
                             .host = "127.0.0.1",
                             .timeout = options.group_timeout};
      absl::Status status;
      auto comm = create_gloo_communicator(gloo);
      if (!comm.ok()) {
        status = comm.status();
      } else {
        status = body(**comm);
        comm->reset();
      }
      const std::string report = status.ToString().substr(0, 4000);
      (void)!write(fds[1], report.data(), report.size());
      _exit(status.ok() ? 0 : 1);
    }
    close(fds[1]);
    if (pid < 0) {
      close(fds[0]);
      break;
    }
    pids[r] = pid;
    pipes[r] = fds[0];
  }
  std::vector<RankOutcome> outcomes(options.world_size);
  const auto deadline = Clock::now() + options.child_limit;
  for (int r = 0; r < options.world_size; ++r) {
    if (pids[r] < 0) {
      outcomes[r].report = "could not start (pipe or fork failed)";
      continue;
    }
    int wstatus = 0;
    pid_t done = 0;
    while ((done = waitpid(pids[r], &wstatus, WNOHANG)) == 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    bool killed = false;
    if (done == 0) {
      kill(pids[r], SIGKILL);
      waitpid(pids[r], &wstatus, 0);
      killed = true;
    }
    outcomes[r].report = drain(pipes[r]);
    close(pipes[r]);
    if (killed) {
      outcomes[r].report += " [killed: still running after the limit]";
    } else if (WIFEXITED(wstatus)) {
      outcomes[r].exited = true;
      outcomes[r].exit_code = WEXITSTATUS(wstatus);
    } else if (WIFSIGNALED(wstatus)) {
      outcomes[r].report += absl::StrCat(" [died of signal ", WTERMSIG(wstatus), "]");
    }
  }
  return outcomes;
}

}  // namespace moeserve
