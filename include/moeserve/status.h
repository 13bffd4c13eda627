// Errors cross the public API as Abseil Status / StatusOr.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moeserve {

using Status = absl::Status;
template <typename T>
using StatusOr = absl::StatusOr<T>;

}  // namespace moeserve
