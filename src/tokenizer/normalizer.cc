#include "tokenizer/normalizer.h"

#include <vector>

#include "tokenizer/pre_tokenizer_regex.h"
#include "tokenizer/unicode.h"

namespace moeserve {
namespace {

using namespace tokenizer_json;

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  std::string normalize(std::string text) const override {
    for (const auto& p : parts_) text = p->normalize(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(unicode::NormalForm form) : form_(form) {}
  std::string normalize(std::string text) const override { return unicode::normalize(text, form_); }

 private:
  unicode::NormalForm form_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  // ASCII only: full Unicode case mapping is not needed by supported models.
  std::string normalize(std::string text) const override {
    for (char& c : text)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return text;
  }
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string normalize(std::string text) const override {
    if (text.empty()) return text;
    return prefix_ + text;
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::string normalize(std::string text) const override {
    return pattern_->replace_all(text, content_);
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(std::string text) const override {
    size_t begin = 0, end = text.size();
    if (left_) {
      while (begin < end) {
        size_t pos = begin;
        if (!unicode::is_js_whitespace(unicode::next_code_point(text, pos))) break;
        begin = pos;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
        size_t pos = start;
        if (!unicode::is_js_whitespace(unicode::next_code_point(text, pos))) break;
        end = start;
      }
    }
    return text.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

}  // namespace

StatusOr<std::unique_ptr<Normalizer>> make_normalizer(const Json& config, std::string_view path) {
  if (config.is_null()) return std::unique_ptr<Normalizer>();
  ASSIGN_OR_RETURN(std::string type, get_string(config, path, "type"));
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const Json* list, get_array(config, path, "normalizers"));
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      ASSIGN_OR_RETURN(auto part,
                       make_normalizer((*list)[i], index(child(path, "normalizers"), i)));
      if (part) parts.push_back(std::move(part));
    }
    if (parts.empty()) return std::unique_ptr<Normalizer>();
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(parts)));
  }
  if (type == "NFC")
    return std::unique_ptr<Normalizer>(new UnicodeNormalizer(unicode::NormalForm::kNfc));
  if (type == "NFD")
    return std::unique_ptr<Normalizer>(new UnicodeNormalizer(unicode::NormalForm::kNfd));
  if (type == "NFKC")
    return std::unique_ptr<Normalizer>(new UnicodeNormalizer(unicode::NormalForm::kNfkc));
  if (type == "NFKD")
    return std::unique_ptr<Normalizer>(new UnicodeNormalizer(unicode::NormalForm::kNfkd));
  if (type == "Lowercase") return std::unique_ptr<Normalizer>(new LowercaseNormalizer());
  if (type == "Prepend") {
    ASSIGN_OR_RETURN(std::string prefix, get_string(config, path, "prepend"));
    return std::unique_ptr<Normalizer>(new PrependNormalizer(std::move(prefix)));
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(Pattern pattern, get_pattern(config, path, "pattern"));
    ASSIGN_OR_RETURN(std::string content, get_string(config, path, "content"));
    auto re = Regex::compile(pattern.text, !pattern.is_regex);
    if (!re.ok()) return field_error(child(path, "pattern"), std::string(re.status().message()));
    return std::unique_ptr<Normalizer>(new ReplaceNormalizer(std::move(*re), std::move(content)));
  }
  if (type == "Strip") {
    ASSIGN_OR_RETURN(bool left, get_bool_or(config, path, "strip_left", true));
    ASSIGN_OR_RETURN(bool right, get_bool_or(config, path, "strip_right", true));
    return std::unique_ptr<Normalizer>(new StripNormalizer(left, right));
  }
  return field_error(child(path, "type"),
                     tokenizer_json::str_cat("has unsupported normalizer '", type, "'"));
}

}  // namespace moeserve
