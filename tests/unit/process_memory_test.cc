// The memory limit: the setting wins, then the cgroup's (v2 memory.max, v1
// memory.limit_in_bytes, at this process's cgroup path or the mount's root),
// then MemTotal; "max" and v1's near-2^63 "unlimited" are no limit. Each case
// builds a fake /proc + /sys tree. Also: resident memory reads are sane.
#include "common/process_memory.h"

#include <filesystem>
#include <fstream>
#include <vector>

#include "safetensors_writer.h"  // tests/unit: TempDir
#include <gtest/gtest.h>

namespace moeserve {
namespace {

void put(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

class MemoryLimitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    put(root() / "proc/meminfo", "MemTotal:       24683520 kB\nMemFree:  1 kB\n");
  }
  std::filesystem::path root() const { return dir_.path(); }
  MemoryLimit limit(int64_t configured = 0) const {
    return memory_limit(configured, root().string());
  }
  test::TempDir dir_;
};

TEST_F(MemoryLimitTest, MemTotalWithoutACgroupLimit) {
  put(root() / "proc/self/cgroup", "0::/\n");
  put(root() / "sys/fs/cgroup/memory.max", "max\n");
  const MemoryLimit l = limit();
  EXPECT_EQ(l.bytes, int64_t{24683520} * 1024);
  EXPECT_EQ(l.source, "MemTotal");
}

TEST_F(MemoryLimitTest, CgroupV2AtTheProcessPath) {
  put(root() / "proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
  put(root() / "sys/fs/cgroup/kubepods/pod1/ctr/memory.max", "8589934592\n");
  const MemoryLimit l = limit();
  EXPECT_EQ(l.bytes, int64_t{8} << 30);
  EXPECT_EQ(l.source, "cgroup memory.max");
}

TEST_F(MemoryLimitTest, CgroupV2AtTheMountRootInAContainer) {
  put(root() / "proc/self/cgroup", "0::/kubepods/pod1/ctr\n");  // not visible inside
  put(root() / "sys/fs/cgroup/memory.max", "4294967296\n");
  EXPECT_EQ(limit().bytes, int64_t{4} << 30);
}

TEST_F(MemoryLimitTest, CgroupV1LimitAndItsUnlimitedValue) {
  put(root() / "proc/self/cgroup", "4:memory:/docker/abc\n1:cpu:/\n");
  put(root() / "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "2147483648\n");
  MemoryLimit l = limit();
  EXPECT_EQ(l.bytes, int64_t{2} << 30);
  EXPECT_EQ(l.source, "cgroup memory.limit_in_bytes");
  put(root() / "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "9223372036854771712\n");
  l = limit();
  EXPECT_EQ(l.source, "MemTotal");
}

TEST_F(MemoryLimitTest, TheSettingWins) {
  put(root() / "proc/self/cgroup", "0::/\n");
  put(root() / "sys/fs/cgroup/memory.max", "4294967296\n");
  const MemoryLimit l = limit(int64_t{1} << 30);
  EXPECT_EQ(l.bytes, int64_t{1} << 30);
  EXPECT_EQ(l.source, "--memory-limit-gb");
}

TEST(ProcessMemoryTest, ResidentMemoryTracksAnAllocation) {
  const int64_t before = resident_bytes();
  ASSERT_GT(before, 0);
  std::vector<char> block(size_t{64} << 20, 1);  // touched: resident
  const int64_t after = resident_bytes();
  EXPECT_GE(after - before, int64_t{60} << 20);
  EXPECT_GE(peak_resident_bytes(), after);
  EXPECT_EQ(block[12345], 1);
}

TEST(ProcessMemoryTest, FormatsBytes) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(int64_t{3} << 20), "3.0 MiB");
  EXPECT_EQ(format_bytes(int64_t{5} << 29), "2.50 GiB");
}

}  // namespace
}  // namespace moeserve
