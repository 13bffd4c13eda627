#include "server/api_key.h"

namespace moeserve {

bool bearer_matches(std::string_view authorization, std::string_view api_key) {
  constexpr std::string_view kScheme = "Bearer ";
  if (!authorization.starts_with(kScheme)) return false;
  const std::string_view given = authorization.substr(kScheme.size());
  if (given.size() != api_key.size()) return false;
  unsigned diff = 0;
  for (size_t i = 0; i < api_key.size(); ++i) {
    diff |= static_cast<unsigned char>(given[i]) ^ static_cast<unsigned char>(api_key[i]);
  }
  return diff == 0;
}

}  // namespace moeserve
