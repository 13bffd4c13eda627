#include "common/process_memory.h"

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace moeserve {
namespace {

// A "Name:   123 kB" line of a /proc file, in bytes; 0 if absent.
int64_t proc_kib_field(const std::string& path, const std::string& field) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) != 0) continue;
    std::istringstream rest(line.substr(field.size() + 1));
    int64_t kib = 0;
    rest >> kib;
    return kib * 1024;
  }
  return 0;
}

// A cgroup limit file's value; 0 for "max", unlimited (v1 writes a number near
// 2^63) or unreadable.
int64_t read_limit(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return 0;
  int64_t v = 0;
  if (!absl::SimpleAtoi(text, &v) || v <= 0 || v >= (int64_t{1} << 60)) return 0;
  return v;
}

// The cgroup path of this process for a v2 ("0::") or v1 memory controller line.
std::string cgroup_path(const std::string& root, bool v2) {
  std::ifstream in(root + "/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    if ((v2 && line.rfind("0::", 0) == 0) || (!v2 && controllers == "memory")) {
      return line.substr(b + 1);
    }
  }
  return "";
}

}  // namespace

int64_t resident_bytes() { return proc_kib_field("/proc/self/status", "VmRSS"); }
int64_t peak_resident_bytes() { return proc_kib_field("/proc/self/status", "VmHWM"); }

MemoryLimit memory_limit(int64_t configured_bytes, const std::string& root) {
  if (configured_bytes > 0) return {configured_bytes, "--memory-limit-gb"};
  // A container sees its own cgroup either at its path or as the mount's root.
  const std::string v2 = cgroup_path(root, true), v1 = cgroup_path(root, false);
  const std::string fs = root + "/sys/fs/cgroup";
  for (const std::string& p : {fs + v2 + "/memory.max", fs + "/memory.max"}) {
    if (const int64_t v = read_limit(p); v > 0) return {v, "cgroup memory.max"};
  }
  for (const std::string& p :
       {fs + "/memory" + v1 + "/memory.limit_in_bytes", fs + "/memory/memory.limit_in_bytes"}) {
    if (const int64_t v = read_limit(p); v > 0) return {v, "cgroup memory.limit_in_bytes"};
  }
  if (const int64_t total = proc_kib_field(root + "/proc/meminfo", "MemTotal"); total > 0) {
    return {total, "MemTotal"};
  }
  return {0, "no limit found"};
}

std::string format_bytes(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= double{1 << 30}) return absl::StrFormat("%.2f GiB", b / double{1 << 30});
  if (b >= double{1 << 20}) return absl::StrFormat("%.1f MiB", b / double{1 << 20});
  if (b >= 1024) return absl::StrFormat("%.1f KiB", b / 1024);
  return absl::StrFormat("%d B", bytes);
}

}  // namespace moeserve
