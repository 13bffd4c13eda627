// ThreadPool::parallel_for: every index of [0, n) is handed out exactly once,
// chunks are contiguous and respect min_chunk, and the pool survives many
// back-to-back jobs.
#include "common/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace moeserve {
namespace {

// Runs one parallel_for and checks coverage: each index exactly once, chunks
// non-empty, at most one chunk per thread, and each at least min_chunk long
// unless there is only one chunk (n < min_chunk).
void check_cover(ThreadPool& pool, int64_t n, int64_t min_chunk) {
  SCOPED_TRACE(::testing::Message()
               << "threads " << pool.n_threads() << " n " << n << " min_chunk " << min_chunk);
  std::vector<std::atomic<int>> hits(static_cast<size_t>(std::max<int64_t>(n, 1)));
  for (auto& h : hits) h = 0;
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  std::set<std::thread::id> threads;
  pool.parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        {
          std::lock_guard<std::mutex> lock(mu);
          chunks.push_back({b, e});
          threads.insert(std::this_thread::get_id());
        }
        for (int64_t i = b; i < e; ++i) {
          if (i >= 0 && i < n) hits[static_cast<size_t>(i)]++;
        }
      },
      min_chunk);
  if (n <= 0) {
    EXPECT_TRUE(chunks.empty());
    return;
  }
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "index " << i;
  std::sort(chunks.begin(), chunks.end());
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks.front().first, 0);
  EXPECT_EQ(chunks.back().second, n);
  EXPECT_LE(static_cast<int>(chunks.size()), pool.n_threads());
  for (size_t c = 0; c < chunks.size(); ++c) {
    EXPECT_LT(chunks[c].first, chunks[c].second) << "empty chunk";
    if (c > 0) {
      EXPECT_EQ(chunks[c].first, chunks[c - 1].second);
    }
    if (chunks.size() > 1) {
      EXPECT_GE(chunks[c].second - chunks[c].first, min_chunk);
    }
  }
}

class ThreadPoolTest : public ::testing::TestWithParam<int> {};

TEST_P(ThreadPoolTest, CoversRangeExactlyOnce) {
  ThreadPool pool(GetParam());
  EXPECT_EQ(pool.n_threads(), GetParam());
  for (int64_t n : {0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 100, 1023, 4096, 100003}) {
    for (int64_t min_chunk : {1, 2, 3, 16, 1000, 1 << 20}) check_cover(pool, n, min_chunk);
  }
  check_cover(pool, -5, 1);  // negative n does nothing
}

TEST_P(ThreadPoolTest, RandomSizesRepeated) {
  std::random_device rd;
  const uint64_t seed = (static_cast<uint64_t>(rd()) << 32) | rd();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  ThreadPool pool(GetParam());
  for (int i = 0; i < 300; ++i) {
    const int64_t n = static_cast<int64_t>(rng() % 300);
    const int64_t min_chunk = 1 + static_cast<int64_t>(rng() % 40);
    check_cover(pool, n, min_chunk);
  }
}

TEST_P(ThreadPoolTest, ThousandSmallJobsSumCorrectly) {
  ThreadPool pool(GetParam());
  for (int job = 0; job < 1000; ++job) {
    const int64_t n = 1 + job % 37;
    std::atomic<int64_t> sum{0};
    pool.parallel_for(n, [&](int64_t b, int64_t e) {
      int64_t s = 0;
      for (int64_t i = b; i < e; ++i) s += i + 1;
      sum += s;
    });
    ASSERT_EQ(sum.load(), n * (n + 1) / 2) << "job " << job;
  }
}

TEST_P(ThreadPoolTest, UsesMultipleThreadsForLargeJobs) {
  ThreadPool pool(GetParam());
  std::mutex mu;
  std::set<std::thread::id> threads;
  std::atomic<int> arrived{0};
  const int n_threads = pool.n_threads();
  // Every chunk waits until all chunks have started: only possible if they
  // really run concurrently on n_threads distinct threads.
  pool.parallel_for(n_threads, [&](int64_t, int64_t) {
    {
      std::lock_guard<std::mutex> lock(mu);
      threads.insert(std::this_thread::get_id());
    }
    arrived++;
    while (arrived.load() < n_threads) std::this_thread::yield();
  });
  EXPECT_EQ(static_cast<int>(threads.size()), n_threads);
  EXPECT_TRUE(threads.count(std::this_thread::get_id())) << "the caller takes part";
}

INSTANTIATE_TEST_SUITE_P(Pools, ThreadPoolTest, ::testing::Values(1, 2, 4, 7));

TEST(ThreadPoolDefaultTest, AtLeastOneThread) {
  ThreadPool pool(0);
  EXPECT_GE(pool.n_threads(), 1);
  check_cover(pool, 1000, 1);
}

TEST(ThreadPoolDefaultTest, ManyPoolsCreatedAndDestroyed) {
  for (int i = 0; i < 50; ++i) {
    ThreadPool pool(1 + i % 4);
    check_cover(pool, 64, 1);
  }
}

}  // namespace
}  // namespace moeserve
