#include "engine/memory_plan.h"

#include "absl/strings/str_cat.h"
#include "common/process_memory.h"

namespace moeserve {

Status check_memory_fits(double limit_gb, MemoryUsage& usage) {
  const MemoryLimit limit = memory_limit(static_cast<int64_t>(limit_gb * double{1 << 30}));
  usage.limit = limit.bytes;
  usage.limit_source = limit.source;
  if (usage.device_pool > 0 &&
      usage.planned_device() > usage.device_pool - device_headroom(usage.device_pool)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the model does not fit on the device: it needs ", format_bytes(usage.planned_device()),
        " (weights ", format_bytes(usage.weights), ", KV cache ", format_bytes(usage.kv_cache),
        ", activations ", format_bytes(usage.activations), ") and ",
        format_bytes(device_headroom(usage.device_pool)), " headroom, but the device pool is ",
        format_bytes(usage.device_pool),
        "; make the KV cache or the batch smaller, or raise --gpu-memory-fraction"));
  }
  if (limit.bytes == 0 || usage.planned_host() <= limit.bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "the model does not fit: it needs ", format_bytes(usage.planned_host()), " (weights ",
      format_bytes(usage.weights), ", KV cache ", format_bytes(usage.kv_cache), ", activations ",
      format_bytes(usage.activations), ", process ", format_bytes(usage.other),
      ") but the memory limit is ", format_bytes(limit.bytes), " (", limit.source,
      "); make the KV cache or the batch smaller, or raise --memory-limit-gb"));
}

std::string describe_memory(const MemoryUsage& u) {
  return absl::StrCat("weights ", u.weights_detail, ", KV cache ", format_bytes(u.kv_cache),
                      ", activations ", format_bytes(u.activations), " (bound), process ",
                      format_bytes(u.other), "; planned ", format_bytes(u.planned_host()),
                      u.device_pool > 0
                          ? absl::StrCat(" on the host and ", format_bytes(u.planned_device()),
                                         " of the ", format_bytes(u.device_pool), " device pool")
                          : std::string(),
                      " of ", u.limit > 0 ? format_bytes(u.limit) : std::string("no limit"), " (",
                      u.limit_source, "); resident after load ", format_bytes(u.rss_after_load));
}

}  // namespace moeserve
