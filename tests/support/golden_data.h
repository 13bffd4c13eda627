// The golden outputs of the test checkpoints (tests/reference/, the PyTorch
// reference): a prompt, its prefill logits, 16 greedy decode tokens and their
// logits. Shared by the golden tests and the whole-model CUDA test.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moeserve {

struct Golden {
  std::vector<int32_t> prompt_ids;
  std::vector<std::vector<float>> prefill_logits;  // [P][vocab]
  std::vector<int32_t> decode_ids;                 // [16]
  std::vector<std::vector<float>> decode_logits;   // [16][vocab]
};

// Every checkpoint with a golden: the tiny ones (tests/data/tiny/<name>) and
// "bundled" (models/tiny).
const std::vector<std::string>& golden_checkpoints();
// The model directory of `name`.
std::string golden_model_dir(const std::string& name);
// Its golden outputs; aborts when they cannot be read (the test data is broken).
Golden load_golden(const std::string& name);

// max |got - want| / max |want| over one row.
double rel_error(const std::vector<float>& got, const std::vector<float>& want);

// (top - second) / max |row| of a logit row: how far apart the two most likely
// tokens are, relative to the row's largest magnitude.
double top2_margin(const std::vector<float>& row);

}  // namespace moeserve
