#include "tests/support/golden_data.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "common/status.h"
#include "model/safetensors.h"

namespace moeserve {
namespace {

std::string golden_path(const std::string& name) {
  if (name == "bundled")
    return std::string(MOESERVE_SOURCE_DIR) + "/tests/data/models_tiny_golden.safetensors";
  return golden_model_dir(name) + "/golden.safetensors";
}

std::vector<std::vector<float>> rows_of(const Tensor& t) {
  const std::vector<float> v = to_f32_vector(t);
  const int64_t n = t.dim(0), width = t.dim(1);
  std::vector<std::vector<float>> rows;
  for (int64_t r = 0; r < n; ++r)
    rows.emplace_back(v.begin() + r * width, v.begin() + (r + 1) * width);
  return rows;
}

std::vector<int32_t> ids_of(const Tensor& t) {
  MS_CHECK(t.dtype() == DType::kI32, "golden ids are ", t.describe());
  return {t.data<int32_t>(), t.data<int32_t>() + t.numel()};
}

}  // namespace

const std::vector<std::string>& golden_checkpoints() {
  static const std::vector<std::string> names = {
      "v3_tiny",      "v2_lite_tiny", "v2_tiny", "v3_fp8_tiny", "v2_yarn_mscale_tiny",
      "v3_bf16_tiny", "bundled"};
  return names;
}

std::string golden_model_dir(const std::string& name) {
  if (name == "bundled") return std::string(MOESERVE_SOURCE_DIR) + "/models/tiny";
  return std::string(MOESERVE_SOURCE_DIR) + "/tests/data/tiny/" + name;
}

Golden load_golden(const std::string& name) {
  auto file = SafetensorsFile::open(golden_path(name));
  MS_CHECK(file.ok(), file.status().ToString());
  auto tensor = [&](const char* key) {
    auto t = (*file)->tensor(key);
    MS_CHECK(t.ok(), golden_path(name), ": ", t.status().ToString());
    return *t;
  };
  Golden g;
  g.prompt_ids = ids_of(tensor("prompt_ids"));
  g.prefill_logits = rows_of(tensor("prefill_logits"));
  g.decode_ids = ids_of(tensor("decode_ids"));
  g.decode_logits = rows_of(tensor("decode_logits"));
  return g;
}

double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  MS_CHECK(got.size() == want.size(), "rows of ", got.size(), " and ", want.size(), " values");
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(got[i]) - want[i]));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(want[i])));
  }
  return max_diff / std::max(max_ref, 1e-30);
}

double top2_margin(const std::vector<float>& row) {
  std::vector<float> top = row;
  std::partial_sort(top.begin(), top.begin() + 2, top.end(), std::greater<>());
  double max_abs = 0;
  for (float v : row) max_abs = std::max(max_abs, std::fabs(static_cast<double>(v)));
  return (top[0] - top[1]) / std::max(max_abs, 1e-30);
}

}  // namespace moeserve
