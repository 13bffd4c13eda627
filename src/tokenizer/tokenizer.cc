#include "tokenizer/tokenizer.h"

#include <fstream>
#include <sstream>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer_json.h"
#include "tokenizer/unicode.h"

namespace moeserve {
namespace {

using namespace tokenizer_json;

StatusOr<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(tokenizer_json::str_cat("cannot open ", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

StatusOr<Json> parse_json(std::string_view text, std::string_view what) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return absl::InvalidArgumentError(tokenizer_json::str_cat(what, " is not valid JSON"));
  return j;
}

StatusOr<std::vector<AddedToken>> parse_added_tokens(const Json& root) {
  std::vector<AddedToken> out;
  const Json* list = find(root, "added_tokens");
  if (list == nullptr) return out;
  if (!list->is_array()) return field_error("added_tokens", "must be an array");
  for (size_t i = 0; i < list->size(); ++i) {
    const Json& t = (*list)[i];
    std::string p = index("added_tokens", i);
    AddedToken tok;
    ASSIGN_OR_RETURN(int64_t id, get_int_or(t, p, "id", -1));
    if (id < 0 || id > kMaxTokenId)
      return field_error(child(p, "id"),
                         absl::StrCat("must be an integer id in [0, ", kMaxTokenId, "]"));
    tok.id = static_cast<int32_t>(id);
    ASSIGN_OR_RETURN(tok.content, get_string(t, p, "content"));
    if (tok.content.empty()) return field_error(child(p, "content"), "must not be empty");
    ASSIGN_OR_RETURN(tok.special, get_bool_or(t, p, "special", false));
    ASSIGN_OR_RETURN(tok.lstrip, get_bool_or(t, p, "lstrip", false));
    ASSIGN_OR_RETURN(tok.rstrip, get_bool_or(t, p, "rstrip", false));
    ASSIGN_OR_RETURN(tok.single_word, get_bool_or(t, p, "single_word", false));
    ASSIGN_OR_RETURN(tok.normalized, get_bool_or(t, p, "normalized", !tok.special));
    out.push_back(std::move(tok));
  }
  return out;
}

// tokenizer_config.json names tokens as a string or as {"content": …}.
std::string config_token(const Json& config, std::string_view key) {
  const Json* v = find(config, key);
  if (v == nullptr) return {};
  if (v->is_string()) return v->get<std::string>();
  if (const Json* c = find(*v, "content"); c != nullptr && c->is_string())
    return c->get<std::string>();
  return {};
}

// Hugging Face Python rebuilds these classes' post-processor from
// add_bos_token/add_eos_token (LlamaTokenizerFast.update_post_processor).
bool rebuilds_template(std::string cls) {
  if (cls.ends_with("Fast")) cls.resize(cls.size() - 4);
  return cls == "LlamaTokenizer" || cls == "CodeLlamaTokenizer" || cls == "GemmaTokenizer";
}

void clean_up_spaces(std::string& s) {
  static constexpr std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (auto [from, to] : kRules) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
      s.replace(at, from.size(), to);
  }
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::load(const std::filesystem::path& dir) {
  ASSIGN_OR_RETURN(std::string tokenizer_json, read_file(dir / "tokenizer.json"));
  std::string config_json;
  if (std::filesystem::exists(dir / "tokenizer_config.json")) {
    ASSIGN_OR_RETURN(config_json, read_file(dir / "tokenizer_config.json"));
  }
  return from_json(tokenizer_json, config_json);
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::from_json(std::string_view tokenizer_json,
                                                          std::string_view tokenizer_config_json) {
  ASSIGN_OR_RETURN(Json root, parse_json(tokenizer_json, "tokenizer.json"));
  Json config = Json::object();
  if (!tokenizer_config_json.empty()) {
    ASSIGN_OR_RETURN(config, parse_json(tokenizer_config_json, "tokenizer_config.json"));
  }
  if (!root.is_object()) return field_error("(root)", "must be an object");
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  // Getters never throw, but keep nlohmann's exceptions inside this module.
  try {
    static const Json kNull;
    auto section = [&](std::string_view key) -> const Json& {
      const Json* v = find(root, key);
      return v ? *v : kNull;
    };
    ASSIGN_OR_RETURN(t->normalizer_, make_normalizer(section("normalizer"), "normalizer"));
    ASSIGN_OR_RETURN(t->pre_tokenizer_,
                     make_pre_tokenizer(section("pre_tokenizer"), "pre_tokenizer"));
    ASSIGN_OR_RETURN(const Json* model, require(root, "", "model"));
    ASSIGN_OR_RETURN(t->model_, BpeModel::from_json(*model, "model"));
    ASSIGN_OR_RETURN(PostProcessor post,
                     make_post_processor(section("post_processor"), "post_processor"));
    t->post_processor_ = std::make_unique<PostProcessor>(std::move(post));
    ASSIGN_OR_RETURN(t->decoder_, make_decoder(section("decoder"), "decoder"));
    ASSIGN_OR_RETURN(std::vector<AddedToken> added, parse_added_tokens(root));

    int32_t n = t->model_->n_vocab();
    for (const AddedToken& a : added) n = std::max(n, a.id + 1);
    t->id_to_token_.resize(n);
    t->special_.assign(n, 0);
    t->added_flag_.assign(n, 0);
    for (int32_t id = 0; id < t->model_->n_vocab(); ++id)
      t->id_to_token_[id] = std::string(t->model_->id_to_token(id));
    for (const AddedToken& a : added) {
      t->id_to_token_[a.id] = a.content;
      t->special_[a.id] = a.special;
      t->added_flag_[a.id] = 1;
    }
    t->added_ = std::make_unique<AddedTokenMatcher>(std::move(added));

    t->bos_id_ = t->token_to_id(config_token(config, "bos_token"));
    t->eos_id_ = t->token_to_id(config_token(config, "eos_token"));
    ASSIGN_OR_RETURN(t->clean_up_tokenization_spaces_,
                     get_bool_or(config, "", "clean_up_tokenization_spaces", false));
    ASSIGN_OR_RETURN(std::string cls, get_string_or(config, "", "tokenizer_class", ""));
    if (rebuilds_template(cls)) {
      ASSIGN_OR_RETURN(bool add_bos, get_bool_or(config, "", "add_bos_token", true));
      ASSIGN_OR_RETURN(bool add_eos, get_bool_or(config, "", "add_eos_token", false));
      t->post_processor_->prefix.clear();
      t->post_processor_->suffix.clear();
      if (add_bos && t->bos_id_ >= 0) t->post_processor_->prefix.push_back(t->bos_id_);
      if (add_eos && t->eos_id_ >= 0) t->post_processor_->suffix.push_back(t->eos_id_);
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(tokenizer_json::str_cat("tokenizer.json: ", e.what()));
  }
  return t;
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
  if (token.empty()) return -1;
  for (const AddedToken& a : added_->tokens())
    if (a.content == token) return a.id;
  return model_->token_to_id(token);
}

std::string_view Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return id_to_token_[id];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && special_[id];
}

void Tokenizer::encode_section(std::string_view text, bool first_section,
                               std::vector<int32_t>& out) const {
  PreTokenized p;
  p.text = normalizer_ ? normalizer_->normalize(std::string(text)) : std::string(text);
  if (p.text.empty()) return;
  p.spans.emplace_back(0, static_cast<uint32_t>(p.text.size()));
  if (pre_tokenizer_) pre_tokenizer_->split(p, first_section);
  for (size_t i = 0; i < p.spans.size(); ++i) {
    if (p.byte_level)
      model_->encode_word_bytes(p.piece(i), out);
    else
      model_->encode_word(p.piece(i), out);
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, EncodeOptions options) const {
  // Regexes run without UTF checks, so repair invalid input first (each bad
  // sequence becomes U+FFFD, as a JavaScript string would hold it).
  std::string repaired;
  if (!unicode::is_valid_utf8(text)) {
    repaired = unicode::to_valid_utf8(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  if (options.add_special_tokens)
    ids.insert(ids.end(), post_processor_->prefix.begin(), post_processor_->prefix.end());
  bool first = true;
  for (const auto& seg : added_->split(text, options.parse_special_tokens)) {
    if (seg.token_id >= 0)
      ids.push_back(seg.token_id);
    else
      encode_section(seg.text, first, ids);
    first = false;
  }
  if (options.add_special_tokens)
    ids.insert(ids.end(), post_processor_->suffix.begin(), post_processor_->suffix.end());
  return ids;
}

std::string Tokenizer::decode_bytes(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (skip_special_tokens && special_[id]) continue;
    tokens.push_back(id_to_token_[id]);
  }
  if (decoder_) decoder_->decode_chain(tokens);
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, DecodeOptions options) const {
  std::string text;
  if (!options.spaces_between_special_tokens) {
    text = unicode::to_valid_utf8(decode_bytes(ids, options.skip_special_tokens));
  } else {
    std::vector<std::string> parts;
    size_t run_start = 0;
    auto flush = [&](size_t end) {
      if (end > run_start)
        parts.push_back(
            unicode::to_valid_utf8(decode_bytes(ids.subspan(run_start, end - run_start), false)));
    };
    for (size_t i = 0; i < ids.size(); ++i) {
      int32_t id = ids[i];
      if (id < 0 || id >= vocab_size() || !added_flag_[id]) continue;
      flush(i);
      run_start = i + 1;
      if (!(options.skip_special_tokens && special_[id])) parts.push_back(id_to_token_[id]);
    }
    flush(ids.size());
    for (size_t i = 0; i < parts.size(); ++i) {
      if (i > 0) text += ' ';
      text += parts[i];
    }
  }
  if (clean_up_tokenization_spaces_) clean_up_spaces(text);
  return text;
}

}  // namespace moeserve
