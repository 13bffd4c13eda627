// The engine's memory plan: weights, KV cache, activations and the rest of the
// process, checked against the memory limit before anything is allocated,
// then logged with the resident memory measured after loading.
#pragma once

#include <string>

#include "moeserve/engine.h"
#include "moeserve/status.h"

namespace moeserve {

// Fills `limit` and `limit_source` from `limit_gb` (0 = cgroup or machine) and
// fails with one line naming the bytes needed, the parts and the limit when
// the plan does not fit: the host limit, and on a device backend the device
// pool less its headroom too.
Status check_memory_fits(double limit_gb, MemoryUsage& usage);

// What a device pool of `pool` bytes keeps free beyond the plan, for kernel
// workspaces and scratch outside the activation arena: 5 %.
inline int64_t device_headroom(int64_t pool) { return pool / 20; }

// "weights 3.31 GiB (…), KV cache 256.0 MiB (13107 blocks), activations …".
std::string describe_memory(const MemoryUsage& usage);

}  // namespace moeserve
