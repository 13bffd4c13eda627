// A launch under the emulator: validates the configuration like the CUDA runtime, then runs
// the blocks over a small pool of OS threads (each block wholly on one of them) and gathers
// the first error and the race reports.
#include "kernels/simt/emu/grid.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/simt/emu/block_state.h"
#include "kernels/simt/emu/capture.h"
#include "kernels/simt/emu/scheduler.h"

namespace simt::emu {
namespace {

constexpr size_t kMaxStaticShared = 48 * 1024;
constexpr size_t kMaxDynamicShared = 227 * 1024;  // sm_90's opt-in limit
constexpr unsigned kMaxThreads = 1024;

EmuOptions& mutable_default_options() {
  static EmuOptions options;
  return options;
}

// Helper threads that run one job at a time alongside the launching thread.
class WorkerPool {
 public:
  ~WorkerPool() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  void run(int n_helpers, const std::function<void()>& job) {
    std::lock_guard launch_lock(launch_mu_);
    std::unique_lock lock(mu_);
    while (static_cast<int>(threads_.size()) < n_helpers) {
      threads_.emplace_back([this] { helper_loop(); });
    }
    job_ = &job;
    slots_ = n_helpers;
    finished_ = 0;
    ++generation_;
    cv_.notify_all();
    lock.unlock();
    job();
    lock.lock();
    done_cv_.wait(lock, [&] { return finished_ == n_helpers; });
    job_ = nullptr;
  }

 private:
  void helper_loop() {
    uint64_t seen = 0;
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || (generation_ != seen && slots_ > 0); });
      if (stop_) return;
      seen = generation_;
      --slots_;
      const std::function<void()>* job = job_;
      lock.unlock();
      (*job)();
      lock.lock();
      ++finished_;
      done_cv_.notify_all();
    }
  }

  std::mutex launch_mu_;  // one grid at a time
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::vector<std::thread> threads_;
  const std::function<void()>* job_ = nullptr;
  uint64_t generation_ = 0;
  int slots_ = 0;
  int finished_ = 0;
  bool stop_ = false;
};

thread_local LaunchResult tls_last_error;

WorkerPool& pool() {
  static WorkerPool p;
  return p;
}

// What one OS thread keeps between blocks and launches.
struct Worker {
  StackPool stacks;
  BlockState block;
};

void init_block(BlockState& b, const LaunchPlan& plan, uint64_t block_linear) {
  const dim3 g = plan.config.grid;
  const dim3 bd = plan.config.block;
  b.plan = &plan;
  b.block_idx = uint3{static_cast<unsigned>(block_linear % g.x),
                      static_cast<unsigned>(block_linear / g.x % g.y),
                      static_cast<unsigned>(block_linear / (uint64_t{g.x} * g.y))};
  b.n_threads = plan.n_threads;
  b.threads.resize(plan.n_threads);
  for (unsigned l = 0; l < plan.n_threads; ++l) {
    ThreadState& t = b.threads[l];
    t.view.thread_idx = uint3{l % bd.x, l / bd.x % bd.y, l / (bd.x * bd.y)};
    t.view.block_idx = b.block_idx;
    t.view.block_dim = bd;
    t.view.grid_dim = g;
    t.block = &b;
    t.linear = l;
    t.lane = l % 32;
    t.warp = l / 32;
    t.status = ThreadStatus::kReady;
    t.started = false;
    t.aborting = false;
    t.asan_fake_stack = nullptr;
    t.barrier_result = 0;
    t.cp_pending.clear();
    t.cp_group_end.clear();
  }
  const unsigned n_warps = (plan.n_threads + 31) / 32;
  b.warps.assign(n_warps, WarpState{});
  for (unsigned w = 0; w < n_warps; ++w) {
    const unsigned n = std::min(32u, plan.n_threads - w * 32);
    b.warps[w].existing = n == 32 ? 0xffffffffu : (1u << n) - 1;
  }
  b.random = plan.options.schedule == Schedule::kRandom;
  b.rng.seed(plan.options.seed * 0x9e3779b97f4a7c15ull ^ (block_linear + 1));
  b.n_at_barrier = 0;
  b.n_exited = 0;
  b.dynamic_bytes = (plan.config.dynamic_smem_bytes + 127) / 128 * 128;
  b.arena.resize(b.dynamic_bytes + kMaxStaticShared);
  // Poison: uninitialised shared memory reads as NaN / -1, never as a plausible zero.
  std::memset(b.arena.data(), 0xff, b.arena.size());
  b.static_used = 0;
  b.slots.clear();
  b.racecheck = plan.options.racecheck;
  if (b.racecheck && b.shadow.size() < b.arena.size()) b.shadow.resize(b.arena.size());
  ++b.epoch;  // shadow cells of earlier blocks are stale
  b.n_preempt = 0;
  b.races.clear();
  b.n_races = 0;
  b.error.clear();
  b.failed = false;
}

LaunchResult validate(const LaunchConfig& c) {
  const uint64_t n_threads = uint64_t{c.block.x} * c.block.y * c.block.z;
  if (c.block.x == 0 || c.block.y == 0 || c.block.z == 0 || c.grid.x == 0 || c.grid.y == 0 ||
      c.grid.z == 0 || n_threads > kMaxThreads || c.block.x > 1024 || c.block.y > 1024 ||
      c.block.z > 64 || c.grid.y > 65535 || c.grid.z > 65535) {
    return {cudaErrorInvalidConfiguration,
            "kernel '" + std::string(c.kernel_name) + "': invalid launch configuration"};
  }
  if (c.dynamic_smem_bytes > kMaxDynamicShared) {
    return {cudaErrorInvalidValue, "kernel '" + std::string(c.kernel_name) +
                                       "': " + std::to_string(c.dynamic_smem_bytes) +
                                       " bytes of dynamic shared memory exceed 227 KiB"};
  }
  return {};
}

}  // namespace

const EmuOptions& default_options() { return mutable_default_options(); }
const LaunchResult& peek_last_error() { return tls_last_error; }
LaunchResult take_last_error() { return std::exchange(tls_last_error, LaunchResult{}); }
void set_last_error(LaunchResult error) {
  if (tls_last_error.ok()) tls_last_error = std::move(error);  // sticky until taken, as CUDA's
}
void set_default_options(const EmuOptions& options) { mutable_default_options() = options; }

namespace {
LaunchResult run_grid_impl(const LaunchConfig& config, const KernelThunk& thunk);
}  // namespace

LaunchResult run_grid(const LaunchConfig& launch_config, const KernelThunk& thunk) {
  LaunchConfig config = launch_config;
  if (config.kernel_name == nullptr) config.kernel_name = "?";
  if (LaunchResult r = validate(config); !r.ok()) {
    set_last_error(r);
    return r;
  }
  // A capturing stream records the launch: its config, options and a copy of its params.
  LaunchConfig replay_config = config;
  replay_config.stream = nullptr;
  replay_config.emu = nullptr;
  const EmuOptions options = config.emu ? *config.emu : default_options();
  const std::shared_ptr<const void> params = thunk.copy_params(thunk.params);
  CapturedOp op = [replay_config, options, thunk, params]() {
    LaunchConfig c = replay_config;
    c.emu = &options;
    KernelThunk t = thunk;
    t.params = params.get();
    LaunchResult r = run_grid_impl(c, t);
    if (!r.ok()) set_last_error(r);
    return r.code;
  };
  cudaError_t capture_error = cudaSuccess;
  switch (record_on_stream(config.stream, std::move(op), &capture_error)) {
    case OnStream::kRecord: return {};
    case OnStream::kFail: {
      LaunchResult r{capture_error,
                     std::string(config.kernel_name) + ": launch refused by the stream capture"};
      set_last_error(r);
      return r;
    }
    case OnStream::kRun: break;
  }
  LaunchResult r = run_grid_impl(config, thunk);
  if (!r.ok()) set_last_error(r);
  return r;
}

namespace {
LaunchResult run_grid_impl(const LaunchConfig& config, const KernelThunk& thunk) {
  LaunchPlan plan;
  plan.config = config;
  if (plan.config.kernel_name == nullptr) plan.config.kernel_name = "?";
  if (LaunchResult r = validate(plan.config); !r.ok()) return r;
  plan.options = config.emu ? *config.emu : default_options();
  plan.thunk = thunk;
  plan.n_threads = config.block.x * config.block.y * config.block.z;
  const uint64_t n_blocks = uint64_t{config.grid.x} * config.grid.y * config.grid.z;

  std::atomic<uint64_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  uint64_t error_block = UINT64_MAX;
  std::string error;
  std::vector<std::string> races;
  size_t n_races = 0;
  const std::function<void()> job = [&] {
    static thread_local Worker worker;
    for (uint64_t i; !stop.load(std::memory_order_relaxed) && (i = next++) < n_blocks;) {
      BlockState& b = worker.block;
      init_block(b, plan, i);
      run_block(b, worker.stacks);
      if (!b.failed && b.n_races == 0) continue;
      std::lock_guard lock(mu);
      if (b.failed && i < error_block) {
        error_block = i;
        error = b.error;
        stop = true;
      }
      n_races += b.n_races;
      for (std::string& r : b.races) {
        if (races.size() < 8) races.push_back(std::move(r));
      }
    }
  };
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const uint64_t n_workers = std::min<uint64_t>(
      n_blocks, plan.options.n_workers > 0 ? static_cast<unsigned>(plan.options.n_workers) : hw);
  pool().run(static_cast<int>(n_workers) - 1, job);

  if (!error.empty()) return {cudaErrorLaunchFailure, error};
  if (n_races > 0) {
    std::string message = "racecheck: " + std::to_string(n_races) + " shared-memory race(s)";
    for (const std::string& r : races) message += "\n  " + r;
    return {cudaErrorLaunchFailure, message};
  }
  return {};
}
}  // namespace

}  // namespace simt::emu
