#include "tokenizer/post_processor.h"

namespace moeserve {
namespace {

using namespace tokenizer_json;

StatusOr<std::vector<int32_t>> special_token_ids(const Json& config, std::string_view path,
                                                 const std::string& name) {
  ASSIGN_OR_RETURN(const Json* tokens, require(config, path, "special_tokens"));
  std::string p = child(child(path, "special_tokens"), name);
  const Json* entry = find(*tokens, name);
  if (entry == nullptr) return field_error(p, "is missing");
  ASSIGN_OR_RETURN(const Json* ids, get_array(*entry, p, "ids"));
  std::vector<int32_t> out;
  for (const Json& id : *ids) {
    if (!id.is_number_integer()) return field_error(child(p, "ids"), "must hold integers");
    out.push_back(id.get<int32_t>());
  }
  return out;
}

StatusOr<PostProcessor> template_processing(const Json& config, std::string_view path) {
  ASSIGN_OR_RETURN(const Json* single, get_array(config, path, "single"));
  PostProcessor pp;
  bool seen_sequence = false;
  for (size_t i = 0; i < single->size(); ++i) {
    std::string p = index(child(path, "single"), i);
    const Json& item = (*single)[i];
    if (find(item, "Sequence") != nullptr) {
      seen_sequence = true;
      continue;
    }
    const Json* special = find(item, "SpecialToken");
    if (special == nullptr) return field_error(p, "must be a Sequence or a SpecialToken");
    ASSIGN_OR_RETURN(std::string name, get_string(*special, child(p, "SpecialToken"), "id"));
    ASSIGN_OR_RETURN(std::vector<int32_t> ids, special_token_ids(config, path, name));
    auto& side = seen_sequence ? pp.suffix : pp.prefix;
    side.insert(side.end(), ids.begin(), ids.end());
  }
  return pp;
}

StatusOr<int32_t> pair_id(const Json& config, std::string_view path, std::string_view key) {
  ASSIGN_OR_RETURN(const Json* v, require(config, path, key));
  if (!v->is_array() || v->size() != 2 || !(*v)[1].is_number_integer())
    return field_error(child(path, key), "must be [token, id]");
  return (*v)[1].get<int32_t>();
}

}  // namespace

StatusOr<PostProcessor> make_post_processor(const Json& config, std::string_view path) {
  if (config.is_null()) return PostProcessor{};
  ASSIGN_OR_RETURN(std::string type, get_string(config, path, "type"));
  if (type == "TemplateProcessing") return template_processing(config, path);
  if (type == "ByteLevel") return PostProcessor{};
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    ASSIGN_OR_RETURN(int32_t cls, pair_id(config, path, "cls"));
    ASSIGN_OR_RETURN(int32_t sep, pair_id(config, path, "sep"));
    return PostProcessor{{cls}, {sep}};
  }
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const Json* list, get_array(config, path, "processors"));
    PostProcessor pp;
    for (size_t i = 0; i < list->size(); ++i) {
      ASSIGN_OR_RETURN(PostProcessor part,
                       make_post_processor((*list)[i], index(child(path, "processors"), i)));
      // Each processor wraps what the previous ones produced.
      pp.prefix.insert(pp.prefix.begin(), part.prefix.begin(), part.prefix.end());
      pp.suffix.insert(pp.suffix.end(), part.suffix.begin(), part.suffix.end());
    }
    return pp;
  }
  return field_error(child(path, "type"),
                     tokenizer_json::str_cat("has unsupported post-processor '", type, "'"));
}

}  // namespace moeserve
