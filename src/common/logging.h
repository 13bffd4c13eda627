// Logging goes through spdlog; this header fixes the project-wide logger setup.
#pragma once

#include <string_view>

#include "spdlog/spdlog.h"

namespace moeserve {

// Sets the global level from a name ("trace" … "off"); unknown names keep "info".
void init_logging(std::string_view level);

}  // namespace moeserve

#define MS_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define MS_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define MS_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
#define MS_LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
