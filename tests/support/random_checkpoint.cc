#include "tests/support/random_checkpoint.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/dtype.h"
#include "model/safetensors_writer.h"
#include "tests/support/xorshift.h"
#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

constexpr int kBlock = 128;  // FP8 scale block, rows and columns

struct Matrix {
  std::string name;
  int64_t rows, cols;
  bool quantizable;  // FP8 when the spec asks for it
};

std::vector<Matrix> matrices(const RandomCheckpointSpec& s) {
  const int64_t d = s.hidden_size, h = s.num_attention_heads;
  const int64_t qk = s.qk_nope_head_dim + s.qk_rope_head_dim;
  std::vector<Matrix> m = {{"model.embed_tokens.weight", s.vocab_size, d, false},
                           {"lm_head.weight", s.vocab_size, d, false}};
  for (int i = 0; i < s.num_hidden_layers; ++i) {
    const std::string a = "model.layers." + std::to_string(i) + ".self_attn.";
    if (s.q_lora_rank > 0) {
      m.push_back({a + "q_a_proj.weight", s.q_lora_rank, d, true});
      m.push_back({a + "q_b_proj.weight", h * qk, s.q_lora_rank, true});
    } else {
      m.push_back({a + "q_proj.weight", h * qk, d, true});
    }
    m.push_back({a + "kv_a_proj_with_mqa.weight", s.kv_lora_rank + s.qk_rope_head_dim, d, true});
    m.push_back(
        {a + "kv_b_proj.weight", h * (s.qk_nope_head_dim + s.v_head_dim), s.kv_lora_rank, true});
    m.push_back({a + "o_proj.weight", d, h * s.v_head_dim, true});
    const std::string p = "model.layers." + std::to_string(i) + ".mlp.";
    auto swiglu = [&](const std::string& pre, int64_t f) {
      m.push_back({pre + "gate_proj.weight", f, d, true});
      m.push_back({pre + "up_proj.weight", f, d, true});
      m.push_back({pre + "down_proj.weight", d, f, true});
    };
    if (i < s.first_k_dense_replace) {
      swiglu(p, s.intermediate_size);
      continue;
    }
    m.push_back({p + "gate.weight", s.n_routed_experts, d, false});
    for (int e = 0; e < s.n_routed_experts; ++e) {
      swiglu(p + "experts." + std::to_string(e) + ".", s.moe_intermediate_size);
    }
    if (s.n_shared_experts > 0) {
      swiglu(p + "shared_experts.", int64_t{s.moe_intermediate_size} * s.n_shared_experts);
    }
  }
  return m;
}

nlohmann::json config_json(const RandomCheckpointSpec& s) {
  nlohmann::json c = {
      {"architectures", {"DeepseekV2ForCausalLM"}},
      {"model_type", "deepseek_v2"},
      {"bos_token_id", 0},
      {"eos_token_id", 1},
      {"first_k_dense_replace", s.first_k_dense_replace},
      {"hidden_act", "silu"},
      {"hidden_size", s.hidden_size},
      {"intermediate_size", s.intermediate_size},
      {"kv_lora_rank", s.kv_lora_rank},
      {"max_position_embeddings", s.max_position_embeddings},
      {"moe_intermediate_size", s.moe_intermediate_size},
      {"moe_layer_freq", 1},
      {"n_group", 1},
      {"n_routed_experts", s.n_routed_experts},
      {"n_shared_experts", s.n_shared_experts},
      {"norm_topk_prob", false},
      {"num_attention_heads", s.num_attention_heads},
      {"num_experts_per_tok", s.num_experts_per_tok},
      {"num_hidden_layers", s.num_hidden_layers},
      {"num_key_value_heads", s.num_attention_heads},
      {"q_lora_rank", s.q_lora_rank > 0 ? nlohmann::json(s.q_lora_rank) : nlohmann::json()},
      {"qk_nope_head_dim", s.qk_nope_head_dim},
      {"qk_rope_head_dim", s.qk_rope_head_dim},
      {"rms_norm_eps", 1e-6},
      {"rope_theta", 10000},
      {"routed_scaling_factor", 1.0},
      {"scoring_func", "softmax"},
      {"tie_word_embeddings", false},
      {"topk_group", 1},
      {"topk_method", "greedy"},
      {"torch_dtype", "bfloat16"},
      {"v_head_dim", s.v_head_dim},
      {"vocab_size", s.vocab_size},
  };
  if (s.fp8) {
    c["quantization_config"] = {{"activation_scheme", "dynamic"},
                                {"fmt", "e4m3"},
                                {"quant_method", "fp8"},
                                {"weight_block_size", {kBlock, kBlock}}};
  }
  return c;
}

}  // namespace

RandomCheckpointSpec v2_lite_spec(int n_layers) {
  RandomCheckpointSpec s;
  s.vocab_size = 102400;
  s.hidden_size = 2048;
  s.intermediate_size = 10944;
  s.moe_intermediate_size = 1408;
  s.num_hidden_layers = n_layers;
  s.first_k_dense_replace = 1;
  s.num_attention_heads = 16;
  s.q_lora_rank = 0;
  s.kv_lora_rank = 512;
  s.qk_nope_head_dim = 128;
  s.qk_rope_head_dim = 64;
  s.v_head_dim = 128;
  s.n_routed_experts = 64;
  s.n_shared_experts = 2;
  s.num_experts_per_tok = 6;
  s.max_position_embeddings = 4096;
  return s;
}

StatusOr<int64_t> write_random_checkpoint(const std::string& dir,
                                          const RandomCheckpointSpec& spec) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat(dir, ": ", ec.message()));
  {
    std::ofstream out(fs::path(dir) / "config.json");
    out << config_json(spec).dump(2) << "\n";
    if (!out) return absl::InternalError(absl::StrCat(dir, "/config.json: write failed"));
  }
  const std::vector<Matrix> mats = matrices(spec);
  std::vector<SafetensorsWriter::Entry> entries;
  auto norm = [&](const std::string& name, int64_t n) {
    entries.push_back({name, DType::kBF16, {n}});
  };
  norm("model.norm.weight", spec.hidden_size);
  for (int i = 0; i < spec.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    norm(p + "input_layernorm.weight", spec.hidden_size);
    norm(p + "post_attention_layernorm.weight", spec.hidden_size);
    norm(p + "self_attn.kv_a_layernorm.weight", spec.kv_lora_rank);
    if (spec.q_lora_rank > 0) norm(p + "self_attn.q_a_layernorm.weight", spec.q_lora_rank);
  }
  for (const Matrix& m : mats) {
    const bool fp8 = spec.fp8 && m.quantizable;
    entries.push_back({m.name, fp8 ? DType::kFP8E4M3 : DType::kBF16, {m.rows, m.cols}});
    if (fp8) {
      entries.push_back({m.name + "_scale_inv",
                         DType::kF32,
                         {(m.rows + kBlock - 1) / kBlock, (m.cols + kBlock - 1) / kBlock}});
    }
  }
  const std::string path = (fs::path(dir) / "model.safetensors").string();
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> w, SafetensorsWriter::create(path, entries));
  Xorshift64Star rng{spec.seed * 0x9E3779B97F4A7C15ull + 7};
  std::vector<uint8_t> buf;
  for (const SafetensorsWriter::Entry& e : entries) {
    int64_t n = 1;
    for (int64_t dim : e.shape) n *= dim;
    const bool is_norm = e.shape.size() == 1;
    buf.resize(static_cast<size_t>(dtype_bytes(e.dtype, n)));
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t r = rng();
      const float u = static_cast<float>(r >> 40) / static_cast<float>(1 << 24) - 0.5f;  // ±0.5
      if (e.dtype == DType::kFP8E4M3) {
        uint8_t code = static_cast<uint8_t>(r >> 8);
        if ((code & 0x7F) == 0x7F) code ^= 0x01;  // never the NaN code
        // Keep magnitudes moderate: exponent field at most 11 (|value| < 32).
        if (((code >> 3) & 0xF) > 11) code = static_cast<uint8_t>(code & 0xDF);
        buf[static_cast<size_t>(i)] = code;
      } else if (e.dtype == DType::kF32) {
        // weight_scale_inv: about 0.04 / 32, so weights come out near ±0.04.
        const float v = (1.0f + u) * 1.25e-3f;
        std::memcpy(&buf[static_cast<size_t>(i) * 4], &v, 4);
      } else {
        const float v = is_norm ? 1.0f + 0.2f * u : 0.08f * u;
        const uint16_t b = f32_to_bf16(v);
        std::memcpy(&buf[static_cast<size_t>(i) * 2], &b, 2);
      }
    }
    RETURN_IF_ERROR(w->write(buf.data(), static_cast<int64_t>(buf.size())));
  }
  RETURN_IF_ERROR(w->close());
  return static_cast<int64_t>(fs::file_size(path));
}

}  // namespace moeserve
