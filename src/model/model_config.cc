#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <sstream>

namespace moeserve {
namespace {

using nlohmann::json;

// Reads typed fields of one JSON object. The first error is kept and later
// reads return defaults, so a parser can read every field and check status()
// once. `source` names the file and `object_path` the enclosing object in messages.
class FieldReader {
 public:
  FieldReader(const json& obj, std::string source, std::string object_path = "")
      : obj_(obj), source_(std::move(source)), object_path_(std::move(object_path)) {}

  template <typename... Parts>
  void fail(const Parts&... parts) {
    if (status_.ok()) {
      status_ = absl::InvalidArgumentError(absl::StrCat(source_, ": ", parts...));
    }
  }
  const Status& status() const { return status_; }
  std::string name(std::string_view key) const { return object_path_ + std::string(key); }

  // Absent or null → nullptr.
  const json* find(std::string_view key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }

  std::optional<int> opt_int(std::string_view key) {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number_integer()) {
      fail("field '", name(key), "' must be an integer, got ", v->type_name(), " ", v->dump());
      return std::nullopt;
    }
    const bool fits = v->is_number_unsigned()
                          ? v->get<uint64_t>() <= uint64_t{std::numeric_limits<int>::max()}
                          : v->get<int64_t>() >= std::numeric_limits<int>::min() &&
                                v->get<int64_t>() <= std::numeric_limits<int>::max();
    if (!fits) {
      fail("field '", name(key), "' = ", v->dump(), " is out of range");
      return std::nullopt;
    }
    return v->get<int>();
  }
  int int_or(std::string_view key, int def) { return opt_int(key).value_or(def); }
  int req_int(std::string_view key) {
    std::optional<int> v = opt_int(key);
    if (!v) missing(key);
    return v.value_or(0);
  }

  std::optional<double> opt_number(std::string_view key) {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) {
      fail("field '", name(key), "' must be a number, got ", v->type_name(), " ", v->dump());
      return std::nullopt;
    }
    return v->get<double>();
  }
  double number_or(std::string_view key, double def) { return opt_number(key).value_or(def); }
  double req_number(std::string_view key) {
    std::optional<double> v = opt_number(key);
    if (!v) missing(key);
    return v.value_or(0.0);
  }

  bool bool_or(std::string_view key, bool def) {
    const json* v = find(key);
    if (v == nullptr) return def;
    if (!v->is_boolean()) {
      fail("field '", name(key), "' must be a boolean, got ", v->type_name(), " ", v->dump());
      return def;
    }
    return v->get<bool>();
  }

  std::optional<std::string> opt_string(std::string_view key) {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) {
      fail("field '", name(key), "' must be a string, got ", v->type_name(), " ", v->dump());
      return std::nullopt;
    }
    return v->get<std::string>();
  }

  int req_positive_int(std::string_view key) {
    const int v = req_int(key);
    check_positive(key, v);
    return v;
  }

  // Keeps the first error of a reader for a nested object.
  void absorb(const Status& s) {
    if (status_.ok() && !s.ok()) status_ = s;
  }

  void missing(std::string_view key) { fail("missing required field '", name(key), "'"); }

  void check_positive(std::string_view key, double v) {
    if (!(v > 0)) fail("field '", name(key), "' must be positive, got ", v);
  }
  void check_non_negative(std::string_view key, int v) {
    if (v < 0) fail("field '", name(key), "' must not be negative, got ", v);
  }

 private:
  const json& obj_;
  std::string source_;
  std::string object_path_;
  Status status_;
};

double yarn_mscale(double factor, double m) {
  return factor <= 1.0 ? 1.0 : 0.1 * m * std::log(factor) + 1.0;
}

std::string_view topk_method_name(TopkMethod m) {
  switch (m) {
    case TopkMethod::kGreedy: return "greedy";
    case TopkMethod::kGroupLimitedGreedy: return "group_limited_greedy";
    case TopkMethod::kNoauxTc: return "noaux_tc";
  }
  return "?";
}

std::string_view scoring_func_name(ScoringFunc s) {
  switch (s) {
    case ScoringFunc::kSoftmax: return "softmax";
    case ScoringFunc::kSigmoid: return "sigmoid";
  }
  return "?";
}

void parse_architecture(FieldReader& r, ModelConfig& c) {
  const json* archs = r.find("architectures");
  if (archs == nullptr) return r.missing("architectures");
  if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
    return r.fail("field 'architectures' must be a non-empty array of strings, got ",
                  archs->dump());
  }
  const std::string arch = (*archs)[0].get<std::string>();
  if (arch == "DeepseekV2ForCausalLM") {
    c.architecture = Architecture::kDeepseekV2;
  } else if (arch == "DeepseekV3ForCausalLM") {
    c.architecture = Architecture::kDeepseekV3;
  } else {
    r.fail("unknown architecture '", arch,
           "' (supported: DeepseekV2ForCausalLM, DeepseekV3ForCausalLM)");
  }
}

void parse_routing(FieldReader& r, ModelConfig& c) {
  c.n_routed_experts = r.opt_int("n_routed_experts");
  c.n_shared_experts = r.int_or("n_shared_experts", 0);
  c.n_group = r.int_or("n_group", 1);
  c.topk_group = r.int_or("topk_group", 1);
  c.norm_topk_prob = r.bool_or("norm_topk_prob", false);
  c.routed_scaling_factor = r.number_or("routed_scaling_factor", 1.0);
  c.first_k_dense_replace = r.int_or("first_k_dense_replace", 0);
  c.moe_layer_freq = r.int_or("moe_layer_freq", 1);

  const std::string method = r.opt_string("topk_method").value_or("greedy");
  if (method == "greedy") {
    c.topk_method = TopkMethod::kGreedy;
  } else if (method == "group_limited_greedy") {
    c.topk_method = TopkMethod::kGroupLimitedGreedy;
  } else if (method == "noaux_tc") {
    c.topk_method = TopkMethod::kNoauxTc;
  } else {
    r.fail("unknown topk_method '", method,
           "' (supported: greedy, group_limited_greedy, noaux_tc)");
  }
  const std::string scoring = r.opt_string("scoring_func").value_or("softmax");
  if (scoring == "softmax") {
    c.scoring_func = ScoringFunc::kSoftmax;
  } else if (scoring == "sigmoid") {
    c.scoring_func = ScoringFunc::kSigmoid;
  } else {
    r.fail("unknown scoring_func '", scoring, "' (supported: softmax, sigmoid)");
  }

  r.check_non_negative("n_shared_experts", c.n_shared_experts);
  r.check_non_negative("first_k_dense_replace", c.first_k_dense_replace);
  r.check_positive("moe_layer_freq", c.moe_layer_freq);
  if (!c.n_routed_experts) {
    c.num_experts_per_tok = r.int_or("num_experts_per_tok", 0);
    return;  // dense model: the routing fields are unused
  }
  const int n_experts = *c.n_routed_experts;
  r.check_positive("n_routed_experts", n_experts);
  c.moe_intermediate_size = r.req_positive_int("moe_intermediate_size");
  c.num_experts_per_tok = r.req_positive_int("num_experts_per_tok");
  r.check_positive("n_group", c.n_group);
  r.check_positive("topk_group", c.topk_group);
  r.check_positive("routed_scaling_factor", c.routed_scaling_factor);
  if (!r.status().ok()) return;
  if (n_experts % c.n_group != 0) {
    return r.fail("n_routed_experts ", n_experts, " is not divisible by n_group ", c.n_group);
  }
  if (c.topk_group > c.n_group) {
    return r.fail("topk_group ", c.topk_group, " is larger than n_group ", c.n_group);
  }
  if (c.num_experts_per_tok > n_experts) {
    return r.fail("num_experts_per_tok ", c.num_experts_per_tok,
                  " is larger than n_routed_experts ", n_experts);
  }
  const int per_group = n_experts / c.n_group;
  if (c.topk_method != TopkMethod::kGreedy && c.num_experts_per_tok > c.topk_group * per_group) {
    return r.fail("num_experts_per_tok ", c.num_experts_per_tok, " is larger than the ",
                  c.topk_group * per_group, " experts in the topk_group ", c.topk_group,
                  " groups kept");
  }
  if (c.topk_method == TopkMethod::kNoauxTc && c.n_group > 1 && per_group < 2) {
    r.fail("noaux_tc ranks groups by the sum of their top-2 experts, but n_routed_experts ",
           n_experts, " / n_group ", c.n_group, " leaves ", per_group, " per group");
  }
}

void parse_rope_scaling(FieldReader& parent, const std::string& source, ModelConfig& c) {
  const json* rs = parent.find("rope_scaling");
  if (rs == nullptr) return;
  if (!rs->is_object()) {
    return parent.fail("field 'rope_scaling' must be an object or null, got ", rs->type_name());
  }
  FieldReader r(*rs, source, "rope_scaling.");
  // Unknown keys could change the rotation (e.g. attention_factor): refuse them.
  for (const auto& [key, v] : rs->items()) {
    static constexpr std::string_view kKnown[] = {
        "type",      "rope_type", "factor", "original_max_position_embeddings",
        "beta_fast", "beta_slow", "mscale", "mscale_all_dim"};
    if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown)) {
      return parent.fail("field 'rope_scaling' has unsupported key '", key, "'");
    }
  }
  const std::optional<std::string> type = r.opt_string("type");
  const std::optional<std::string> rope_type = r.opt_string("rope_type");
  if (!r.status().ok()) return parent.absorb(r.status());
  if (!type && !rope_type) return parent.fail("field 'rope_scaling' has no 'type' or 'rope_type'");
  for (const std::optional<std::string>& t : {type, rope_type}) {
    if (t && *t != "yarn") {
      return parent.fail("rope_scaling type '", *t, "' is not supported (only 'yarn')");
    }
  }
  YarnScaling y;
  y.factor = r.req_number("factor");
  y.original_max_position_embeddings = r.req_int("original_max_position_embeddings");
  y.beta_fast = r.number_or("beta_fast", 32.0);
  y.beta_slow = r.number_or("beta_slow", 1.0);
  y.mscale = r.number_or("mscale", 1.0);
  y.mscale_all_dim = r.number_or("mscale_all_dim", 0.0);
  r.check_positive("factor", y.factor);
  r.check_positive("original_max_position_embeddings", y.original_max_position_embeddings);
  r.check_positive("beta_fast", y.beta_fast);
  r.check_positive("beta_slow", y.beta_slow);
  if (r.status().ok() && y.beta_fast < y.beta_slow) {
    r.fail("rope_scaling.beta_fast ", y.beta_fast, " is smaller than rope_scaling.beta_slow ",
           y.beta_slow);
  }
  if (!r.status().ok()) return parent.absorb(r.status());
  c.rope_scaling = y;
}

void parse_quantization(FieldReader& parent, const std::string& source, ModelConfig& c) {
  const json* q = parent.find("quantization_config");
  if (q == nullptr) return;
  if (!q->is_object()) {
    return parent.fail("field 'quantization_config' must be an object or null, got ",
                       q->type_name());
  }
  FieldReader r(*q, source, "quantization_config.");
  const std::optional<std::string> method = r.opt_string("quant_method");
  const std::optional<std::string> activation = r.opt_string("activation_scheme");
  const std::optional<std::string> fmt = r.opt_string("fmt");
  if (!r.status().ok()) return parent.absorb(r.status());
  if (!method) return parent.fail("missing required field 'quantization_config.quant_method'");
  if (*method != "fp8") {
    return parent.fail("quantization_config.quant_method '", *method,
                       "' is not supported (only 'fp8' block quantization)");
  }
  // Static activation scales and other FP8 formats would need extra tensors/kernels.
  if (activation && *activation != "dynamic") {
    return parent.fail("quantization_config.activation_scheme '", *activation,
                       "' is not supported (only 'dynamic')");
  }
  if (fmt && *fmt != "e4m3") {
    return parent.fail("quantization_config.fmt '", *fmt, "' is not supported (only 'e4m3')");
  }
  const json* bs = r.find("weight_block_size");
  if (bs == nullptr)
    return parent.fail("missing required field 'quantization_config.weight_block_size'");
  if (!bs->is_array() || bs->size() != 2 || !(*bs)[0].is_number_integer() ||
      !(*bs)[1].is_number_integer() || (*bs)[0].get<int64_t>() <= 0 ||
      (*bs)[1].get<int64_t>() <= 0 || (*bs)[0].get<int64_t>() > (1 << 20) ||
      (*bs)[1].get<int64_t>() > (1 << 20)) {
    return parent.fail(
        "field 'quantization_config.weight_block_size' must be [block_n, block_k] "
        "with positive integers, got ",
        bs->dump());
  }
  c.quantization = Fp8BlockQuant{(*bs)[0].get<int>(), (*bs)[1].get<int>()};
}

}  // namespace

std::string_view architecture_name(Architecture a) {
  switch (a) {
    case Architecture::kDeepseekV2: return "DeepseekV2";
    case Architecture::kDeepseekV3: return "DeepseekV3";
  }
  return "?";
}

StatusOr<ModelConfig> parse_model_config(const nlohmann::json& json, std::string_view source_name) {
  const std::string source(source_name);
  if (!json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": must be a JSON object, got ", json.type_name()));
  }
  FieldReader r(json, source);
  ModelConfig c;
  parse_architecture(r, c);

  c.vocab_size = r.req_positive_int("vocab_size");
  c.hidden_size = r.req_positive_int("hidden_size");
  c.intermediate_size = r.req_positive_int("intermediate_size");
  c.num_hidden_layers = r.req_positive_int("num_hidden_layers");
  c.num_attention_heads = r.req_positive_int("num_attention_heads");
  c.q_lora_rank = r.opt_int("q_lora_rank");
  if (c.q_lora_rank) r.check_positive("q_lora_rank", *c.q_lora_rank);
  c.kv_lora_rank = r.req_positive_int("kv_lora_rank");
  c.qk_nope_head_dim = r.req_positive_int("qk_nope_head_dim");
  c.qk_rope_head_dim = r.req_positive_int("qk_rope_head_dim");
  c.v_head_dim = r.req_positive_int("v_head_dim");
  c.max_position_embeddings = r.req_positive_int("max_position_embeddings");
  c.rope_theta = r.number_or("rope_theta", 10000.0);
  c.rms_norm_eps = r.number_or("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = r.bool_or("tie_word_embeddings", false);
  c.bos_token_id = r.opt_int("bos_token_id");
  c.eos_token_id = r.opt_int("eos_token_id");
  c.num_nextn_predict_layers = r.int_or("num_nextn_predict_layers", 0);

  if (r.status().ok() && c.qk_rope_head_dim % 2 != 0) {
    r.fail("field 'qk_rope_head_dim' must be even (rotary pairs), got ", c.qk_rope_head_dim);
  }
  r.check_positive("rope_theta", c.rope_theta);
  r.check_positive("rms_norm_eps", c.rms_norm_eps);
  r.check_non_negative("num_nextn_predict_layers", c.num_nextn_predict_layers);

  // Only what the kernels implement: SiLU-gated FFNs and bias-free attention.
  if (std::optional<std::string> act = r.opt_string("hidden_act"); act && *act != "silu") {
    r.fail("hidden_act '", *act, "' is not supported (only 'silu')");
  }
  if (r.bool_or("attention_bias", false)) r.fail("attention_bias true is not supported");

  parse_routing(r, c);
  parse_rope_scaling(r, source, c);
  parse_quantization(r, source, c);
  RETURN_IF_ERROR(r.status());
  return c;
}

StatusOr<ModelConfig> load_model_config(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot be read"));
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON: ", e.what()));
  }
  return parse_model_config(json, path);
}

bool ModelConfig::is_moe_layer(int i) const {
  return n_routed_experts.has_value() && i >= first_k_dense_replace && i % moe_layer_freq == 0;
}

GateParams ModelConfig::gate_params() const {
  GateParams p;
  p.scoring = scoring_func;
  p.method = topk_method;
  p.n_group = n_group;
  p.topk_group = topk_group;
  p.top_k = num_experts_per_tok;
  p.norm_topk_prob = norm_topk_prob;
  p.routed_scaling_factor = static_cast<float>(routed_scaling_factor);
  return p;
}

float ModelConfig::softmax_scale() const {
  double scale = 1.0 / std::sqrt(static_cast<double>(qk_nope_head_dim + qk_rope_head_dim));
  if (rope_scaling && rope_scaling->mscale_all_dim != 0.0 && rope_scaling->factor > 1.0) {
    const double m = yarn_mscale(rope_scaling->factor, rope_scaling->mscale_all_dim);
    scale *= m * m;
  }
  return static_cast<float>(scale);
}

std::string ModelConfig::summary() const {
  std::string s =
      absl::StrCat(std::string(architecture_name(architecture)), ": layers=", num_hidden_layers,
                   " hidden=", hidden_size, " heads=", num_attention_heads,
                   " q_lora=", q_lora_rank ? absl::StrCat(*q_lora_rank) : std::string("none"),
                   " kv_lora=", kv_lora_rank, " qk=", qk_nope_head_dim, "+", qk_rope_head_dim,
                   " v=", v_head_dim, " vocab=", vocab_size, " ffn=", intermediate_size);
  if (n_routed_experts) {
    absl::StrAppend(&s, " experts=", *n_routed_experts, "x", moe_intermediate_size, " (+",
                    n_shared_experts, " shared, top-", num_experts_per_tok, ", groups ", topk_group,
                    "/", n_group, ", ", std::string(topk_method_name(topk_method)), ", ",
                    std::string(scoring_func_name(scoring_func)), norm_topk_prob ? ", norm" : "",
                    ", scale ", routed_scaling_factor, ") dense_layers=", first_k_dense_replace);
  } else {
    absl::StrAppend(&s, " dense");
  }
  absl::StrAppend(&s, " rope_theta=", rope_theta);
  if (rope_scaling) {
    absl::StrAppend(&s, " yarn(factor ", rope_scaling->factor, ", orig ",
                    rope_scaling->original_max_position_embeddings, ")");
  }
  if (quantization) {
    absl::StrAppend(&s, " fp8[", quantization->block_n, "x", quantization->block_k, "]");
  }
  absl::StrAppend(&s, " max_pos=", max_position_embeddings, " softmax_scale=", softmax_scale());
  return s;
}

}  // namespace moeserve
