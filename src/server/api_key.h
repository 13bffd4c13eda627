// The API-key check shared by the HTTP and gRPC front ends.
#pragma once

#include <string_view>

namespace moeserve {

// True when `authorization` (an HTTP header or gRPC metadata value) is exactly
// "Bearer <api_key>". The key is compared without an early exit over its bytes, so the time
// taken does not tell how much of a guessed key was right.
bool bearer_matches(std::string_view authorization, std::string_view api_key);

}  // namespace moeserve
