#include "common/logging.h"

#include <string>

#include "spdlog/sinks/stdout_color_sinks.h"

namespace moeserve {

void init_logging(std::string_view level) {
  // Logs go to stderr so that stdout stays clean for machine-readable output.
  auto logger = spdlog::get("moeserve");
  if (!logger) logger = spdlog::stderr_color_mt("moeserve");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") lvl = spdlog::level::info;
  spdlog::set_level(lvl);
}

}  // namespace moeserve
