// Communicator: the single-rank group in process, and the Gloo group as forked rank
// processes over 127.0.0.1. Each child joins the group, runs the case's body and reports its
// Status through a pipe; every child is reaped, and one that outlives its limit is killed.
#include "parallel/communicator.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "seeded_test.h"
#include "tests/support/rank_group.h"
#include <gtest/gtest.h>
#include <sys/wait.h>

namespace moeserve {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kGroupTimeout{3000};  // rendezvous and each op
constexpr milliseconds kChildLimit{20000};   // a child still running after this is killed

// Fresh values for (seed, rank, what): the same on every process that asks.
std::vector<float> rank_values(uint64_t seed, int rank, int what, size_t n) {
  std::mt19937_64 rng(seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(rank + 1)) ^
                      (static_cast<uint64_t>(what) << 48));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Element counts of a case, the same on every process: a value in [0, bound) per (seed, key).
int rank_count(uint64_t seed, int key, int bound) {
  std::mt19937_64 rng(seed + 0x51ED27ull * static_cast<uint64_t>(key + 1));
  return std::uniform_int_distribution<int>(0, bound - 1)(rng);
}

absl::Status expect_near(std::span<const float> got, std::span<const float> want, float tol,
                         const std::string& what) {
  if (got.size() != want.size()) {
    return absl::InternalError(
        absl::StrCat(what, ": ", got.size(), " elements, expected ", want.size()));
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= tol)) {
      return absl::InternalError(
          absl::StrCat(what, "[", i, "] = ", got[i], ", expected ", want[i], " (tol ", tol, ")"));
    }
  }
  return absl::OkStatus();
}

class GlooGroupTest : public test::SeededTest {
 protected:
  void SetUp() override {
    SeededTest::SetUp();
    std::string tmpl = (std::filesystem::temp_directory_path() / "communicator_test.XXXXXX");
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    store_dir_ = tmpl;
  }
  void TearDown() override {
    std::filesystem::remove_all(store_dir_);
    SeededTest::TearDown();
  }

  // Forks world_size ranks that join one group and run body (tests/support/rank_group.h).
  std::vector<RankOutcome> run_group(int world_size, const RankBody& body) {
    return run_rank_group({.world_size = world_size,
                           .store_dir = store_dir_,
                           .prefix = absl::StrCat("group", n_groups_++),
                           .group_timeout = kGroupTimeout,
                           .child_limit = kChildLimit},
                          body);
  }

  // Every rank must exit 0 having reported OK.
  void expect_all_ok(const std::vector<RankOutcome>& outcomes) {
    for (size_t r = 0; r < outcomes.size(); ++r) {
      EXPECT_TRUE(outcomes[r].exited && outcomes[r].exit_code == 0)
          << "rank " << r << " of " << outcomes.size() << ": " << outcomes[r].report;
    }
  }

  std::string store_dir_;
  int n_groups_ = 0;
};

class GlooWorldTest : public GlooGroupTest, public ::testing::WithParamInterface<int> {};

TEST_P(GlooWorldTest, AllReduceSumAddsEveryRanksValues) {
  const uint64_t seed = seed_;
  const size_t n = 1 + static_cast<size_t>(rank_count(seed, 0, 70000));
  expect_all_ok(run_group(GetParam(), [&](Communicator& comm) {
    std::vector<float> data = rank_values(seed, comm.rank(), 0, n);
    std::vector<double> want(n, 0.0);
    for (int r = 0; r < comm.world_size(); ++r) {
      const std::vector<float> v = rank_values(seed, r, 0, n);
      for (size_t i = 0; i < n; ++i) want[i] += v[i];
    }
    RETURN_IF_ERROR(comm.all_reduce_sum(data));
    return expect_near(data, std::vector<float>(want.begin(), want.end()), 1e-5f, "all_reduce_sum");
  }));
}

TEST_P(GlooWorldTest, AllGatherPutsRanksInOrder) {
  const uint64_t seed = seed_;
  const size_t n = 1 + static_cast<size_t>(rank_count(seed, 1, 5000));
  expect_all_ok(run_group(GetParam(), [&](Communicator& comm) {
    const std::vector<float> in = rank_values(seed, comm.rank(), 1, n);
    std::vector<float> out(n * static_cast<size_t>(comm.world_size()), NAN);
    std::vector<float> want;
    for (int r = 0; r < comm.world_size(); ++r) {
      const std::vector<float> v = rank_values(seed, r, 1, n);
      want.insert(want.end(), v.begin(), v.end());
    }
    RETURN_IF_ERROR(comm.all_gather(in, out));
    return expect_near(out, want, 0.0f, "all_gather");
  }));
}

TEST_P(GlooWorldTest, ReduceScatterSumGivesEachRankItsSlice) {
  const uint64_t seed = seed_;
  const size_t n = 1 + static_cast<size_t>(rank_count(seed, 2, 3000));
  expect_all_ok(run_group(GetParam(), [&](Communicator& comm) {
    const size_t world = static_cast<size_t>(comm.world_size());
    const std::vector<float> in = rank_values(seed, comm.rank(), 2, n * world);
    std::vector<double> want(n, 0.0);
    for (int r = 0; r < comm.world_size(); ++r) {
      const std::vector<float> v = rank_values(seed, r, 2, n * world);
      for (size_t i = 0; i < n; ++i) want[i] += v[static_cast<size_t>(comm.rank()) * n + i];
    }
    std::vector<float> out(n, NAN);
    RETURN_IF_ERROR(comm.reduce_scatter_sum(in, out));
    return expect_near(out, std::vector<float>(want.begin(), want.end()), 1e-5f,
                       "reduce_scatter_sum");
  }));
}

// counts(src, dst): elements rank src sends rank dst. Checks exchange_counts against it, then
// that every rank receives, in rank order, exactly its segments of the senders' buffers.
absl::Status check_all_to_all(Communicator& comm, uint64_t seed,
                              const std::function<int(int, int)>& counts) {
  const int world = comm.world_size();
  const int me = comm.rank();
  auto send_buffer = [&](int src) {
    size_t total = 0;
    for (int d = 0; d < world; ++d) total += static_cast<size_t>(counts(src, d));
    return rank_values(seed, src, 3, total);
  };
  std::vector<int32_t> send_counts(world), recv_counts(world, -1), want_recv_counts(world);
  for (int r = 0; r < world; ++r) {
    send_counts[r] = counts(me, r);
    want_recv_counts[r] = counts(r, me);
  }
  RETURN_IF_ERROR(comm.exchange_counts(send_counts, recv_counts));
  if (recv_counts != want_recv_counts) {
    return absl::InternalError(absl::StrCat("exchange_counts: rank ", me, " got counts ",
                                            absl::StrJoin(recv_counts, ","), ", expected ",
                                            absl::StrJoin(want_recv_counts, ",")));
  }
  std::vector<float> want;
  for (int src = 0; src < world; ++src) {
    const std::vector<float> buf = send_buffer(src);
    size_t offset = 0;
    for (int d = 0; d < me; ++d) offset += static_cast<size_t>(counts(src, d));
    want.insert(
        want.end(), buf.begin() + static_cast<ptrdiff_t>(offset),
        buf.begin() + static_cast<ptrdiff_t>(offset + static_cast<size_t>(counts(src, me))));
  }
  const std::vector<float> send = send_buffer(me);
  std::vector<float> recv(want.size(), NAN);
  RETURN_IF_ERROR(comm.all_to_all(send, send_counts, recv, recv_counts));
  return expect_near(recv, want, 0.0f, absl::StrCat("all_to_all on rank ", me));
}

TEST_P(GlooWorldTest, AllToAllWithUnevenCounts) {
  const uint64_t seed = seed_;
  // Random counts, some zero; then every element to the last rank, so one rank receives
  // everything and the others nothing; then rank 0 sends nothing and the rest send only to it.
  expect_all_ok(run_group(GetParam(), [&](Communicator& comm) {
    const int world = comm.world_size();
    RETURN_IF_ERROR(check_all_to_all(comm, seed, [&](int src, int dst) {
      return rank_count(seed, 100 + src * world + dst, 40) % 4 == 0
                 ? 0
                 : rank_count(seed, 200 + src * world + dst, 300);
    }));
    RETURN_IF_ERROR(check_all_to_all(comm, seed, [&](int src, int dst) {
      return dst == world - 1 ? 1 + rank_count(seed, 300 + src, 500) : 0;
    }));
    return check_all_to_all(comm, seed, [&](int src, int dst) {
      return src != 0 && dst == 0 ? 1 + rank_count(seed, 400 + src, 500) : 0;
    });
  }));
}

TEST_P(GlooWorldTest, BroadcastFromANonZeroRoot) {
  const uint64_t seed = seed_;
  const size_t n = 1 + static_cast<size_t>(rank_count(seed, 5, 4000));
  expect_all_ok(run_group(GetParam(), [&](Communicator& comm) {
    for (int root : {comm.world_size() - 1, 1}) {
      std::vector<float> data = rank_values(seed, comm.rank(), 10 + root, n);
      RETURN_IF_ERROR(comm.broadcast(data, root));
      RETURN_IF_ERROR(expect_near(data, rank_values(seed, root, 10 + root, n), 0.0f,
                                  absl::StrCat("broadcast from ", root)));
    }
    return absl::OkStatus();
  }));
}

TEST_P(GlooWorldTest, SendRecvBetweenPairs) {
  const uint64_t seed = seed_;
  // Ranks pair up (0-1, 2-3): the even one sends on tag 7 then receives on tag 9, the odd one
  // the other way round; sizes differ per direction, and an empty message goes each way.
  expect_all_ok(run_group(GetParam(), [&](Communicator& comm) {
    const int me = comm.rank();
    const int peer = me ^ 1;
    const size_t n_up = 1 + static_cast<size_t>(rank_count(seed, 6, 2000));    // even → odd
    const size_t n_down = 1 + static_cast<size_t>(rank_count(seed, 7, 2000));  // odd → even
    const int even = std::min(me, peer);
    const int odd = std::max(me, peer);
    if (me % 2 == 0) {
      RETURN_IF_ERROR(comm.send(rank_values(seed, me, 20, n_up), peer, 7));
      RETURN_IF_ERROR(comm.send({}, peer, 8));
      std::vector<float> got(n_down, NAN);
      RETURN_IF_ERROR(comm.recv(got, peer, 9));
      RETURN_IF_ERROR(comm.recv({}, peer, 8));
      return expect_near(got, rank_values(seed, odd, 21, n_down), 0.0f, "recv on the even rank");
    }
    std::vector<float> got(n_up, NAN);
    RETURN_IF_ERROR(comm.recv(got, peer, 7));
    RETURN_IF_ERROR(comm.recv({}, peer, 8));
    RETURN_IF_ERROR(comm.send(rank_values(seed, me, 21, n_down), peer, 9));
    RETURN_IF_ERROR(comm.send({}, peer, 8));
    return expect_near(got, rank_values(seed, even, 20, n_up), 0.0f, "recv on the odd rank");
  }));
}

TEST_P(GlooWorldTest, BarrierWaitsForTheLastRank) {
  // The last rank arrives late and leaves a marker first: no rank may pass the barrier
  // without seeing the marker.
  const std::string marker = store_dir_ + "/late_rank_arrived";
  expect_all_ok(run_group(GetParam(), [&](Communicator& comm) {
    if (comm.rank() == comm.world_size() - 1) {
      std::this_thread::sleep_for(milliseconds(300));
      std::ofstream(marker) << "here";
    }
    RETURN_IF_ERROR(comm.barrier());
    if (!std::filesystem::exists(marker)) {
      return absl::InternalError(
          absl::StrCat("rank ", comm.rank(), " passed the barrier before the last rank"));
    }
    return absl::OkStatus();
  }));
}

INSTANTIATE_TEST_SUITE_P(World, GlooWorldTest, ::testing::Values(2, 4),
                         [](const auto& info) { return absl::StrCat("ranks", info.param); });

// After a barrier (everyone connected), the last rank of 3 exits, or stays alive but never
// calls the next op; the others' all-reduce must fail naming the op within the timeout, and
// their next op must report the earlier failure.
class LostPeerTest : public GlooGroupTest, public ::testing::WithParamInterface<bool> {};

TEST_P(LostPeerTest, FailsTheCollectiveWithinTheTimeout) {
  const uint64_t seed = seed_;
  const bool peer_exits = GetParam();
  expect_all_ok(run_group(3, [&](Communicator& comm) {
    RETURN_IF_ERROR(comm.barrier());
    if (comm.rank() == comm.world_size() - 1) {
      if (peer_exits) _exit(0);
      std::this_thread::sleep_for(kGroupTimeout + milliseconds(1000));
      return absl::OkStatus();
    }
    std::vector<float> data = rank_values(seed, comm.rank(), 30, 1000);
    const auto start = Clock::now();
    const absl::Status status = comm.all_reduce_sum(data);
    const auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
    if (status.ok()) return absl::InternalError("all_reduce_sum succeeded without the peer");
    if (status.code() != absl::StatusCode::kUnavailable ||
        status.message().find("all_reduce_sum") == absl::string_view::npos) {
      return absl::InternalError(absl::StrCat("not an error naming the op: ", status.ToString()));
    }
    if (elapsed > kGroupTimeout + milliseconds(1500)) {
      return absl::InternalError(
          absl::StrCat("failed after ", elapsed.count(), " ms: ", status.ToString()));
    }
    const absl::Status later = comm.barrier();
    if (later.code() != absl::StatusCode::kFailedPrecondition ||
        later.message().find("barrier") == absl::string_view::npos) {
      return absl::InternalError(absl::StrCat("the op after the failure gave ", later.ToString()));
    }
    return absl::OkStatus();
  }));
}

INSTANTIATE_TEST_SUITE_P(Peer, LostPeerTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Exits" : "Stalls"; });

TEST_F(GlooGroupTest, RendezvousWithoutThePeersFailsWithinTheTimeout) {
  const auto start = Clock::now();
  auto comm = create_gloo_communicator({.rank = 0,
                                        .world_size = 2,
                                        .store_dir = store_dir_,
                                        .prefix = "alone",
                                        .host = "127.0.0.1",
                                        .timeout = milliseconds(1000)});
  const auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kUnavailable) << comm.status();
  EXPECT_LT(elapsed.count(), 5000);
}

TEST_F(GlooGroupTest, BadOptionsAreRefused) {
  GlooOptions options{.rank = 2, .world_size = 2, .store_dir = store_dir_, .prefix = "p"};
  EXPECT_EQ(create_gloo_communicator(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.rank = 0;
  options.store_dir = store_dir_ + "/missing";
  EXPECT_EQ(create_gloo_communicator(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.store_dir = store_dir_;
  options.prefix = "";
  EXPECT_EQ(create_gloo_communicator(options).status().code(), absl::StatusCode::kInvalidArgument);
}

class SingleRankTest : public test::SeededTest {};

TEST_F(SingleRankTest, CollectivesAreTheIdentity) {
  auto comm = create_single_rank_communicator();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->world_size(), 1);
  const std::vector<float> in = rank_values(seed_, 0, 40, 257);

  std::vector<float> data = in;
  ASSERT_TRUE(comm->all_reduce_sum(data).ok());
  EXPECT_EQ(data, in);
  ASSERT_TRUE(comm->broadcast(data, 0).ok());
  EXPECT_EQ(data, in);

  std::vector<float> out(in.size(), NAN);
  ASSERT_TRUE(comm->all_gather(in, out).ok());
  EXPECT_EQ(out, in);
  std::fill(out.begin(), out.end(), NAN);
  ASSERT_TRUE(comm->reduce_scatter_sum(in, out).ok());
  EXPECT_EQ(out, in);

  const std::vector<int32_t> send_counts = {static_cast<int32_t>(in.size())};
  std::vector<int32_t> recv_counts = {-1};
  ASSERT_TRUE(comm->exchange_counts(send_counts, recv_counts).ok());
  EXPECT_EQ(recv_counts, send_counts);
  std::fill(out.begin(), out.end(), NAN);
  ASSERT_TRUE(comm->all_to_all(in, send_counts, out, recv_counts).ok());
  EXPECT_EQ(out, in);
  EXPECT_TRUE(comm->barrier().ok());
}

TEST_F(SingleRankTest, ContractViolationsAreInvalidArgument) {
  auto comm = create_single_rank_communicator();
  std::vector<float> a(4), b(5);
  const std::vector<int32_t> four = {4}, five = {5}, two_ranks = {2, 2}, negative = {-1};
  EXPECT_EQ(comm->all_gather(a, b).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comm->reduce_scatter_sum(a, b).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comm->broadcast(a, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comm->send(a, 0, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comm->recv(a, 1, 0).code(), absl::StatusCode::kInvalidArgument);
  std::vector<int32_t> recv_counts(1);
  EXPECT_EQ(comm->exchange_counts(negative, recv_counts).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comm->all_to_all(a, five, a, four).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comm->all_to_all(a, two_ranks, a, four).code(), absl::StatusCode::kInvalidArgument);
  // Counts that pass the local checks but disagree between send and receive.
  EXPECT_EQ(comm->all_to_all(a, four, b, five).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace moeserve
