// This process's memory as the kernel counts it, and the limit it runs under.
#pragma once

#include <cstdint>
#include <string>

namespace moeserve {

// Resident memory now (VmRSS) and its peak so far (VmHWM), in bytes; 0 when
// /proc/self/status cannot be read.
int64_t resident_bytes();
int64_t peak_resident_bytes();

struct MemoryLimit {
  int64_t bytes = 0;   // 0 when nothing limits the process (then `source` says so)
  std::string source;  // "--memory-limit-gb", "cgroup memory.max", "MemTotal", …
};

// The memory this process may use: `configured_bytes` when > 0 (the
// --memory-limit-gb setting), else the cgroup's limit (v2 memory.max or v1
// memory.limit_in_bytes, as in a container), else the machine's MemTotal.
// `root` prefixes every /proc and /sys path read (tests give a fake tree).
MemoryLimit memory_limit(int64_t configured_bytes, const std::string& root = "");

// "3.31 GiB", "120.0 MiB", "512 B".
std::string format_bytes(int64_t bytes);

}  // namespace moeserve
